"""The gateway's own settings (`LOYALTY_GATEWAY_*`); the shared ones are the kit's."""

from __future__ import annotations

from loyalty_kit.settings import MAX_IMPORT_FILE_BYTES
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOYALTY_GATEWAY_", extra="ignore")

    signing_key: str = Field(
        default="",
        description="Key signing bearer tokens: '<kid>:<base64url Ed25519 private key>'. Empty: "
        "the development key pair (LOYALTY_AUTH_DEV_KEYS=true).",
    )
    token_ttl_seconds: int = Field(default=900, ge=60, le=86_400)
    request_deadline_seconds: float = Field(
        default=10.0, gt=0, description="Deadline of each HTTP request's calls to the services."
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest HTTP request body; a larger one is 413 (BODY_TOO_LARGE), unread.",
    )
    max_upload_bytes: int = Field(
        default=MAX_IMPORT_FILE_BYTES,
        ge=1024,
        description="Largest file uploaded to an import (POST /v1/memberImports); a larger one "
        "is 413 (BODY_TOO_LARGE), refused as soon as it passes the limit and nothing stored.",
    )
    upload_deadline_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="How long an upload may take to stream to the service (the file arrives as "
        "fast as the caller sends it).",
    )
    max_json_depth: int = Field(
        default=64,
        ge=8,
        le=512,
        description="Deepest nesting of arrays and objects in a JSON body (400, "
        "MALFORMED_REQUEST).",
    )
    checkout_recovery_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often every replica settles checkouts cut short (their owner gone or "
        "a service down): the delay between a service answering again and the checkout settled.",
    )
    unsubscribe_attempts_per_minute: int = Field(
        default=20,
        ge=1,
        le=100_000,
        description="Attempts at /v1/unsubscribe (GET or POST) one client address may make in a "
        "moving minute; more are answered 429 with Retry-After (no guessing of links' tokens). "
        "Counted where rate_limit_storage says.",
    )
    rate_limit_storage: str = Field(
        default="memory://",
        description="Where per-client rate limits count: memory:// (each replica its own), or "
        "redis://host:6379/0 (rediss://, redis+sentinel://, redis+cluster://) shared by every "
        "gateway replica.",
    )

    console_insecure_cookies: bool = Field(
        default=False,
        description="Development only: the console's and the member page's cookies without "
        "Secure (plain http on 127.0.0.1, as `make run` and the tests serve). Otherwise they are "
        "Secure and named __Host-loyalty_console and __Host-loyalty_me.",
    )
    console_idle_seconds: int = Field(
        default=1800, ge=60, le=86_400, description="A console session ends after this idle time."
    )
    console_absolute_seconds: int = Field(
        default=43_200,
        ge=300,
        le=7 * 86_400,
        description="A console session ends this long after sign-in, however busy.",
    )
    console_max_failures: int = Field(
        default=5, ge=1, le=100, description="Wrong passwords in a row that lock an operator."
    )
    console_lockout_seconds: int = Field(
        default=900, ge=1, le=86_400, description="How long a locked operator stays locked."
    )
    console_sign_in_attempts_per_minute: int = Field(
        default=30,
        ge=1,
        le=100_000,
        description="Console sign-ins one client address may try in a moving minute, whatever "
        "the logins (the lock-out counts per operator); more are refused for a while. Counted "
        "where rate_limit_storage says.",
    )
    console_token_ttl_seconds: int = Field(
        default=300,
        ge=60,
        le=3600,
        description="Lifetime of the short service tokens the console calls the services with "
        "for a signed-in operator.",
    )

    member_page_unit: str = Field(
        default="mall",
        min_length=1,
        max_length=64,
        description="The business unit a member who signs in at /me for the first time "
        "registers at (one-tap registration).",
    )
    member_page_sign_in_attempts_per_minute: int = Field(
        default=30,
        ge=1,
        le=100_000,
        description="Codes asked and checked at /me that one client address may try in a "
        "moving minute (identity limits codes per phone and per address too). Counted where "
        "rate_limit_storage says.",
    )

    @field_validator("rate_limit_storage")
    @classmethod
    def _known_storage(cls, value: str) -> str:
        scheme = value.partition("://")[0]
        if not value.partition("://")[1] or scheme not in RATE_LIMIT_SCHEMES:
            raise ValueError(f"rate_limit_storage must start {', '.join(RATE_LIMIT_SCHEMES)}://")
        return value


RATE_LIMIT_SCHEMES = ("memory", "redis", "rediss", "redis+sentinel", "redis+cluster")
