"""The gateway's keys: the token signing key (tokens for API clients, and for the checkout
recovery job acting for them) and the verifier of the keys every service checks with."""

from __future__ import annotations

from loyalty_kit.auth import (
    AuthSettings,
    SigningKey,
    TokenVerifier,
    development_keys,
    parse_keys,
)
from loyalty_kit.server import ServiceContext

from loyalty_gateway.settings import GatewaySettings


class Keys:
    """The token signing key and the verifier (the same keys the services verify with)."""

    def __init__(self, context: ServiceContext) -> None:
        configured = GatewaySettings()
        auth = AuthSettings()
        if configured.signing_key:
            self.signing: SigningKey | None = SigningKey.parse(configured.signing_key)
            public = auth.public_keys
        elif auth.dev_keys:
            self.signing, public = development_keys(context.settings.data_dir)
        else:
            self.signing, public = None, auth.public_keys
        self.verifier = TokenVerifier(parse_keys(public), trust_headers=False)
        self.ttl = configured.token_ttl_seconds
