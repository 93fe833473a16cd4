from enum import StrEnum


class FeedbackEventInType(StrEnum):
    CLICK = "click"
    IMPRESSION = "impression"
    REWARD = "reward"

    def __str__(self) -> str:
        return str(self.value)
