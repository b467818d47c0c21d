"""The member code (会员码) over a real channel and a real database: a member shows it, any till
resolves it once within its window, an old or a copied code is refused, a rotation retires every
earlier code, and a member's own token reaches only that member's code.

The identity replica here runs on a clock the tests move (real time plus an offset); it shares
the run's identity database with the session's replica."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from loyalty.identity.v1 import identity_service_pb2 as pb
from loyalty.identity.v1 import member_code_pb2 as codes
from loyalty.identity.v1 import member_code_pb2_grpc, member_pb2
from loyalty_devstack.testing import ServiceRunner
from loyalty_identity.app import SPEC
from loyalty_identity.service_layer.member_codes import forget_old_uses
from loyalty_kit.caller import Caller
from loyalty_kit.server import RunningService
from loyalty_kit.settings import Settings
from sqlalchemy import text

from tests.identity.conftest import ADMIN, HOTEL_POS, MALL_POS, MARKETING, IdentityClient
from tests.identity.test_registration import phone, register, rid
from tests.support.clients import As
from tests.support.clock import Clock
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")

# The member app's backend: shows members their code.
MEMBER_APP = Caller(unit="group", client_id="member-app", scopes=frozenset({"member_codes:read"}))


def member_token(member_id: str, *scopes: str) -> Caller:
    """A member's own token (as signing in gives), for that member only."""
    return Caller(
        client_id=f"member:{member_id}",
        scopes=frozenset(scopes or ("self:read", "self:write")),
        member=member_id,
    )


class Codes:
    """The identity service of these tests: its members, codes and tills."""

    def __init__(self, service: RunningService, channel: grpc.aio.Channel, clock: Clock) -> None:
        self.service = service
        self.clock = clock
        self.identity = IdentityClient(service, channel)
        self.channel = channel

    def codes(self, caller: Caller) -> Any:
        return As(member_code_pb2_grpc.MemberCodeServiceStub, self.channel, caller)

    async def new_member(self) -> member_pb2.Member:
        response = await self.identity.as_(MALL_POS).RegisterMember(register(phone()))
        member: member_pb2.Member = response.member
        return member

    async def code_of(self, member: member_pb2.Member, caller: Caller = MEMBER_APP) -> Any:
        request = codes.GetMemberCodeRequest(member=member.name)
        return (await self.codes(caller).GetMemberCode(request)).member_code

    def scan(self, code: str, till: Caller = MALL_POS) -> Any:
        identity = member_pb2.Identity(type="member_code", value=code)
        return self.identity.as_(till).ResolveMember(pb.ResolveMemberRequest(identity=identity))


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def app(settings: Settings) -> AsyncIterator[Codes]:
    clock = Clock()
    runner = ServiceRunner(settings)
    service = await runner.start(SPEC, settings, clock=clock)
    try:
        async with grpc.aio.insecure_channel(service.target) as channel:
            yield Codes(service, channel, clock)
    finally:
        await runner.stop_all()


@pytest.fixture(autouse=True)
def _real_time(app: Codes) -> None:
    app.clock.reset()


async def test_a_member_code_resolves_once_at_any_till(app: Codes) -> None:
    member = await app.new_member()
    shown = await app.code_of(member)
    assert len(shown.code) == 18 and shown.code.isdigit() and shown.code.startswith("66")
    assert shown.qr_payload == shown.code and shown.member == member.name
    assert shown.valid_from.ToSeconds() % 30 == 0
    assert shown.refresh_after.ToSeconds() - shown.valid_from.ToSeconds() == 30
    assert shown.valid_until.ToSeconds() - shown.valid_from.ToSeconds() == 60
    assert member.member_id not in shown.code  # the handle names the member, not the ID

    resolved = (await app.scan(shown.code)).member
    assert resolved.member_id == member.member_id
    assert resolved.personal_data_masked  # masked for a till, as any resolution

    again = await fails(app.scan(shown.code, HOTEL_POS))  # the same code at another till
    assert (again.code, again.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "MEMBER_CODE_USED")


