"""Member access tokens: signed with identity's own key (`loyalty_kit.auth.SigningKey`, the
service key or the development keys, as `ServiceCredentials` finds them), so every service
verifies them with the public keys it already holds. Claims: `sub` `member:<id>`, `member`, the
`self:*` scopes and `sid` (the session); 10 minutes, by the wall clock as every verifier
reads it."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from loyalty_kit.auth import SigningKey
from loyalty_kit.caller import Caller
from loyalty_kit.errors import FailedPrecondition
from loyalty_kit.scopes import MEMBER_SCOPES

from loyalty_identity.domain.sign_in import ACCESS_TOKEN_LIFETIME


class NoSigningKey(FailedPrecondition):
    reason = "SIGNING_KEY_MISSING"

    def __init__(self) -> None:
        super().__init__(
            "members cannot sign in: identity has no signing key (LOYALTY_AUTH_SERVICE_KEY)"
        )


class MemberTokenSigner:
    def __init__(self, signing: SigningKey | None) -> None:
        self.signing = signing

    def issue(self, member_id: str, session_id: str) -> tuple[str, datetime]:
        if self.signing is None:
            raise NoSigningKey()
        caller = Caller(client_id=f"member:{member_id}", scopes=MEMBER_SCOPES, member=member_id)
        token, expires = self.signing.issue(
            caller, ACCESS_TOKEN_LIFETIME.total_seconds(), time.time(), {"sid": session_id}
        )
        return token, datetime.fromtimestamp(expires, UTC)
