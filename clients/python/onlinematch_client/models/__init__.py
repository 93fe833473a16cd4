"""Contains all the data models used in inputs/outputs"""

from .feedback_event_in import FeedbackEventIn
from .feedback_event_in_type import FeedbackEventInType
from .feedback_request import FeedbackRequest
from .feedback_response import FeedbackResponse
from .field_error import FieldError
from .get_stats_response_get_stats import GetStatsResponseGetStats
from .health import Health
from .item_put import ItemPut
from .item_put_features import ItemPutFeatures
from .item_record_out import ItemRecordOut
from .item_record_out_features import ItemRecordOutFeatures
from .item_state_out import ItemStateOut
from .item_state_out_state import ItemStateOutState
from .problem import Problem
from .readiness import Readiness
from .recommend_request import RecommendRequest
from .recommend_request_user_features import RecommendRequestUserFeatures
from .recommend_response import RecommendResponse
from .recommended_item import RecommendedItem
from .rejected import Rejected
from .surface_config import SurfaceConfig
from .surface_config_policy import SurfaceConfigPolicy
from .surface_update import SurfaceUpdate
from .surface_update_policy_type_0 import SurfaceUpdatePolicyType0

__all__ = (
    "FeedbackEventIn",
    "FeedbackEventInType",
    "FeedbackRequest",
    "FeedbackResponse",
    "FieldError",
    "GetStatsResponseGetStats",
    "Health",
    "ItemPut",
    "ItemPutFeatures",
    "ItemRecordOut",
    "ItemRecordOutFeatures",
    "ItemStateOut",
    "ItemStateOutState",
    "Problem",
    "Readiness",
    "RecommendRequest",
    "RecommendRequestUserFeatures",
    "RecommendResponse",
    "RecommendedItem",
    "Rejected",
    "SurfaceConfig",
    "SurfaceConfigPolicy",
    "SurfaceUpdate",
    "SurfaceUpdatePolicyType0",
)
