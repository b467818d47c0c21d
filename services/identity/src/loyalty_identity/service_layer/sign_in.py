"""Members signing in themselves: by a code sent to their phone, or with WeChat; refreshing
their tokens and signing out. The first sign-in of a phone (or WeChat account) registers the
member with that identity (one-tap registration), found by the same rules as RegisterMember:
the member holding any of the identities, refused when they belong to different members.

Each use case opens its own units of work: a wrong code's attempt and a reused refresh token's
revocation are committed before the refusal is answered.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from loyalty_kit.errors import FailedPrecondition, FieldViolation, InvalidArgument, Violations

from loyalty_identity.domain.errors import MemberErased, MemberMerged, MemberSuspended
from loyalty_identity.domain.member import Member, MemberState, Profile, validate_unit
from loyalty_identity.domain.sign_in import (
    CHALLENGES,
    REFRESH_TOKEN_LIFETIME,
    Challenge,
    ChallengeNotFound,
    RateLimits,
    RefreshTokenInvalid,
    RefreshTokenReused,
    is_code,
    new_code,
    new_refresh_token,
    token_digest,
)
from loyalty_identity.service_layer import handlers, member_codes
from loyalty_identity.service_layer.commands import RawIdentity, Register
from loyalty_identity.service_layer.uow import IdentityUnitOfWork

PHONE = "phone"
WECHAT_OPENID = "wechat_openid"
WECHAT_UNIONID = "wechat_unionid"
MAX_ADDRESS = 64
MAX_TOKEN = 200


# --- ports ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WeChatAccount:
    openid: str
    unionid: str = ""  # "" when the mini-program is bound to no open platform


class WeChatExchange(Protocol):
    async def exchange(self, code: str) -> WeChatAccount:
        """The account a mini-program's login code stands for (WECHAT_CODE_REFUSED if none)."""
        ...

    async def close(self) -> None: ...


class WeChatCodeRefused(FailedPrecondition):
    reason = "WECHAT_CODE_REFUSED"

    def __init__(self) -> None:
        super().__init__("WeChat refused the login code: get a new one with wx.login()")


class CodeSender(Protocol):
    async def send_code(self, phone: str, code: str, expires_at: datetime) -> None:
        """Send the code to the phone, or UNAVAILABLE."""
        ...

    async def close(self) -> None: ...


class TokenIssuer(Protocol):
    def issue(self, member_id: str, session_id: str) -> tuple[str, datetime]:
        """A member access token for the session and when it expires."""
        ...


@dataclass(frozen=True)
class SignInPorts:
    messages: CodeSender
    wechat: WeChatExchange
    tokens: TokenIssuer
    limits: RateLimits


# --- results ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Started:
    challenge_id: str
    expires_at: datetime
    resend_at: datetime


@dataclass(frozen=True)
class Tokens:
    access_token: str
    access_expires_at: datetime
    refresh_token: str
    refresh_expires_at: datetime
    session_id: str


@dataclass(frozen=True)
class SignedIn:
    member: Member
    registered: bool
    tokens: Tokens


Work = Callable[[], IdentityUnitOfWork]


def _code_key(uow: IdentityUnitOfWork) -> bytes:
    return uow.keyring.derived_key("sign-in-code")


