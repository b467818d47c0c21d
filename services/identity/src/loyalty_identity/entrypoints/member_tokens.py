"""Identity's check of members' own access tokens beyond their signature (the kit's
interceptor runs it for every call a member token makes here): a token whose session was ended
(sign-out, sign-out everywhere, a reused refresh token, a merge, an erasure) or whose member was
erased is refused at once, not when it expires. The other services verify the signature only
and accept such a token until it expires (10 minutes at most)."""

from __future__ import annotations

import uuid

from loyalty_kit.caller import Caller
from loyalty_kit.interceptors import MemberTokenCheck

from loyalty_identity.bootstrap import Identity
from loyalty_identity.domain.sign_in import MemberTokenRevoked, access_refusal


def _uuid(text: str) -> str | None:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def member_token_check(app: Identity) -> MemberTokenCheck:
    async def check(caller: Caller) -> None:
        member_id = _uuid(caller.member)
        if member_id is None:
            return  # names no member this service keeps: the method refuses it
        session_id = _uuid(caller.session) if caller.session else ""
        if session_id is None:
            raise MemberTokenRevoked("unknown_session")
        async with app.uow(read_only=True) as uow:
            standing = await uow.sign_in.token_standing(member_id, session_id)
        if standing is None:
            return  # no such member: the method answers MEMBER_NOT_FOUND
        refused = access_refusal(standing[0], bool(session_id), standing[1], standing[2])
        if refused is not None:
            raise refused

    return check
