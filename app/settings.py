"""The service's settings: one pydantic-settings class, built in ``main()`` and passed in."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_TOKEN = "change-me"


class Settings(BaseSettings):
    """Environment variables of the same names (case-insensitive) override the defaults.

    With neither ``REDIS_URL`` nor ``KAFKA_BOOTSTRAP_SERVERS`` set, the service runs on the
    embedded store and bus.
    """

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    environment: Literal["development", "production"] = "development"
    redis_url: str | None = None
    # REDIS_URL names one node of a Redis Cluster (streaming/redis_store.py): slots are found
    # from it. With replicas, set REDIS_WAIT_REPLICAS to 1 so that no failover loses an applied
    # batch before its offsets are committed.
    redis_cluster: bool = False
    redis_wait_replicas: int = Field(0, ge=0)
    kafka_bootstrap_servers: str | None = None
    operator_token: SecretStr = SecretStr(PLACEHOLDER_TOKEN)
    # Publishes and takes down items (PUT/DELETE /v1/items); the operator token may too. Unset,
    # only operators edit the catalogue.
    editor_token: SecretStr | None = None
    # Named operators with roles (app/auth.py): JSON of name → {sha256, role}, re-read on change.
    operators_file: Path | None = None
    bundle_dir: Path = Path("var/bundles")

    attribution_window_s: float = Field(3600.0, gt=0)
    # retention.ms of the decisions, feedback and dead-letter topics when this service creates
    # them: `onlinematch rebuild` needs the oldest served version's age plus the window
    # (streaming/rebuild.py). Topics that exist already keep their own setting.
    log_retention_s: float = Field(7 * 86400.0, gt=0)
    # How often a consumer deletes statistics of bundle versions no replica serves any more.
    retire_every_s: float = Field(300.0, gt=0)
    feedback_topic: str = "feedback"
    decisions_topic: str = "decisions"
    dead_letter_topic: str = "feedback-dead-letter"
    items_topic: str = "items"  # the live catalogue, compacted (streaming/catalogue.py)
    feedback_partitions: int = Field(8, ge=1)
    consumer_group: str = "onlinematch-feedback"

    lam: float = Field(1.0, gt=0)
    redis_timeout_s: float = Field(0.25, gt=0)
    # After a failed statistics read or context write, requests skip the store for this long
    # (served from priors, flagged degraded): they run on the event loop (app/routes.py).
    store_cool_off_s: float = Field(1.0, ge=0)
    kafka_timeout_s: float = Field(2.0, gt=0)
    retry_after_s: int = Field(5, ge=1)
    # Feedback rate limits (events per second and burst), shared by every replica through the
    # store (``streaming.stores.gcra``); a rate of 0 turns one off. Generous: a user's clients
    # report impressions of every slot, and one client may be a whole backend.
    feedback_user_rate: float = Field(50.0, ge=0)
    feedback_user_burst: float = Field(1000.0, gt=0)
    feedback_client_rate: float = Field(20000.0, ge=0)
    feedback_client_burst: float = Field(100000.0, gt=0)
    # Behind a proxy: the header whose last address is the client's (``X-Forwarded-For``). Unset,
    # the client is the connection's peer address.
    client_address_header: str | None = None
    surface_cache_s: float = Field(1.0, ge=0)

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    # `onlinematch consume` serves its Prometheus metrics on this port (0: none), on HOST.
    metrics_port: int = Field(9100, ge=0, le=65535)

    @field_validator("editor_token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # Deploy files pass ``EDITOR_TOKEN=${EDITOR_TOKEN:-}``: empty means no editor token.
        return None if value == "" else value

    @model_validator(mode="after")
    def _no_placeholder_secret_outside_development(self) -> Settings:
        if self.environment != "development" and self.operator_token.get_secret_value() == PLACEHOLDER_TOKEN:
            raise ValueError(
                "OPERATOR_TOKEN: set a real operator token outside development (the placeholder is refused)"
            )
        if self.log_retention_s < self.attribution_window_s:
            raise ValueError(
                "LOG_RETENTION_S: must be at least ATTRIBUTION_WINDOW_S, or feedback outlives its decision"
            )
        if self.editor_token is not None and self.editor_token.get_secret_value() == PLACEHOLDER_TOKEN:
            raise ValueError("EDITOR_TOKEN: set a real token or leave it unset (the placeholder is refused)")
        return self

    @property
    def embedded(self) -> bool:
        return self.redis_url is None and self.kafka_bootstrap_servers is None