async def test_the_same_member_shows_the_same_handle_until_a_rotation(app: Codes) -> None:
    member = await app.new_member()
    first = await app.code_of(member)
    app.clock.advance(seconds=30)
    later = await app.code_of(member)
    assert later.code[2:12] == first.code[2:12]
    assert later.code != first.code  # a new step, a new one-time part
    other = await app.code_of(await app.new_member())
    assert other.code[2:12] != first.code[2:12]


async def test_a_code_is_accepted_in_its_step_and_the_next_only(app: Codes) -> None:
    member = await app.new_member()
    within = await app.code_of(member)
    app.clock.advance(seconds=29)  # the same step or the next one: accepted
    assert (await app.scan(within.code)).member.member_id == member.member_id

    app.clock.reset()
    old = await app.code_of(member)
    app.clock.advance(seconds=61)  # two steps on: a screenshot of an old code
    expired = await fails(app.scan(old.code))
    assert (expired.code, expired.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "MEMBER_CODE_EXPIRED",
    )
    app.clock.advance(hours=2)  # long gone: not told apart from a code never issued
    gone = await fails(app.scan(old.code))
    assert (gone.code, gone.reason) == (grpc.StatusCode.NOT_FOUND, "MEMBER_CODE_UNKNOWN")


async def test_bad_and_unknown_codes_are_refused_with_their_reason(app: Codes) -> None:
    for bad in ("", "12345", "77" + "0" * 16, "66" + "x" * 16, "66" + "1" * 17, "６６" + "1" * 16):
        malformed = await fails(app.scan(bad))
        assert (malformed.code, malformed.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "MEMBER_CODE_MALFORMED",
        ), bad
        assert malformed.fields == ["identity.value"]
    member = await app.new_member()
    shown = (await app.code_of(member)).code
    forged = shown[:12] + f"{(int(shown[12:]) + 1) % 10**6:06d}"  # the right handle, wrong OTP
    for code in (f"66{uuid.uuid4().int % 10**16:016d}", forged):
        unknown = await fails(app.scan(code))
        assert (unknown.code, unknown.reason) == (grpc.StatusCode.NOT_FOUND, "MEMBER_CODE_UNKNOWN")
        assert unknown.metadata == {}  # nothing about a handle or a member
    # The type is reserved: no catalogue entry may take its name.
    reserved = await fails(
        app.identity.as_(ADMIN).UpsertIdentityType(
            pb.UpsertIdentityTypeRequest(
                identity_type=member_pb2.IdentityType(
                    code="member_code", kind=member_pb2.IDENTITY_KIND_TOKEN, pattern="^[0-9]+$"
                )
            )
        )
    )
    assert reserved.fields == ["identity_type.code"]


async def test_a_rotation_retires_every_earlier_code_at_once(app: Codes) -> None:
    member = await app.new_member()
    before = await app.code_of(member)
    own = member_token(member.member_id)
    request = codes.RotateMemberCodeRequest(
        member=member.name, request_id=rid(), reason="code seen by someone else"
    )
    rotated = (await app.codes(own).RotateMemberCode(request)).member_code
    assert rotated.code[2:12] != before.code[2:12]  # a new handle
    retired = await fails(app.scan(before.code))
    assert (retired.code, retired.reason) == (grpc.StatusCode.NOT_FOUND, "MEMBER_CODE_UNKNOWN")
    assert (await app.scan(rotated.code)).member.member_id == member.member_id

    # A retry answers the code of now under the same new secret, rotating nothing again.
    retried = (await app.codes(own).RotateMemberCode(request)).member_code
    assert retried.code[2:12] == rotated.code[2:12]
    # The group's member operations may rotate too; a reason is required.
    by_desk = codes.RotateMemberCodeRequest(member=member.name, request_id=rid(), reason="lost")
    desk = (await app.codes(MARKETING).RotateMemberCode(by_desk)).member_code
    assert desk.code[2:12] != rotated.code[2:12]
    no_reason = await fails(
        app.codes(MARKETING).RotateMemberCode(
            codes.RotateMemberCodeRequest(member=member.name, request_id=rid())
        )
    )
    assert no_reason.fields == ["reason"]