# --- SMS --------------------------------------------------------------------------------------
async def start_sms(
    uow_factory: Work, ports: SignInPorts, phone: str, address: str, now: datetime
) -> Started:
    """Send a code to a phone: the same for a registered and an unregistered one. Refused over
    the limits (RESOURCE_EXHAUSTED with RetryInfo); engagement not answering, UNAVAILABLE and
    nothing kept (the challenge counts against no limit)."""
    address = address.strip()
    if not address or len(address) > MAX_ADDRESS:
        raise InvalidArgument.of(
            [FieldViolation("client_address", "the client's address, at most 64 characters")]
        )
    async with uow_factory() as uow:
        (identity,) = await handlers.normalised(uow, [RawIdentity(PHONE, phone)], "phone")
        await uow.sign_in.hold_phone(identity)
        since = now - ports.limits.longest
        to_phone = await uow.sign_in.sent_to_phone(identity, since)
        from_address = await uow.sign_in.sent_from_address(address, since)
        ports.limits.check(to_phone, from_address, now)
        code = new_code()
        challenge = Challenge.issue(str(uuid.uuid4()), _code_key(uow), code, now)
        await uow.sign_in.add_challenge(challenge, identity, address)
        await uow.sign_in.forget_old_challenges(now)
        await ports.messages.send_code(identity.value, code, challenge.expires_at)
        await uow.commit()
    resend_at = now + ports.limits.phone_wait([*to_phone, now], now)
    return Started(challenge.challenge_id, challenge.expires_at, resend_at)


def challenge_id_of(name: str) -> str:
    challenge_id = name.removeprefix(CHALLENGES)
    try:
        if not name.startswith(CHALLENGES):
            raise ValueError
        return str(uuid.UUID(challenge_id))
    except ValueError:
        raise InvalidArgument.of(
            [FieldViolation("challenge", f"{CHALLENGES}{{id}} as StartSmsSignIn answered it")]
        ) from None


def _check_sign_in(challenge: str, code: str, unit: str) -> str:
    problems = Violations()
    challenge_id = ""
    try:
        challenge_id = challenge_id_of(challenge)
    except InvalidArgument as error:
        problems.items.extend(error.field_violations)
    if not is_code(code):
        problems.add("code", "the 6 digits sent")
    try:
        validate_unit(unit)
    except InvalidArgument as error:
        problems.items.extend(error.field_violations)
    problems.raise_if_any()
    return challenge_id


async def verify_sms(
    uow_factory: Work,
    ports: SignInPorts,
    challenge: str,
    code: str,
    unit: str,
    channel: str,
    now: datetime,
) -> SignedIn:
    """Check a challenge's code: the member of the phone signed in, registered when new."""
    challenge_id = _check_sign_in(challenge, code, unit)
    async with uow_factory() as uow:
        stored = await uow.sign_in.challenge(challenge_id)
        if stored is None:
            raise ChallengeNotFound()
        refused = stored.challenge.attempt(_code_key(uow), code, now)
        await uow.sign_in.save_challenge(stored.challenge)
        if refused is not None:
            await uow.commit()
            raise refused
        try:
            signed = await _sign_in(
                uow, ports, [RawIdentity(PHONE, stored.phone)], unit, channel, now
            )
        except (MemberSuspended, MemberErased, MemberMerged):
            await uow.commit()  # the code is used up all the same (read only, nothing else)
            raise
        await uow.commit()
    return signed


async def sign_in_with_wechat(
    uow_factory: Work, ports: SignInPorts, code: str, unit: str, channel: str, now: datetime
) -> SignedIn:
    """Sign in with a mini-program's login code: the member holding the openid or the unionid
    (the other linked to it when missing), else a new member with both."""
    problems = Violations()
    if not code.strip() or len(code) > 128:
        problems.add("code", "the login code from wx.login()")
    try:
        validate_unit(unit)
    except InvalidArgument as error:
        problems.items.extend(error.field_violations)
    problems.raise_if_any()
    account = await ports.wechat.exchange(code.strip())
    identities = [RawIdentity(WECHAT_OPENID, account.openid)]
    if account.unionid:
        identities.append(RawIdentity(WECHAT_UNIONID, account.unionid))
    async with uow_factory() as uow:
        signed = await _sign_in(uow, ports, identities, unit, channel, now)
        await uow.commit()
    return signed


