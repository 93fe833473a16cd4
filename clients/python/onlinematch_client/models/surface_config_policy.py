from enum import StrEnum


class SurfaceConfigPolicy(StrEnum):
    DIAG_LINUCB = "diag_linucb"
    DIAG_TS = "diag_ts"
    EPSILON_GREEDY = "epsilon_greedy"
    GREEDY = "greedy"
    RANDOM = "random"

    def __str__(self) -> str:
        return str(self.value)
