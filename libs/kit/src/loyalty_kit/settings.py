"""Configuration from the environment (prefix LOYALTY_), the same for every service.

Nothing here needs a code change to alter (Open Loyalty's #41): every knob is an environment
variable, listed in the README's configuration table.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # gRPC's own default receive bound, made explicit
# The largest import file, by default: what identity takes (LOYALTY_IDENTITY_IMPORT_MAX_FILE_BYTES)
# and what the gateway lets through to it (LOYALTY_GATEWAY_MAX_UPLOAD_BYTES), one number.
MAX_IMPORT_FILE_BYTES = 2 * 1024**3


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOYALTY_", extra="ignore")

    # --- infrastructure -------------------------------------------------------------------
    database_url: str = Field(
        default="",
        description="PostgreSQL server, e.g. postgresql://postgres@127.0.0.1:5432/postgres. "
        "Each service uses its own database on it (see database_name).",
    )
    database_name: str = Field(
        default="",
        description="The service's database; default '<database_prefix><service>'.",
    )
    database_prefix: str = Field(default="loyalty_", description="Prefix of per-service databases.")
    database_pool_size: int = Field(default=10, ge=1)
    database_create: bool = Field(
        default=True, description="Create the service's database if it does not exist."
    )
    migrate_on_start: bool = Field(
        default=True, description="Run the service's Alembic migrations when it starts."
    )
    nats_url: str = Field(
        default="",
        description="NATS with JetStream, nats://host:4222; a cluster's nodes comma-separated.",
    )
    event_namespace: str = Field(
        default="loyalty",
        description="First token of event subjects and stream names (tests use their own).",
    )
    data_dir: Path = Field(default=Path(".loyalty"), description="Where dev data lives.")

    # --- network --------------------------------------------------------------------------
    host: str = Field(default="127.0.0.1", description="Address services listen on.")
    identity_port: int = 50051
    points_port: int = 50052
    tiers_port: int = 50053
    benefits_port: int = 50054
    insights_port: int = 50055
    engagement_port: int = 50056
    gateway_grpc_port: int = 50050
    gateway_http_port: int = 8080
    identity_target: str = ""
    points_target: str = ""
    tiers_target: str = ""
    benefits_target: str = ""
    insights_target: str = ""
    engagement_target: str = ""

    grpc_max_message_bytes: int = Field(
        default=MAX_MESSAGE_BYTES,
        ge=64 * 1024,
        le=64 * 1024 * 1024,
        description="Largest gRPC message a server or client sends or takes; a larger one is "
        "RESOURCE_EXHAUSTED.",
    )

    grpc_load_balancing: Literal["round_robin", "pick_first"] = Field(
        default="round_robin",
        description="How calls to another service spread over the addresses its target resolves "
        "to (a headless Service: one per pod; loyalty_kit.channels).",
    )
    grpc_max_connection_age_seconds: float = Field(
        default=0,
        ge=0,
        description="Servers close a client connection after this long (0: never), so callers "
        "resolve the target again and find new replicas (deploy/ sets 300).",
    )

    # --- behaviour --------------------------------------------------------------------------
    shutdown_grace_seconds: float = Field(default=5.0, ge=0)
    default_deadline_seconds: float = Field(
        default=5.0, gt=0, description="Deadline of outbound calls made outside any request."
    )
    max_deadline_seconds: float = Field(
        default=30.0, gt=0, description="Cap on outbound deadlines derived from the caller's."
    )
    health_check_seconds: float = Field(
        default=5.0, gt=0, description="How often health re-checks the database."
    )
    idempotency_retention_hours: float = Field(
        default=72, gt=0, description="How long a request_id is honoured for retries."
    )
    inbox_retention_days: float = Field(
        default=30, gt=0, description="How long consumers remember processed event ids."
    )
    outbox_retention_days: float = Field(
        default=7, gt=0, description="How long published events stay in the outbox table."
    )
    housekeeping_interval_seconds: float = Field(default=3600, gt=0)
    insights_refresh_interval_seconds: float = Field(
        default=6 * 3600,
        gt=0,
        description="How often insights refreshes every member's figures (members are also "
        "recomputed as their events arrive): incrementally, what time moved since the last "
        "refresh.",
    )
    insights_full_refresh_interval_seconds: float = Field(
        default=7 * 24 * 3600,
        gt=0,
        description="How old the last refresh of insights' figures from the facts (the repair) "
        "may be before a refresh is from the facts again.",
    )
    outbox_batch_size: int = Field(default=200, ge=1)
    outbox_poll_seconds: float = Field(default=1.0, gt=0)
    outbox_linger_seconds: float = Field(
        default=0.01, ge=0, description="How long the relay waits after a wake-up to batch more."
    )
    event_stream_max_age_days: float = Field(
        default=14,
        gt=0,
        description="How long a stream keeps events (>= the longest consumer outage).",
    )
    event_stream_max_bytes: int = Field(
        default=-1,
        ge=-1,
        description="Bytes a stream keeps (-1: bounded by age only). JetStream sets a stream's "
        "byte limit aside on the server's store when the stream is made: set it in production "
        "(deploy/ sets 2 GiB), not on a laptop or a shared test server.",
    )
    event_stream_replicas: int = Field(
        default=1, ge=1, le=5, description="JetStream replicas of each stream (3 in production)."
    )
    event_max_deliver: int = Field(
        default=5,
        ge=1,
        description="Attempts at an event whose handler fails (outages not counted) before it is "
        "parked in the dead-letter stream.",
    )
    event_retry_backoff_seconds: float = Field(
        default=1.0, gt=0, description="First retry delay of a failed event; doubles per attempt."
    )
    event_retry_backoff_max_seconds: float = Field(default=60.0, gt=0)
    dead_letter_max_age_days: float = Field(
        default=30,
        gt=0,
        description="How long parked events are kept for replay (at most inbox_retention_days).",
    )
    dead_letter_max_bytes: int = Field(
        default=-1, ge=-1, description="Bytes the dead-letter stream keeps (deploy/: 512 MiB)."
    )

    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Worker processes `serve` starts, each a whole copy of the service on the "
        "same ports (SO_REUSEPORT: the kernel spreads new connections over them); the first "
        "serves /metrics, the others none. A worker that dies stops the others and `serve` "
        "exits 1 for its supervisor to restart.",
    )
    uvloop: bool = Field(
        default=True,
        description="Run a service's process (serve, migrate, its commands) on uvloop's event "
        "loop; false: asyncio's own.",
    )

    # --- observability ----------------------------------------------------------------------
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    otel_exporter: Literal["none", "console", "otlp", "memory"] = Field(
        default="none", description="Where spans go; memory: kept in the process, for tests."
    )
    otel_endpoint: str = Field(default="", description="OTLP gRPC endpoint, e.g. localhost:4317")
    metrics_port: int | None = Field(
        default=None,
        ge=-1,
        description="Port of the service's Prometheus /metrics in this process (a pod sets one "
        "for all); unset: the service's own default below. 0: a free port; -1: none.",
    )
    gateway_metrics_port: int = 9460
    identity_metrics_port: int = 9461
    points_metrics_port: int = 9462
    tiers_metrics_port: int = 9463
    benefits_metrics_port: int = 9464
    insights_metrics_port: int = 9465
    engagement_metrics_port: int = 9466

    @field_validator("event_namespace")
    @classmethod
    def _namespace_is_a_subject_token(cls, value: str) -> str:
        if not value or not value.replace("_", "").replace("-", "").isalnum():
            raise ValueError("event_namespace must be one NATS subject token (letters, digits)")
        return value

    def database_for(self, service: str) -> str:
        return self.database_name or f"{self.database_prefix}{service}"

    def service_database_url(self, service: str) -> URL:
        """The SQLAlchemy URL (asyncpg driver) of this service's own database."""
        if not self.database_url:
            raise RuntimeError(
                "LOYALTY_DATABASE_URL is not set: start the suite with `make run` (embedded "
                "PostgreSQL) or point it at a PostgreSQL server"
            )
        return (
            make_url(self.database_url)
            .set(drivername="postgresql+asyncpg")
            .set(database=self.database_for(service))
        )

    def port_of(self, service: str) -> int:
        port: int = getattr(self, f"{service}_port")
        return port

    def metrics_port_of(self, service: str) -> int:
        """Where `service` serves /metrics: LOYALTY_METRICS_PORT, else its own default (a
        service without one serves none)."""
        if self.metrics_port is not None:
            return self.metrics_port
        port: int = getattr(self, f"{service}_metrics_port", -1)
        return port

    def target_of(self, service: str) -> str:
        """Where to reach another service: an explicit target, else this host and its port."""
        explicit: str = getattr(self, f"{service}_target", "")
        if explicit:
            return explicit
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "[::]") else self.host
        return f"{host}:{self.port_of(service)}"

    @cached_property
    def server_url(self) -> URL:
        return make_url(self.database_url).set(drivername="postgresql+asyncpg")
