"""Grants by hand: a status match or a gift lifts the tier until it ends or is revoked."""

from __future__ import annotations

from datetime import timedelta

import pytest
from loyalty_kit.errors import InvalidArgument, MemberNotActive
from loyalty_tiers.domain.errors import GrantNotFound, NoLadder
from loyalty_tiers.domain.grants import GrantKind, GrantNotActive, GrantState
from loyalty_tiers.service_layer.grants import (
    Expiry,
    create_grant,
    grants_due,
    revoke_grant,
    run_grant_expiry,
)
from loyalty_tiers.service_layer.identity_events import on_member_erased

from tests.tiers.unit.conftest import ANN, BOB, T0, Tiers
from tests.tiers.unit.fakes import FakeTierStore, FakeUnitOfWork

IN_A_MONTH = T0 + timedelta(days=30)


async def match(tiers: Tiers, tier: str = "gold", ends: object = IN_A_MONTH) -> str:
    done = await tiers(
        create_grant, ANN, GrantKind.STATUS_MATCH, tier, " partner gold ", ends, tiers.now
    )
    return done.grant.grant_id


async def test_a_status_match_lifts_the_tier_and_says_until_when(tiers: Tiers) -> None:
    await tiers.earn(ANN, 6_000)

    grant_id = await match(tiers)

    assert tiers.reasons(ANN)[-1] == ("silver", "gold", "granted")
    assert tiers.events[-1].grant_ends_at == IN_A_MONTH
    member = tiers.member(ANN)
    assert (member.tier, member.effective) == ("silver", "gold")
    stored, _ = tiers.store.tables.grants[grant_id]
    assert stored.reason == "partner gold"


async def test_a_grant_below_the_earned_tier_changes_nothing(tiers: Tiers) -> None:
    await tiers.earn(ANN, 25_000)

    await match(tiers, "silver")

    assert tiers.reasons(ANN) == [("basic", "gold", "qualified")]
    assert tiers.member(ANN).effective == "gold"


async def test_a_grant_needs_a_tier_above_the_entry_a_reason_and_a_future_end(
    tiers: Tiers,
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await tiers(create_grant, ANN, GrantKind.GIFT, "basic", " ", T0, tiers.now)

    fields = {v.field for v in refused.value.field_violations}
    assert fields == {"tier_grant.tier", "tier_grant.reason", "tier_grant.end_time"}
    assert tiers.store.tables.grants == {}


async def test_no_grant_without_a_ladder() -> None:
    uow = FakeUnitOfWork(FakeTierStore())
    with pytest.raises(NoLadder):
        async with uow:
            await create_grant(uow, ANN, GrantKind.GIFT, "gold", "gift", IN_A_MONTH, T0)


async def test_an_erased_member_is_given_no_grant(tiers: Tiers) -> None:
    await tiers.earn(ANN, 6_000)
    await tiers(on_member_erased, ANN, tiers.now)

    with pytest.raises(MemberNotActive) as refused:
        await match(tiers)

    assert refused.value.reason == "MEMBER_ERASED"
    assert tiers.store.tables.grants == {}


async def test_a_revoked_grant_falls_back_to_the_earned_tier(tiers: Tiers) -> None:
    await tiers.earn(ANN, 6_000)
    grant_id = await match(tiers)

    done = await tiers(revoke_grant, ANN, grant_id, " sold in error ", tiers.later(days=1))

    assert done.tier == "silver"
    assert done.grant.state is GrantState.REVOKED
    assert done.grant.end_reason == "sold in error"
    assert done.grant.ends_at == tiers.now
    assert tiers.reasons(ANN)[-1] == ("gold", "silver", "grant_revoked")


async def test_a_grant_no_longer_in_force_cannot_be_revoked(tiers: Tiers) -> None:
    grant_id = await match(tiers)
    await tiers(revoke_grant, ANN, grant_id, "once", tiers.now)

    with pytest.raises(GrantNotActive) as refused:
        await tiers(revoke_grant, ANN, grant_id, "twice", tiers.now)

    assert refused.value.metadata == {"state": "revoked"}


async def test_an_unknown_grant_is_not_found(tiers: Tiers) -> None:
    with pytest.raises(GrantNotFound):
        await tiers(revoke_grant, ANN, "no-such-grant", "why", tiers.now)


async def test_an_ended_grant_falls_back_at_its_end_and_once(tiers: Tiers) -> None:
    await tiers.earn(ANN, 6_000)
    await match(tiers)
    as_of = IN_A_MONTH + timedelta(hours=1)

    first = await run_grant_expiry(tiers.factory, as_of)
    again = await run_grant_expiry(tiers.factory, as_of)

    assert (first, again) == (Expiry(ended=1, changed=1), Expiry())
    assert tiers.reasons(ANN)[-1] == ("gold", "silver", "grant_ended")
    assert tiers.events[-1].effective_at == IN_A_MONTH


async def test_activity_after_a_grant_ran_out_announces_its_end_not_a_qualification(
    tiers: Tiers,
) -> None:
    await tiers.earn(ANN, 6_000)
    await match(tiers, "platinum")
    tiers.later(days=31)  # the grant's time is up; the expiry job has not run yet

    await tiers.earn(ANN, 15_000)  # gold, below the platinum grant

    assert tiers.reasons(ANN)[-1] == ("platinum", "gold", "grant_ended")
    assert tiers.events[-1].effective_at == IN_A_MONTH
    assert tiers.store.tables.grants and all(
        g.state is GrantState.ENDED for g, _ in tiers.store.tables.grants.values()
    )


async def test_activity_above_a_grant_upgrades_as_usual(tiers: Tiers) -> None:
    await match(tiers, "silver")

    await tiers.earn(ANN, 25_000)

    assert tiers.reasons(ANN) == [("basic", "silver", "granted"), ("silver", "gold", "qualified")]


async def test_grant_expiry_stops_about_its_limit_and_counts_what_is_left(tiers: Tiers) -> None:
    for member, tier, ends in (
        (ANN, "gold", IN_A_MONTH),
        (ANN, "platinum", IN_A_MONTH + timedelta(minutes=1)),
        (BOB, "gold", IN_A_MONTH + timedelta(minutes=2)),
    ):
        await tiers(create_grant, member, GrantKind.GIFT, tier, "opening gift", ends, tiers.now)
    as_of = IN_A_MONTH + timedelta(hours=1)
    async with tiers.factory() as uow:
        assert await grants_due(uow, as_of) == 3

    first = await run_grant_expiry(tiers.factory, as_of, limit=1)

    assert first.ended == 2  # about the limit: both of Ann's lapsed grants end together
    async with tiers.factory() as uow:
        assert await grants_due(uow, as_of) == 1
    assert (await run_grant_expiry(tiers.factory, as_of, limit=1)).ended == 1
