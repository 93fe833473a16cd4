from enum import StrEnum


class ItemStateOutState(StrEnum):
    BUNDLE = "bundle"
    DELETED = "deleted"
    LIVE = "live"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return str(self.value)
