"""A member's own erasure request without a server: the request's states (requested,
confirmed, cancelled, done), its code's attempts and expiry, the cooling-off; the sweep over
the fake unit of work erasing through the one erasure; and identity's refusal of a member token
whose session ended or whose member was erased."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from loyalty_identity.domain.erasure import (
    CODE_ATTEMPTS,
    CODE_EXPIRED,
    CODE_LIFETIME,
    ErasureAlreadyDone,
    ErasureCancelled,
    ErasureCodeAttempts,
    ErasureCodeExpired,
    ErasureCodeWrong,
    ErasureCoolingOff,
    ErasureNotConfirmed,
    ErasureRequest,
    ErasureState,
)
from loyalty_identity.domain.member import MemberState, Profile
from loyalty_identity.domain.sign_in import (
    MemberTokenOfErased,
    MemberTokenRevoked,
    access_refusal,
)
from loyalty_identity.service_layer import erasure, handlers
from loyalty_identity.service_layer.commands import RawIdentity, Register
from loyalty_identity.service_layer.erasure import ErasurePorts

from tests.identity.unit.fakes import FakeUnitOfWork

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)
KEY = b"e" * 32
WEEK = timedelta(hours=168)


def opened(code: str = "123456") -> ErasureRequest:
    return ErasureRequest.open("e-1", "m-1", KEY, code, T0, WEEK)


def state(request: ErasureRequest) -> ErasureState:
    """Read afresh (each step changes it)."""
    return request.state


def test_a_request_is_confirmed_by_its_code_and_due_only_after_the_cooling_off() -> None:
    request = opened()
    assert request.state is ErasureState.REQUESTED and request.erase_after == T0 + WEEK
    assert request.is_open(T0) and not request.is_due(T0 + 2 * WEEK)
    with pytest.raises(ErasureNotConfirmed):
        request.ensure_due(T0 + 2 * WEEK)
    assert request.confirm(KEY, "123456", T0 + timedelta(minutes=1), "r1") is None
    assert state(request) is ErasureState.CONFIRMED and request.confirmed_at is not None
    # Confirming again changes nothing.
    assert request.confirm(KEY, "000000", T0 + timedelta(minutes=2), "r2") is None
    assert not request.is_due(T0 + WEEK - timedelta(seconds=1))
    with pytest.raises(ErasureCoolingOff):
        request.ensure_due(T0 + WEEK - timedelta(seconds=1))
    assert request.is_due(T0 + WEEK)
    request.ensure_due(T0 + WEEK)
    request.done(T0 + WEEK)
    assert state(request) is ErasureState.DONE and not request.is_open(T0 + WEEK)
    with pytest.raises(ErasureAlreadyDone):  # a second sweep at once carries out nothing
        request.ensure_due(T0 + WEEK)
    with pytest.raises(ErasureAlreadyDone):
        request.cancel("member", T0 + WEEK)


def test_wrong_codes_count_once_per_attempt_and_the_fifth_cancels_the_request() -> None:
    request = opened()
    first = request.confirm(KEY, "000000", T0, "a1")
    assert isinstance(first, ErasureCodeWrong) and first.attempts_left == 4
    again = request.confirm(KEY, "000000", T0, "a1")  # the same call retried: not counted
    assert isinstance(again, ErasureCodeWrong) and again.attempts_left == 4
    for n, left in ((2, 3), (3, 2), (4, 1)):
        refused = request.confirm(KEY, "000000", T0, f"a{n}")
        assert isinstance(refused, ErasureCodeWrong) and refused.attempts_left == left
    assert isinstance(request.confirm(KEY, "000000", T0, "a5"), ErasureCodeAttempts)
    assert state(request) is ErasureState.CANCELLED and request.cancel_reason == CODE_ATTEMPTS
    # Even the right code confirms nothing now.
    assert isinstance(request.confirm(KEY, "123456", T0, "a6"), ErasureCodeAttempts)
    assert not request.is_open(T0)


def test_an_expired_code_confirms_nothing_and_a_new_request_replaces_the_dead_one() -> None:
    request = opened()
    late = T0 + CODE_LIFETIME
    assert isinstance(request.confirm(KEY, "123456", late, "r1"), ErasureCodeExpired)
    assert request.state is ErasureState.REQUESTED and not request.is_open(late)
    request.replace(late)
    assert state(request) is ErasureState.CANCELLED and request.cancel_reason == CODE_EXPIRED


def test_a_cancelled_request_is_never_confirmed_nor_carried_out() -> None:
    request = opened()
    assert request.confirm(KEY, "123456", T0, "r1") is None
    request.cancel("member", T0 + timedelta(hours=1))
    request.cancel("operator", T0 + timedelta(hours=2))  # changes nothing
    assert request.cancel_reason == "member"
    assert request.cancelled_at == T0 + timedelta(hours=1)
    assert isinstance(request.confirm(KEY, "123456", T0, "r2"), ErasureCancelled)
    assert not request.is_due(T0 + 2 * WEEK)
    with pytest.raises(ErasureCancelled):
        request.ensure_due(T0 + 2 * WEEK)


def test_the_code_is_kept_only_by_its_hash_bound_to_the_request() -> None:
    one = ErasureRequest.open("e-1", "m-1", KEY, "123456", T0, WEEK)
    other = ErasureRequest.open("e-2", "m-1", KEY, "123456", T0, WEEK)
    assert b"123456" not in one.code_hash and one.code_hash != other.code_hash


def test_a_member_token_is_refused_once_its_session_ended_or_its_member_was_erased() -> None:
    assert access_refusal("active", True, True, None) is None
    assert access_refusal("active", False, False, None) is None  # no session claim
    assert isinstance(access_refusal("erased", True, True, "erased"), MemberTokenOfErased)
    ended = access_refusal("active", True, True, "sign_out_everywhere")
    assert isinstance(ended, MemberTokenRevoked) and ended.reason == "MEMBER_TOKEN_REVOKED"
    assert isinstance(access_refusal("active", True, False, None), MemberTokenRevoked)


# --- the sweep over the fake unit of work -----------------------------------------------------
class Sent:
    def __init__(self) -> None:
        self.codes: list[tuple[str, str]] = []

    async def send_erasure_code(self, phone: str, code: str, expires_at: datetime) -> None:
        self.codes.append((phone, code))


async def test_the_sweep_erases_a_confirmed_member_after_the_cooling_off_only() -> None:
    uow = FakeUnitOfWork()
    sent = Sent()
    ports = ErasurePorts(sent, KEY, WEEK)
    phone = f"150{uuid.uuid4().int % 10**8:08d}"
    async with uow:
        registered = await handlers.register(
            uow, Register([RawIdentity("phone", phone)], "mall", "app", Profile(), []), T0
        )
        member_id = registered.member.member_id
        await erasure.request_erasure(uow, ports, member_id, T0)
        await uow.commit()
    ((to, code),) = sent.codes
    assert to == f"+86{phone}"
    await erasure.confirm_erasure(lambda: uow, ports, member_id, code, "c1", T0)
    assert await erasure.run_due_erasures(lambda: uow, T0 + WEEK - timedelta(minutes=1)) == []
    assert await erasure.run_due_erasures(lambda: uow, T0 + WEEK) == [member_id]
    assert uow.members.tables.members[member_id].state is MemberState.ERASED
    async with uow:
        done = await erasure.get_erasure_request(uow, member_id)
    assert done.state is ErasureState.DONE and done.done_at == T0 + WEEK
    assert [a["action"] for a in uow.members.tables.audit] == ["erased"]
    # Nothing is due any more.
    assert await erasure.run_due_erasures(lambda: uow, T0 + 2 * WEEK) == []
