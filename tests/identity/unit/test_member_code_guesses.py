"""Wrong member codes limited, on the fake unit of work: a handle's wrong codes lock its scans
(the right code too) until the oldest leaves the window; a client's wrong codes across handles
lock that client's scans; the guesses are committed although the scan is refused, and forgotten
once no scan counts them any more."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from loyalty_identity.domain.member_code import (
    GUESS_CLOCK_SLACK,
    GuessLimits,
    MemberCodeExpired,
    MemberCodeLocked,
    MemberCodeUnknown,
)
from loyalty_identity.domain.sign_in import Limit
from loyalty_identity.service_layer.member_codes import (
    forget_old_wrong_guesses,
    member_code,
    resolve_member_code,
)

from tests.identity.unit.conftest import Identity

LIMITS = GuessLimits(
    per_handle=Limit(5, timedelta(minutes=5)), per_client=Limit(8, timedelta(minutes=5))
)


def wrong(code: str) -> str:
    """The same handle, another one-time part."""
    return code[:12] + f"{(int(code[12:]) + 1) % 10**6:06d}"


async def scan(identity: Identity, code: str, client: str = "till-1") -> str:
    member = await identity(resolve_member_code, code, identity.now, client, LIMITS)
    return member.member_id


async def test_five_wrong_codes_lock_the_handle_until_the_window_passes(
    identity: Identity,
) -> None:
    member = await identity.register()
    code = (await identity(member_code, member.member_id, identity.now)).code
    for n in range(5):
        with pytest.raises(MemberCodeUnknown):
            await scan(identity, wrong(code), client=f"till-{n}")  # five tills, one handle
    assert len(identity.store.tables.member_code_wrong) == 10  # committed: a client and a handle
    with pytest.raises(MemberCodeLocked) as locked:
        await scan(identity, code, client="till-9")  # the right code as well
    assert locked.value.metadata["limit"] == "handle"
    assert 0 < (locked.value.retry_after_seconds or 0) <= 300
    assert len(identity.store.tables.member_code_wrong) == 10  # a locked scan counts nothing

    identity.later(minutes=5, seconds=1)
    fresh = (await identity(member_code, member.member_id, identity.now)).code
    assert await scan(identity, fresh) == member.member_id


async def test_a_client_walking_many_handles_is_locked(identity: Identity) -> None:
    codes = []
    for _ in range(4):
        member = await identity.register()
        codes.append((await identity(member_code, member.member_id, identity.now)).code)
    for n in range(8):
        with pytest.raises(MemberCodeUnknown):
            await scan(identity, wrong(codes[n % 4]) if n < 4 else "66" + f"{n:016d}")
    with pytest.raises(MemberCodeLocked) as locked:
        await scan(identity, codes[0])
    assert locked.value.metadata["limit"] == "client"
    assert await scan(identity, codes[0], client="till-2") != ""  # another till is not held


async def test_expired_and_unknown_handles_lock_no_member(identity: Identity) -> None:
    member = await identity.register()
    old = (await identity(member_code, member.member_id, identity.now)).code
    identity.later(seconds=90)
    for n in range(6):
        with pytest.raises(MemberCodeExpired):  # a late scan of a code once right: no guess
            await scan(identity, old, client=f"till-{n}")
    fresh = (await identity(member_code, member.member_id, identity.now)).code
    assert await scan(identity, fresh) == member.member_id
    for n in range(6):  # handles nobody holds count for their client only
        with pytest.raises(MemberCodeUnknown):
            await scan(identity, "66" + f"{n:016d}", client=f"other-{n}")
    assert all(kind == "client" for kind, *_ in identity.store.tables.member_code_wrong)


def test_a_guess_counts_for_nothing_past_the_longest_window_and_the_clocks_slack() -> None:
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    assert LIMITS.forgettable_before(now) == now - timedelta(minutes=5) - GUESS_CLOCK_SLACK
    longer = GuessLimits(per_client=Limit(30, timedelta(minutes=20)))
    assert longer.forgettable_before(now) == now - timedelta(minutes=20) - GUESS_CLOCK_SLACK


async def test_wrong_guesses_are_forgotten_once_no_scan_counts_them(identity: Identity) -> None:
    member = await identity.register()
    code = (await identity(member_code, member.member_id, identity.now)).code
    for n in range(5):
        with pytest.raises(MemberCodeUnknown):
            await scan(identity, wrong(code), client=f"till-{n}")
    identity.later(minutes=4)
    assert await identity(forget_old_wrong_guesses, identity.now, LIMITS) == 0  # still counted
    with pytest.raises(MemberCodeLocked):
        await scan(identity, code, client="till-9")

    identity.later(minutes=2)  # past the window, not past the clocks' slack: kept
    assert await identity(forget_old_wrong_guesses, identity.now, LIMITS) == 0
    identity.later(seconds=1)
    assert await identity(forget_old_wrong_guesses, identity.now, LIMITS) == 10
    assert identity.store.tables.member_code_wrong == []
    fresh = (await identity(member_code, member.member_id, identity.now)).code
    assert await scan(identity, fresh) == member.member_id