async def test_a_member_token_reaches_only_its_own_members_code(app: Codes) -> None:
    member, other = await app.new_member(), await app.new_member()
    own = member_token(member.member_id, "self:read")
    assert (await app.code_of(member, own)).code.startswith("66")
    foreign = await fails(app.code_of(other, own))
    assert (foreign.code, foreign.reason) == (grpc.StatusCode.PERMISSION_DENIED, "MEMBER_MISMATCH")
    rotate_other = await fails(
        app.codes(member_token(member.member_id)).RotateMemberCode(
            codes.RotateMemberCodeRequest(member=other.name, request_id=rid(), reason="x")
        )
    )
    assert rotate_other.reason == "MEMBER_MISMATCH"
    # A member cannot play a till: resolving is for the units' clients.
    shown = (await app.code_of(other)).code
    till = await fails(app.scan(shown, own))
    assert till.reason == "MEMBER_TOKEN_REFUSED"
    # A till cannot show a member's code.
    refused = await fails(app.code_of(member, MALL_POS))
    assert refused.reason == "SCOPE_REQUIRED"


async def test_concurrent_scans_of_one_code_let_exactly_one_through(app: Codes) -> None:
    member = await app.new_member()
    shown = (await app.code_of(member)).code
    outcomes = await asyncio.gather(*(app.scan(shown) for _ in range(12)), return_exceptions=True)
    answered = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(answered) == 1 and len(refused) == 11, outcomes
    assert answered[0].member.member_id == member.member_id
    assert {r.code() for r in refused} == {grpc.StatusCode.FAILED_PRECONDITION}


async def test_suspended_members_resolve_as_they_are_and_erased_ones_not_at_all(
    app: Codes,
) -> None:
    suspended, erased = await app.new_member(), await app.new_member()
    desk = app.identity.as_(MARKETING)
    await desk.SuspendMember(
        pb.SuspendMemberRequest(name=suspended.name, request_id=rid(), reason="dispute")
    )
    shown = (await app.code_of(suspended)).code
    resolved = (await app.scan(shown)).member
    assert resolved.state == member_pb2.MEMBER_STATE_SUSPENDED

    code = (await app.code_of(erased)).code
    await desk.EraseMember(pb.EraseMemberRequest(name=erased.name, request_id=rid()))
    gone = await fails(app.scan(code))
    assert gone.reason == "MEMBER_CODE_UNKNOWN"
    async with app.service.root.uow(read_only=True) as uow:
        assert await uow.member_codes.of_member(erased.member_id) is None  # the secret deleted
    refused = await fails(app.code_of(erased))
    assert refused.reason == "MEMBER_ERASED"


async def test_uses_of_codes_no_longer_accepted_are_forgotten(app: Codes) -> None:
    member = await app.new_member()
    await app.scan((await app.code_of(member)).code)
    handle = (await app.code_of(member)).code[2:12]

    async def uses() -> int:
        async with app.service.root.uow(read_only=True) as uow:
            found = await uow.session.scalar(
                text("SELECT count(*) FROM member_code_uses WHERE handle = :h"), {"h": handle}
            )
            return int(found or 0)

    assert await uses() == 1
    async with app.service.root.uow() as uow:
        await forget_old_uses(uow, app.clock())  # still accepted: kept
        await uow.commit()
    assert await uses() == 1
    app.clock.advance(seconds=120)
    async with app.service.root.uow() as uow:
        await forget_old_uses(uow, app.clock())
        await uow.commit()
    assert await uses() == 0
