"""The tier year's end: kept with enough activity in it, otherwise down."""

from __future__ import annotations

from datetime import timedelta

from loyalty_tiers.service_layer.identity_events import on_member_erased
from loyalty_tiers.service_layer.ladders import publish_ladder
from loyalty_tiers.service_layer.tier_year import YearEnd, members_due, run_year_end

from tests.tiers.ladders import huayue
from tests.tiers.unit.conftest import ANN, BOB, T0, Tiers
from tests.tiers.unit.fakes import FakeTierStore, FakeUnitOfWork

A_YEAR_ON = T0.replace(year=2027) + timedelta(days=1)


async def test_enough_activity_in_the_tier_year_keeps_the_tier_for_another(tiers: Tiers) -> None:
    await tiers.earn(ANN, 25_000)  # gold; the purchase that earned it does not count
    await tiers.earn(ANN, 10_000, at=T0 + timedelta(days=100))

    total = await run_year_end(tiers.factory, A_YEAR_ON, 500)

    assert total == YearEnd(judged=1, retained=1, downgraded=0)
    assert tiers.reasons(ANN)[-1] == ("gold", "gold", "retained")
    assert tiers.member(ANN).tier_year_end == T0.replace(year=2028)


async def test_a_year_without_enough_drops_one_level_from_the_years_end(tiers: Tiers) -> None:
    await tiers.earn(ANN, 90_000)  # platinum

    total = await run_year_end(tiers.factory, A_YEAR_ON, 500)

    assert total == YearEnd(judged=1, retained=0, downgraded=1)
    assert tiers.reasons(ANN)[-1] == ("platinum", "gold", "downgraded")
    assert tiers.events[-1].effective_at == T0.replace(year=2027)
    assert tiers.member(ANN).since == T0.replace(year=2027)


async def test_the_to_supported_policy_drops_to_what_the_year_supports(tiers: Tiers) -> None:
    await tiers(publish_ladder, huayue(downgrade_to_supported=True))
    await tiers.earn(ANN, 90_000)
    await tiers.earn(ANN, 6_000, at=T0 + timedelta(days=30))

    await run_year_end(tiers.factory, A_YEAR_ON, 500)

    assert tiers.member(ANN).tier == "silver"


async def test_dropping_to_the_entry_tier_ends_the_tier_year(tiers: Tiers) -> None:
    await tiers.earn(ANN, 6_000)

    await run_year_end(tiers.factory, A_YEAR_ON, 500)

    assert tiers.member(ANN).tier == "basic"
    assert tiers.member(ANN).tier_year_end is None


async def test_grace_days_count_and_wait_for_their_end(tiers: Tiers) -> None:
    await tiers(publish_ladder, huayue(grace_days=30))
    await tiers.earn(ANN, 6_000)
    await tiers.earn(ANN, 3_000, at=T0.replace(year=2027) + timedelta(days=10))

    early = await run_year_end(tiers.factory, A_YEAR_ON, 500)
    assert early.judged == 0
    await run_year_end(tiers.factory, A_YEAR_ON + timedelta(days=30), 500)

    assert tiers.reasons(ANN)[-1] == ("silver", "silver", "retained")


async def test_running_again_judges_nothing_twice(tiers: Tiers) -> None:
    await tiers.earn(ANN, 25_000)
    await run_year_end(tiers.factory, A_YEAR_ON, 500)

    again = await run_year_end(tiers.factory, A_YEAR_ON, 500)

    assert again.judged == 0
    assert tiers.member(ANN).tier == "silver"


async def test_several_unjudged_years_are_judged_one_by_one(tiers: Tiers) -> None:
    await tiers.earn(ANN, 90_000)

    total = await run_year_end(tiers.factory, T0.replace(year=2029) + timedelta(days=1), 500)

    assert total.downgraded == 3
    assert [r for _, _, r in tiers.reasons(ANN)][1:] == ["downgraded"] * 3
    assert tiers.member(ANN).tier == "basic"


async def test_members_are_judged_chunk_by_chunk(tiers: Tiers) -> None:
    for member in ("m1", "m2", "m3"):
        await tiers.earn(member, 6_000)

    total = await run_year_end(tiers.factory, A_YEAR_ON, 1)

    assert total.judged == 3
    assert tiers.uow.commits >= 3 + 3  # three earns, then a chunk each


async def test_an_erased_member_is_judged_no_more(tiers: Tiers) -> None:
    await tiers.earn(ANN, 25_000)
    await tiers(on_member_erased, ANN, tiers.now)

    total = await run_year_end(tiers.factory, A_YEAR_ON, 500)

    assert total.judged == 0
    assert tiers.member(ANN).tier == "gold"


async def test_without_a_ladder_nothing_is_judged() -> None:
    uow = FakeUnitOfWork(FakeTierStore())

    assert await run_year_end(lambda: uow, A_YEAR_ON, 500) == YearEnd()


async def test_a_kept_tier_under_a_higher_grant_announces_nothing(tiers: Tiers) -> None:
    from loyalty_tiers.domain.grants import GrantKind
    from loyalty_tiers.service_layer.grants import create_grant

    await tiers.earn(BOB, 6_000)
    await tiers.earn(BOB, 3_000, at=T0 + timedelta(days=10))
    ends = T0.replace(year=2028)
    await tiers(create_grant, BOB, GrantKind.GIFT, "gold", "gift", ends, tiers.now)
    before = len(tiers.events)

    total = await run_year_end(tiers.factory, A_YEAR_ON, 500)

    assert total.retained == 1
    assert len(tiers.events) == before


async def test_a_limit_stops_the_year_end_and_the_count_says_who_is_left(tiers: Tiers) -> None:
    await tiers.earn(ANN, 6_000)
    await tiers.earn(BOB, 6_000)
    async with tiers.factory() as uow:
        assert await members_due(uow, A_YEAR_ON) == 2

    first = await run_year_end(tiers.factory, A_YEAR_ON, 500, limit=1)
    async with tiers.factory() as uow:
        assert await members_due(uow, A_YEAR_ON) == 1
    rest = await run_year_end(tiers.factory, A_YEAR_ON, 500, limit=1)

    assert (first.judged, rest.judged) == (1, 1)
    async with tiers.factory() as uow:
        assert await members_due(uow, A_YEAR_ON) == 0
