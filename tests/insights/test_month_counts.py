"""The cohorts' and programme health's stored months (`month_counts`, `cohort_counts`): kept in
the transaction of every event that touches members, they answer a period of whole months as
the figures over the facts do, after purchases, benefits and coupons used, a benefit released,
a merge (the survivor's cohort becomes its earliest registration), an unmerge and an erasure
(its counts stay, its rows go); a rebuild from the facts finds the same counters. The history
is dated 2014 (no other test has facts then)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from loyalty.identity.v1 import events_pb2 as identity_events
from loyalty.insights.v1 import insights_service_pb2 as pb
from loyalty_insights.domain.month_counts import (
    MemberJoin,
    MemberMonth,
    contribution,
    difference,
)
from loyalty_insights.domain.periods import Period
from loyalty_insights.service_layer import figures
from loyalty_insights.service_layer.uow import InsightsUnitOfWork
from loyalty_kit.server import RunningService
from loyalty_kit.timestamps import timestamp
from sqlalchemy import text

from tests.insights.conftest import Suite, caught_up, period, until
from tests.insights.test_cohorts import History

START = datetime(2014, 1, 1, tzinfo=UTC)
END = datetime(2014, 6, 1, tzinfo=UTC)
UNITS = ("", "mall", "hotel", "cinema")


def on(month: int, day: int) -> datetime:
    return datetime(2014, month, day, 9, 30, tzinfo=UTC)


def uow_of(service: RunningService) -> InsightsUnitOfWork:
    context = service.context
    return InsightsUnitOfWork(context.database, context.settings.event_namespace)


Answers = dict[str, Any]


async def both(service: RunningService, start: datetime = START, end: datetime = END) -> Answers:
    """Each unit's cohorts and health of the whole months read from the stored counts and
    computed from the facts, in one transaction."""
    found: Answers = {}
    whole = Period(start, end)
    assert figures.whole_months(whole)
    async with uow_of(service) as uow:
        for unit in UNITS:
            found[unit] = (
                (
                    await figures.cohorts(uow, whole, unit),
                    await figures.programme_health(uow, whole, unit),
                ),
                (
                    await figures.cohorts_from_facts(uow, whole, unit),
                    await figures.health_from_facts(uow, whole, unit),
                ),
            )
    return found


async def agree(service: RunningService) -> None:
    await caught_up(service)
    answers = await until(lambda: both(service), lambda f: all(s == c for s, c in f.values()))
    for unit, (stored, computed) in answers.items():
        assert stored == computed, unit


_COUNTERS = """
SELECT 'm' AS t, month || ' ' || unit AS key, sum(active) AS a, sum(redeeming) AS r,
       sum(unregistered) AS u, sum(registered) AS g, sum(joined) AS j, sum(imported) AS i
