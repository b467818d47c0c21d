"""The identity service's own settings (beside the kit's): the keys protecting personal data."""

from __future__ import annotations

from loyalty_kit.settings import MAX_IMPORT_FILE_BYTES, Settings
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from loyalty_identity.adapters.crypto import Keyring


class IdentityKeys(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOYALTY_IDENTITY_", extra="ignore")

    keys: str = Field(
        default="",
        description="Master keys wrapping each member's data key: '<id>:<base64 32 bytes>,...'; "
        "the first wraps new keys. Empty: development keys generated into the data folder.",
    )
    blind_index_key: str = Field(
        default="", description="Key of the blind index (base64, 32 bytes)."
    )
    dev_keys: bool = Field(
        default=False,
        description="Without configured keys, generate development keys into the data folder "
        "(`make run` and the tests set this). Off: the service refuses to start without keys, "
        "so a production replica never invents keys nobody can recover.",
    )


def keyring_for(settings: Settings) -> Keyring:
    configured = IdentityKeys()
    if configured.keys and configured.blind_index_key:
        return Keyring.parse(configured.keys, configured.blind_index_key)
    if configured.keys or configured.blind_index_key:
        raise ValueError(
            "set both LOYALTY_IDENTITY_KEYS and LOYALTY_IDENTITY_BLIND_INDEX_KEY, or neither"
        )
    if not configured.dev_keys:
        raise ValueError(
            "no keys for personal data: set LOYALTY_IDENTITY_KEYS and "
            "LOYALTY_IDENTITY_BLIND_INDEX_KEY (or LOYALTY_IDENTITY_DEV_KEYS=true in development)"
        )
    return Keyring.development(settings.data_dir)


class ImportSettings(BaseSettings):
    """How member and order imports run (`LOYALTY_IDENTITY_IMPORT_*`)."""

    model_config = SettingsConfigDict(env_prefix="LOYALTY_IDENTITY_IMPORT_", extra="ignore")

    workers: int = Field(
        default=1,
        ge=0,
        description="Member imports a replica processes at once, and as many order imports (0: "
        "this replica only takes uploads; "
        "others process them).",
    )
    chunk_rows: int = Field(
        default=5000, ge=10, le=50_000, description="Rows a chunk takes (one transaction each)."
    )
    order_chunk_rows: int = Field(
        default=5000,
        ge=10,
        le=50_000,
        description="Rows a chunk of an order import takes (one transaction and one "
        "LegacyOrdersImported event each).",
    )
    max_file_bytes: int = Field(
        default=MAX_IMPORT_FILE_BYTES,
        ge=1,
        description="The largest file an import takes (bytes).",
    )
    lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How long a replica's hold on an import lasts without a committed chunk; "
        "another replica takes over an import whose hold ran out.",
    )
    poll_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How often a replica looks for imports to take (those created elsewhere, "
        "or left by a replica that stopped); it starts on the ones it takes uploads for at once.",
    )
    prepare_processes: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Imports a replica reads in worker processes of their own at once (the "
        "file parsed and normalised, blind indexes made and member imports' new members' data "
        "sealed, while the service writes the chunk before); others are read in the service's "
        "process. Default 0: worth 1 where PostgreSQL "
        "does not share the replica's cores (on one 2-core machine with the database it gained "
        "a tenth, and starting a process costs about a second an import).",
    )
    time_zone: str = Field(
        default="Asia/Shanghai",
        description="The programme's time zone: dates without a time in a file (a balance's "
        "expiry) and the default end of carried-over tiers are read in it.",
    )


class SignInSettings(BaseSettings):
    """How members sign in themselves (`LOYALTY_IDENTITY_WECHAT_*`)."""

    model_config = SettingsConfigDict(env_prefix="LOYALTY_IDENTITY_", extra="ignore")

    wechat_mode: str = Field(
        default="off",
        pattern="^(off|development|wechat)$",
        description="WeChat sign-in: 'off' (refused), 'development' (the development fake: the "
        "code dev-<openid> signs in as that openid; never in production) or 'wechat' (WeChat's "
        "jscode2session with the app id and secret).",
    )
    wechat_app_id: str = Field(default="", description="The mini-program's app id.")
    wechat_app_secret: str = Field(default="", description="The mini-program's app secret.")
    wechat_url: str = Field(
        default="https://api.weixin.qq.com/sns/jscode2session",
        description="WeChat's jscode2session endpoint.",
    )


class MemberCodeSettings(BaseSettings):
    """How wrong member codes are limited (`LOYALTY_IDENTITY_MEMBER_CODE_*`)."""

    model_config = SettingsConfigDict(env_prefix="LOYALTY_IDENTITY_MEMBER_CODE_", extra="ignore")

    wrong_per_handle: int = Field(
        default=5,
        ge=1,
        description="Wrong codes a member code's handle may see in the window before its "
        "scans are refused (MEMBER_CODE_LOCKED) until the oldest of them leaves the window.",
    )
    wrong_per_client: int = Field(
        default=30,
        ge=1,
        description="Wrong codes (any handles) a calling client may send in the window before "
        "its scans are refused the same way.",
    )
    wrong_window_seconds: float = Field(
        default=300.0, gt=0, description="The window the wrong codes are counted in (seconds)."
    )


class ErasureSettings(BaseSettings):
    """Members' own erasure requests (`LOYALTY_IDENTITY_ERASURE_*`)."""

    model_config = SettingsConfigDict(env_prefix="LOYALTY_IDENTITY_ERASURE_", extra="ignore")

    cooling_off_hours: float = Field(
        default=168.0,
        ge=0,
        description="How long a member's erasure request waits before it is carried out "
        "(confirmed; the member may cancel it meanwhile). Default 168: 7 days.",
    )
    sweep_seconds: float = Field(
        default=300.0,
        gt=0,
        description="How often a replica carries out the confirmed erasure requests whose "
        "cooling-off has passed.",
    )
