"""The identity service's own settings (beside the kit's): the keys protecting personal data."""

from __future__ import annotations

from loyalty_kit.settings import Settings
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
