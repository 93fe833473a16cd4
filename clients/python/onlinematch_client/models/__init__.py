"""Contains all the data models used in inputs/outputs"""

from .arm_in import ArmIn
from .end_experiment_response_end_experiment import EndExperimentResponseEndExperiment
from .experiment_in import ExperimentIn
from .feedback_event_in import FeedbackEventIn
from .feedback_event_in_type import FeedbackEventInType
from .feedback_request import FeedbackRequest
from .feedback_response import FeedbackResponse
from .field_error import FieldError
from .get_experiment_response_get_experiment import GetExperimentResponseGetExperiment
from .get_stats_response_get_stats import GetStatsResponseGetStats
from .health import Health
from .item_put import ItemPut
from .item_put_features import ItemPutFeatures
from .item_record_out import ItemRecordOut
from .item_record_out_features import ItemRecordOutFeatures
from .item_state_out import ItemStateOut
from .item_state_out_state import ItemStateOutState
from .problem import Problem
from .promote_experiment_arm_response_promote_experiment_arm import PromoteExperimentArmResponsePromoteExperimentArm
from .promote_in import PromoteIn
from .readiness import Readiness
from .recommend_request import RecommendRequest
from .recommend_request_user_features import RecommendRequestUserFeatures
from .recommend_response import RecommendResponse
from .recommended_item import RecommendedItem
from .rejected import Rejected
from .start_experiment_response_start_experiment import StartExperimentResponseStartExperiment
from .surface_config import SurfaceConfig
from .surface_config_policy import SurfaceConfigPolicy
from .surface_update import SurfaceUpdate
from .surface_update_policy_type_0 import SurfaceUpdatePolicyType0

__all__ = (
    "ArmIn",
    "EndExperimentResponseEndExperiment",
    "ExperimentIn",
    "FeedbackEventIn",
    "FeedbackEventInType",
    "FeedbackRequest",
    "FeedbackResponse",
    "FieldError",
    "GetExperimentResponseGetExperiment",
    "GetStatsResponseGetStats",
    "Health",
    "ItemPut",
    "ItemPutFeatures",
    "ItemRecordOut",
    "ItemRecordOutFeatures",
    "ItemStateOut",
    "ItemStateOutState",
    "Problem",
    "PromoteExperimentArmResponsePromoteExperimentArm",
    "PromoteIn",
    "Readiness",
    "RecommendRequest",
    "RecommendRequestUserFeatures",
    "RecommendResponse",
    "RecommendedItem",
    "Rejected",
    "StartExperimentResponseStartExperiment",
    "SurfaceConfig",
    "SurfaceConfigPolicy",
    "SurfaceUpdate",
    "SurfaceUpdatePolicyType0",
)