FROM month_counts GROUP BY 1, 2
UNION ALL
SELECT 'c', cohort || ' ' || month || ' ' || unit, sum(active), 0, 0, 0, 0, 0
FROM cohort_counts GROUP BY 1, 2
"""


async def counters(uow: InsightsUnitOfWork) -> dict[tuple[str, str], tuple[int, ...]]:
    rows = (await uow.session.execute(text(_COUNTERS))).all()
    return {
        (r[0], r[1]): tuple(int(n) for n in r[2:])
        for r in rows
        if any(r[2:]) and r[1].startswith("2014-")
    }


@pytest.mark.asyncio(loop_scope="session")
async def test_stored_months_follow_purchases_redemptions_a_merge_an_unmerge_and_an_erasure(
    suite: Suite, insights_service: RunningService
) -> None:
    h = History(suite)
    await h.registered("a", "mall", on(1, 10))
    await h.ordered("a", "mall", on(1, 12))
    await h.used_benefit("a", "hotel", on(2, 3))
    await h.used_coupon("a", "mall", on(3, 5))
    await h.imported("b", "hotel", on(2, 20))
    await h.ordered("b", "hotel", on(1, 15))  # before it registered: active, not registered
    await h.ordered("b", "hotel", on(2, 25))
    await h.registered("c", "cinema", on(3, 2))
    await h.ordered("c", "cinema", on(3, 3))
    lounge = await h.used_benefit("c", "mall", on(4, 8))
    await agree(insights_service)

    # Known answers over gRPC (no other test has facts in 2014): January's cohort is a, active
    # in January (mall) and February (hotel) and March; b and c joined later.
    cohorts = await suite.insights().GetCohorts(pb.GetCohortsRequest(**period(START, END)))
    by_month = {c.month: c for c in cohorts.cohorts}
    assert sorted(by_month) == ["2014-01", "2014-02", "2014-03"]
    assert (by_month["2014-02"].members, by_month["2014-02"].imported_members) == (1, 1)
    assert [m.active_members for m in by_month["2014-01"].months] == [1, 1, 1, 0, 0]
    health = await suite.insights().GetProgrammeHealth(
        pb.GetProgrammeHealthRequest(**period(START, END))
    )
    months = {m.month: m for m in health.months}
    assert [months[m].active_members for m in ("2014-01", "2014-02", "2014-03", "2014-04")] == [
        2,
        2,
        2,
        1,
    ]
    assert months["2014-02"].redeeming_members == 1

    # A benefit released: c's April goes.
    await h.released("c", "mall", lounge)
    await agree(insights_service)

    # c absorbs b: c's cohort is b's (February, at the hotel), b's months are c's.
    await h.merged("c", "b", on(4, 20))
    await agree(insights_service)
    cohorts = await suite.insights().GetCohorts(pb.GetCohortsRequest(**period(START, END)))
    assert {c.month: c.members for c in cohorts.cohorts} == {"2014-01": 1, "2014-02": 1}
    hotel = await suite.insights().GetCohorts(
        pb.GetCohortsRequest(**period(START, END), unit="hotel")
    )
    assert [(c.month, [m.active_members for m in c.months]) for c in hotel.cohorts] == [
        ("2014-02", [1, 0, 0, 0])
    ]

    # Undone: b is its own again.
    await h.publish(
        "identity",
        identity_events.MemberUnmerged(
            survivor_member_id=h.member("c"),
            restored_member_id=h.member("b"),
            merged_at=timestamp(on(4, 20)),
            unmerged_at=timestamp(on(4, 25)),
        ),
    )
    await agree(insights_service)

    # a is erased: its rows go, the counts keep it (as the figures over the facts do).
    await h.publish(
        "identity",
        identity_events.MemberErased(member_id=h.member("a"), erased_at=timestamp(on(5, 2))),
    )
    await agree(insights_service)
    async with uow_of(insights_service) as uow:
        left = await uow.session.execute(
            text(
                "SELECT (SELECT count(*) FROM member_months WHERE member_id = :a) "
                "+ (SELECT count(*) FROM member_joins WHERE member_id = :a)"
            ),
            {"a": h.member("a")},
        )
        assert left.scalar_one() == 0

    # Later facts of the erased member's survivor, a new purchase: still the facts' answers.
    await h.ordered("b", "mall", on(5, 6))
    await agree(insights_service)

    # The counters kept event by event are those a rebuild from the facts finds (of 2014: other
    # tests write facts of other years straight into the tables, past the consumers, or have
    # facts of erased members consumed after their erasure, which the rebuild counts).
    async with uow_of(insights_service) as uow:
        kept = await counters(uow)
        await uow.month_counts.rebuild()
        rebuilt = await counters(uow)
        await uow.rollback()
    assert kept == rebuilt


@pytest.mark.asyncio(loop_scope="session")
async def test_a_period_of_part_months_is_computed_from_the_facts(
    suite: Suite, insights_service: RunningService
) -> None:
    """The stored months answer whole months only: a period that starts or ends within a month
    reads the facts (the same answer as before the stored months)."""
    assert not figures.whole_months(Period(on(1, 5), END))
    assert not figures.whole_months(Period(START, on(5, 5)))
    async with uow_of(insights_service) as uow:
        part = Period(on(1, 5), on(4, 5))
        assert await figures.cohorts(uow, part, "") == await figures.cohorts_from_facts(
            uow, part, ""
        )


# --- the counts one member adds (domain) ------------------------------------------------------


def test_a_members_contribution_counts_its_months_and_its_cohort() -> None:
    months = [
        MemberMonth("2014-01", "mall", False),
        MemberMonth("2014-01", "", False),
        MemberMonth("2014-03", "hotel", True),
        MemberMonth("2014-03", "", True),
    ]
    joins = [
        MemberJoin("mall", "2014-02", False, True),
        MemberJoin("hotel", "2014-02", False, False),
        MemberJoin("", "2014-02", False, True),
    ]
    found = contribution(months, joins)
    assert found.months == Counter(
        {
            ("2014-02", "mall", "registered"): 1,
            ("2014-02", "mall", "joined"): 1,
            ("2014-02", "hotel", "registered"): 1,
            ("2014-02", "", "registered"): 1,
            ("2014-02", "", "joined"): 1,
            ("2014-01", "mall", "active"): 1,
            ("2014-01", "mall", "unregistered"): 1,  # joined in February
            ("2014-01", "", "active"): 1,
            ("2014-01", "", "unregistered"): 1,
            ("2014-03", "hotel", "active"): 1,
            ("2014-03", "hotel", "redeeming"): 1,
            ("2014-03", "", "active"): 1,
            ("2014-03", "", "redeeming"): 1,
        }
    )
    # January is before its cohort; March at the hotel is not where it first joined.
    assert found.cohorts == Counter({("2014-02", "2014-03", ""): 1})


def test_the_difference_moves_only_the_counters_that_change() -> None:
    before = contribution(
        [MemberMonth("2014-01", "", False)], [MemberJoin("", "2014-01", False, True)]
    )
    after = contribution(
        [MemberMonth("2014-01", "", True)], [MemberJoin("", "2014-01", False, True)]
    )
    moved = difference(before, after)
    assert moved.months == Counter({("2014-01", "", "redeeming"): 1})
    assert moved.cohorts == Counter()
    gone = difference(after, contribution([], []))
    assert gone.months[("2014-01", "", "active")] == -1
    assert gone.cohorts[("2014-01", "2014-01", "")] == -1