async def _sign_in(
    uow: IdentityUnitOfWork,
    ports: SignInPorts,
    identities: list[RawIdentity],
    unit: str,
    channel: str,
    now: datetime,
) -> SignedIn:
    registered = await handlers.register(
        uow, Register(identities, unit, channel, Profile(), []), now
    )
    member = registered.member
    if not registered.created:
        member = await handlers.get_member(uow, member.member_id)
        _ensure_may_sign_in(member)
        for raw in identities:  # those the member lacks are linked (unionid found, openid new)
            member = await handlers.link(uow, member.member_id, raw, now)
    tokens = await _open_session(uow, ports, member.member_id, channel, now)
    return SignedIn(member, registered.created, tokens)


def _ensure_may_sign_in(member: Member) -> None:
    """Suspended members cannot sign in (merged ones sign in as their survivor, who holds
    their identities; erased ones hold none)."""
    if member.state is not MemberState.ACTIVE:
        member.ensure_active()


async def _open_session(
    uow: IdentityUnitOfWork, ports: SignInPorts, member_id: str, method: str, now: datetime
) -> Tokens:
    session_id = str(uuid.uuid4())
    await uow.sign_in.add_session(member_id, session_id, method, now)
    return await _tokens(uow, ports, member_id, session_id, now)


async def _tokens(
    uow: IdentityUnitOfWork, ports: SignInPorts, member_id: str, session_id: str, now: datetime
) -> Tokens:
    refresh = new_refresh_token()
    refresh_expires = now + REFRESH_TOKEN_LIFETIME
    await uow.sign_in.add_refresh_token(
        token_digest(refresh), session_id, member_id, now, refresh_expires
    )
    access, access_expires = ports.tokens.issue(member_id, session_id)
    return Tokens(access, access_expires, refresh, refresh_expires, session_id)


# --- refresh and sign-out ---------------------------------------------------------------------
def _token(text: str) -> bytes:
    if not text or len(text) > MAX_TOKEN:
        raise InvalidArgument.of([FieldViolation("refresh_token", "a refresh token")])
    return token_digest(text)


async def refresh(uow_factory: Work, ports: SignInPorts, token: str, now: datetime) -> Tokens:
    """A new pair for a refresh token, which is used up. A token used before revokes its
    session (REFRESH_TOKEN_REUSED): a copy is in someone else's hands."""
    digest = _token(token)
    async with uow_factory() as uow:
        found = await uow.sign_in.refresh_token(digest)
        if found is None:
            raise RefreshTokenInvalid()
        refused = found.refusal(now)
        if isinstance(refused, RefreshTokenReused):
            await uow.sign_in.revoke_session(found.session_id, now, "refresh_token_reused")
            await uow.commit()
        if refused is not None:
            raise refused
        member = await handlers.get_member(uow, found.member_id)
        _ensure_may_sign_in(member)
        await uow.sign_in.use_refresh_token(digest, now)
        tokens = await _tokens(uow, ports, found.member_id, found.session_id, now)
        await uow.commit()
    return tokens


async def sign_out(uow_factory: Work, token: str, now: datetime) -> str:
    """End the session of a refresh token (used or not); its id."""
    digest = _token(token)
    async with uow_factory() as uow:
        found = await uow.sign_in.refresh_token(digest)
        if found is None:
            raise RefreshTokenInvalid()
        await uow.sign_in.revoke_session(found.session_id, now, "sign_out")
        await uow.commit()
    return found.session_id


async def sign_out_everywhere(uow_factory: Work, member_id: str, now: datetime) -> int:
    """End every session of a member; how many were open. A device signed out may still show
    the member code (or someone photographed it): the code's secret is rotated in the same
    transaction, so every code shown before stops resolving."""
    async with uow_factory() as uow:
        await handlers.get_member(uow, member_id)
        ended = await uow.sign_in.revoke_member_sessions(member_id, now, "sign_out_everywhere")
        if await uow.member_codes.of_member(member_id) is not None:
            await member_codes.rotate_member_code(uow, member_id, "sign_out_everywhere", now)
        await uow.commit()
    return ended
