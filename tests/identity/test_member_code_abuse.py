"""Abuse of member codes at the till, over real channels: wrong codes for one handle lock its
scans for a while (MEMBER_CODE_LOCKED, RESOURCE_EXHAUSTED with RetryInfo) at every replica, the
member's right code passes once the lock is over, a till walking many handles is held itself,
every refusal is counted in identity's /metrics by reason, and the wrong codes are kept in a
table of their own until no scan counts them any more."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import timedelta

import grpc
import pytest
from loyalty.identity.v1 import identity_service_pb2 as pb
from loyalty.identity.v1 import member_pb2
from loyalty_identity.service_layer.member_codes import forget_old_wrong_guesses
from loyalty_kit.caller import Caller
from loyalty_kit.server import RunningService
from sqlalchemy import text

from tests.identity.conftest import IdentityClient
from tests.identity.test_member_code import Codes, _real_time, app  # noqa: F401 (the fixtures)
from tests.identity.test_sign_in import retry_after
from tests.support.metrics import moved, scrape
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")

REFUSALS = "loyalty_member_code_refusals_total"


def till() -> Caller:
    """A till of its own (the limit per client counts by its client id)."""
    return Caller(
        unit="mall", client_id=f"till-{uuid.uuid4().hex[:12]}", scopes=frozenset({"earn"})
    )


def wrong(code: str) -> str:
    """The same handle, another one-time part."""
    return code[:12] + f"{(int(code[12:]) + random.randrange(1, 10**6)) % 10**6:06d}"


async def test_wrong_codes_lock_the_handle_at_every_replica_until_the_window_passes(
    app: Codes,  # noqa: F811 (the fixture)
    identity_service: RunningService,
) -> None:
    member = await app.new_member()
    shown = await app.code_of(member)
    before = await scrape(app.service)
    for _ in range(5):  # five tills, one guess each: the handle's limit, not a till's
        refused = await fails(app.scan(wrong(shown.code), till()))
        assert (refused.code, refused.reason) == (grpc.StatusCode.NOT_FOUND, "MEMBER_CODE_UNKNOWN")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await app.scan(shown.code, till())  # the right code waits as well
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert 0 < retry_after(raised.value) <= 300
    locked = await fails(app.scan(shown.code, till()))
    assert (locked.reason, locked.metadata["limit"]) == ("MEMBER_CODE_LOCKED", "handle")
    # Another replica reads the same counts: the handle is locked there too.
    async with grpc.aio.insecure_channel(identity_service.target) as channel:
        other = IdentityClient(identity_service, channel).as_(till())
        identity = member_pb2.Identity(type="member_code", value=shown.code)
        elsewhere = await fails(other.ResolveMember(pb.ResolveMemberRequest(identity=identity)))
    assert elsewhere.reason == "MEMBER_CODE_LOCKED"
    after = await scrape(app.service)
    assert moved(before, after, REFUSALS, reason="MEMBER_CODE_UNKNOWN") == 5
    assert moved(before, after, REFUSALS, reason="MEMBER_CODE_LOCKED_HANDLE") == 2
    assert shown.code[2:12] not in after.text  # no handle, code or member in a label

    app.clock.advance(minutes=5, seconds=1)
    fresh = await app.code_of(member)
    assert (await app.scan(fresh.code, till())).member.member_id == member.member_id


async def test_a_till_walking_many_handles_is_held_after_thirty_wrong_codes(
    app: Codes,  # noqa: F811 (the fixture)
) -> None:
    member = await app.new_member()
    walker = till()
    before = await scrape(app.service)
    for _ in range(30):
        handle = f"66{uuid.uuid4().int % 10**16:016d}"
        refused = await fails(app.scan(handle, walker))
        assert refused.reason == "MEMBER_CODE_UNKNOWN"
    shown = await app.code_of(member)
    held = await fails(app.scan(shown.code, walker))
    assert (held.code, held.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "MEMBER_CODE_LOCKED")
    assert held.metadata["limit"] == "client"
    # The member is not held: another till resolves the same code.
    assert (await app.scan(shown.code, till())).member.member_id == member.member_id
    after = await scrape(app.service)
    assert moved(before, after, REFUSALS, reason="MEMBER_CODE_LOCKED_CLIENT") == 1
    assert moved(before, after, REFUSALS, reason="MEMBER_CODE_UNKNOWN") == 30


async def test_malformed_replayed_and_expired_codes_are_counted(
    app: Codes,  # noqa: F811 (the fixture)
) -> None:
    member = await app.new_member()
    before = await scrape(app.service)
    assert (await fails(app.scan("66123", till()))).reason == "MEMBER_CODE_MALFORMED"
    shown = await app.code_of(member)
    await app.scan(shown.code, till())
    assert (await fails(app.scan(shown.code, till()))).reason == "MEMBER_CODE_USED"
    old = await app.code_of(member)
    app.clock.advance(seconds=61)
    assert (await fails(app.scan(old.code, till()))).reason == "MEMBER_CODE_EXPIRED"
    after = await scrape(app.service)
    for reason in ("MEMBER_CODE_MALFORMED", "MEMBER_CODE_USED", "MEMBER_CODE_EXPIRED"):
        assert moved(before, after, REFUSALS, reason=reason) == 1, reason
    assert moved(before, after, REFUSALS) == 3


async def test_wrong_codes_sent_at_once_cannot_all_pass_the_handles_limit(
    app: Codes,  # noqa: F811 (the fixture)
) -> None:
    member = await app.new_member()
    shown = await app.code_of(member)
    answers = await asyncio.gather(*(fails(app.scan(wrong(shown.code), till())) for _ in range(20)))
    reasons = sorted(answer.reason for answer in answers)
    assert reasons == ["MEMBER_CODE_LOCKED"] * 15 + ["MEMBER_CODE_UNKNOWN"] * 5
    assert (await fails(app.scan(shown.code, till()))).reason == "MEMBER_CODE_LOCKED"


async def test_wrong_codes_are_kept_apart_from_request_ids_and_forgotten_after_the_window(
    app: Codes,  # noqa: F811 (the fixture)
) -> None:
    member = await app.new_member()
    shown = await app.code_of(member)
    handle, tills = shown.code[2:12], [till() for _ in range(5)]
    for one in tills:
        assert (await fails(app.scan(wrong(shown.code), one))).reason == "MEMBER_CODE_UNKNOWN"
    root = app.service.root

    async def guesses() -> tuple[int, int]:
        """The handle's and the first till's wrong guesses the store keeps, of any time."""
        now, far = app.clock(), timedelta(days=1)
        async with root.uow(read_only=True) as uow:
            of_handle, of_till = await uow.member_codes.wrong_guesses(
                handle, tills[0].client_id, now - far, now + far
            )
        return len(of_handle), len(of_till)

    async def sweep() -> None:
        """The job `member-code-guesses` (the replica's own may run meanwhile: no count)."""
        async with root.uow() as uow:
            await forget_old_wrong_guesses(uow, app.clock(), root.guess_limits)
            await uow.commit()

    assert await guesses() == (5, 1)
    async with root.uow(read_only=True) as uow:
        in_keys = await uow.session.scalar(
            text("SELECT count(*) FROM kit_idempotency_keys WHERE scope LIKE 'member-code-%'")
        )
    assert in_keys == 0  # the kit's request ids hold none of them

    app.clock.advance(minutes=4)
    await sweep()  # within the window: kept, and the handle stays locked
    assert await guesses() == (5, 1)
    assert (await fails(app.scan(shown.code, till()))).reason == "MEMBER_CODE_LOCKED"

    app.clock.advance(minutes=2, seconds=1)  # past the window and the clocks' slack
    await sweep()
    assert await guesses() == (0, 0)
    fresh = await app.code_of(member)
    assert (await app.scan(fresh.code, till())).member.member_id == member.member_id
