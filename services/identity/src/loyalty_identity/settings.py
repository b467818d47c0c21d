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


def keyring_for(settings: Settings) -> Keyring:
    configured = IdentityKeys()
    if configured.keys and configured.blind_index_key:
        return Keyring.parse(configured.keys, configured.blind_index_key)
    if configured.keys or configured.blind_index_key:
        raise ValueError(
            "set both LOYALTY_IDENTITY_KEYS and LOYALTY_IDENTITY_BLIND_INDEX_KEY, or neither"
        )
    return Keyring.development(settings.data_dir)
