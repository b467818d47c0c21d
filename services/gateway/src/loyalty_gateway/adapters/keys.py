"""The gateway's keys: the token signing key (tokens for API clients, and for the checkout
recovery job acting for them) and the verifier of the keys every service checks with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from loyalty_kit.auth import (
    AuthSettings,
    SigningKey,
    TokenVerifier,
    development_keys,
    parse_keys,
)

from loyalty_gateway.settings import GatewaySettings


@dataclass(frozen=True)
class Keys:
    """The token signing key and the verifier (the same keys the services verify with)."""

    signing: SigningKey | None
    verifier: TokenVerifier
    ttl: int

    @staticmethod
    def load(configured: GatewaySettings, auth: AuthSettings, data_dir: Path) -> Keys:
        if configured.signing_key:
            signing: SigningKey | None = SigningKey.parse(configured.signing_key)
            public = auth.public_keys
        elif auth.dev_keys:
            signing, public = development_keys(data_dir)
        else:
            signing, public = None, auth.public_keys
        verifier = TokenVerifier(parse_keys(public), trust_headers=False)
        return Keys(signing, verifier, configured.token_ttl_seconds)
