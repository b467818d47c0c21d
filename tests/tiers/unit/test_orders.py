"""Imported past orders as qualifying activity, over the fake unit of work: each order a visit
and its spend, no points; once per (unit, order ID) whether an import or a points earn brings it
first; recorded whatever its age but upgrading only from inside the window, each marked member
judged once by the upgrade job; other currencies and erased members skipped and counted."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from loyalty_kit.kernel.orders import OrderMode, PastOrder, PastOrders
from loyalty_tiers.domain.errors import NoLadder
from loyalty_tiers.domain.ladder import Metric, Totals, Window
from loyalty_tiers.domain.orders import OrderActivity, imported_event_id
from loyalty_tiers.service_layer.identity_events import on_member_erased, on_member_merged
from loyalty_tiers.service_layer.ladders import publish_ladder
from loyalty_tiers.service_layer.orders import (
    CountedOrders,
    Judged,
    count_orders,
    judge_marked,
    run_judgement,
)
from loyalty_tiers.service_layer.queries import member_view

from tests.tiers.ladders import huayue
from tests.tiers.unit.conftest import ANN, BOB, T0, Tiers
from tests.tiers.unit.fakes import FakeUnitOfWork

CAROL = "carol"


def order(
    member_id: str,
    order_id: str,
    amount: str,
    *,
    days_ago: float = 30,
    currency: str = "CNY",
) -> PastOrder:
    return PastOrder(member_id, order_id, Decimal(amount), currency, T0 - timedelta(days=days_ago))


async def imported(
    tiers: Tiers,
    *orders: PastOrder,
    unit: str = "mall",
    name: str = "orderImports/o-1",
    judge: bool = True,
) -> CountedOrders:
    """A chunk counted, then (unless `judge` is false) the upgrade job's round after it."""
    chunk = PastOrders(name, unit, OrderMode.ACTIVITY_ONLY, list(orders), Counter())
    done = await tiers(count_orders, chunk, tiers.now)
    if judge:
        await judged(tiers)
    return done


async def judged(tiers: Tiers) -> Judged:
    return await run_judgement(tiers.factory, lambda: tiers.now, 500)


def window(tiers: Tiers, member_id: str) -> Totals:
    """The member's activity as the fake store holds it, summed over every unit and time."""
    total = Totals()
    for posting in tiers.store.tables.activity.values():
        if posting.member_id == member_id:
            total += posting.totals
    return total


async def test_orders_count_as_spend_and_visits_without_points(tiers: Tiers) -> None:
    done = await imported(tiers, order(ANN, "M-1", "1200.50"), order(ANN, "M-2", "99.50"))

    assert (done.recorded, done.counted_before, done.marked) == (2, 0, 1)
    assert window(tiers, ANN) == Totals(Decimal("1300.00"), 0, 2)
    assert set(tiers.store.tables.activity) == {
        (ANN, imported_event_id("mall", "M-1")),
        (ANN, imported_event_id("mall", "M-2")),
    }
    assert tiers.member(ANN).tier == "basic"


async def test_history_inside_the_window_upgrades_as_live_activity_does(tiers: Tiers) -> None:
    done = await imported(
        tiers,
        order(ANN, "H-1", "15000", days_ago=200),
        order(ANN, "H-2", "6000", days_ago=10),
        order(BOB, "H-3", "4000"),
    )

    assert done.marked == 2
    assert tiers.reasons() == [("basic", "gold", "qualified")]
    event = tiers.events[0]
    assert (event.member_id, event.effective_at) == (ANN, T0)
    assert event.tier_year_end == T0.replace(year=2027)  # a tier year from now, as any upgrade
    assert tiers.member(BOB).tier == "basic"


async def test_orders_before_the_window_are_kept_in_their_year_but_upgrade_nobody(
    tiers: Tiers,
) -> None:
    done = await imported(
        tiers, order(ANN, "OLD-1", "300000", days_ago=400), order(ANN, "NEW-1", "100")
    )

    assert done.recorded == 2
    assert tiers.events == []
    assert tiers.member(ANN).tier == "basic"
    last_year = tiers.store.tables.activity[ANN, imported_event_id("mall", "OLD-1")]
    assert last_year.occurred_at == T0 - timedelta(days=400)
    view = await tiers(member_view, ANN, tiers.now)
    assert view.progress[0][:2] == (Metric.QUALIFYING_SPEND, Decimal(100))


async def test_a_calendar_year_window_counts_this_years_orders_only(tiers: Tiers) -> None:
    await tiers(publish_ladder, huayue(window=Window.CALENDAR_YEAR))
    await imported(tiers, order(ANN, "DEC", "4000", days_ago=70), order(ANN, "JAN", "4000"))

    assert tiers.member(ANN).tier == "basic"  # T0 is 1 March: December was last year

    await imported(tiers, order(ANN, "FEB", "1000", days_ago=5))

    assert tiers.reasons(ANN) == [("basic", "silver", "qualified")]


async def test_an_order_imported_again_counts_once(tiers: Tiers) -> None:
    await imported(tiers, order(ANN, "M-1", "3000"))
    again = await imported(
        tiers, order(ANN, "M-1", "3000"), order(ANN, "M-2", "10"), name="orderImports/o-2"
    )

    assert (again.recorded, again.counted_before) == (1, 1)
    assert window(tiers, ANN) == Totals(Decimal(3010), 0, 2)
    assert tiers.store.tables.counted_orders["mall", "M-1"][1] == "orderImports/o-1"


async def test_the_same_order_id_at_another_unit_is_another_order(tiers: Tiers) -> None:
    await imported(tiers, order(ANN, "1001", "3000"), unit="mall")
    done = await imported(tiers, order(ANN, "1001", "3000"), unit="hotel")

    assert done.recorded == 1
    assert tiers.member(ANN).tier == "silver"


async def test_a_later_earn_of_an_imported_order_adds_its_points_only(tiers: Tiers) -> None:
    await imported(tiers, order(ANN, "M-1", "4000"))
    await tiers.earn(ANN, 4000, unit="mall", order_id="M-1")

    assert window(tiers, ANN) == Totals(Decimal(4000), 4000, 1)
    assert tiers.member(ANN).tier == "basic"


async def test_an_order_that_earned_first_is_not_counted_again_by_an_import(
    tiers: Tiers,
) -> None:
    await tiers.earn(ANN, 4000, unit="mall", order_id="M-1")
    done = await imported(tiers, order(ANN, "M-1", "4000"), order(ANN, "M-2", "500"))

    assert (done.recorded, done.counted_before) == (1, 1)
    assert window(tiers, ANN) == Totals(Decimal(4500), 4000, 2)


async def test_a_refund_of_an_imported_order_that_earned_later_nets_out(tiers: Tiers) -> None:
    await imported(tiers, order(ANN, "M-1", "4000"))
    await tiers.earn(ANN, 4000, unit="mall", order_id="M-1")
    await tiers.earn(ANN, -4000, unit="mall")  # the order refunded

    assert window(tiers, ANN) == Totals(Decimal(0), 0, 1)


async def test_other_currencies_are_skipped_and_counted(tiers: Tiers) -> None:
    done = await imported(
        tiers, order(ANN, "HK-1", "9000", currency="HKD"), order(ANN, "M-1", "100")
    )

    assert done.recorded == 1
    assert done.skipped == Counter({"foreign_currency": 1})
    assert window(tiers, ANN) == Totals(Decimal(100), 0, 1)


async def test_what_the_reader_left_out_is_counted_with_the_rest(tiers: Tiers) -> None:
    chunk = PastOrders(
        "orderImports/o-1",
        "mall",
        OrderMode.ACTIVITY_ONLY,
        [order(ANN, "M-1", "100")],
        Counter({"invalid_amount": 2}),
    )
    done = await tiers(count_orders, chunk, tiers.now)

    assert (done.recorded, done.skipped) == (1, Counter({"invalid_amount": 2}))


async def test_a_merged_members_orders_count_for_the_survivor(tiers: Tiers) -> None:
    await tiers(on_member_merged, ANN, BOB, tiers.now)
    await imported(tiers, order(BOB, "M-1", "6000"))

    assert tiers.reasons(ANN)[-1] == ("basic", "silver", "qualified")
    counted = tiers.store.tables.activity[ANN, imported_event_id("mall", "M-1")]
    assert counted.origin == BOB
    assert BOB not in tiers.store.tables.members


async def test_an_erased_members_orders_are_skipped(tiers: Tiers) -> None:
    await tiers(on_member_erased, CAROL, tiers.now)
    done = await imported(tiers, order(CAROL, "M-1", "6000"), order(ANN, "M-2", "1"))

    assert done.skipped == Counter({"member_erased": 1})
    assert window(tiers, CAROL) == Totals()


async def test_without_a_ladder_the_chunk_is_refused_and_nothing_is_stored() -> None:
    tiers = Tiers()
    with pytest.raises(NoLadder):
        await imported(tiers, order(ANN, "M-1", "100"))
    assert tiers.store.tables.activity == {}


async def test_a_chunk_of_nothing_usable_needs_no_ladder() -> None:
    tiers = Tiers()
    chunk = PastOrders("orderImports/o-1", "mall", OrderMode.ACTIVITY_ONLY, [], Counter(x=1))
    assert (await tiers(count_orders, chunk, tiers.now)).skipped == Counter(x=1)


async def test_a_chunk_marks_members_whose_orders_may_be_in_the_window_the_job_judges(
    tiers: Tiers,
) -> None:
    done = await imported(
        tiers,
        order(ANN, "A-1", "3000", days_ago=30),
        order(BOB, "B-1", "9000", days_ago=400),  # before any window: nobody to judge
        judge=False,
    )

    assert done.marked == 1
    assert tiers.store.tables.upgrades_due == [(ANN, T0)]
    await imported(tiers, order(ANN, "A-2", "2500", days_ago=10), judge=False)
    assert tiers.events == []  # nothing is judged in the chunk's transaction

    assert await judged(tiers) == Judged(1, 1)  # two chunks, one judgement
    assert tiers.reasons(ANN) == [("basic", "silver", "qualified")]
    assert tiers.store.tables.upgrades_due == []
    assert BOB not in tiers.store.tables.members  # old orders only: no tier to judge


async def test_with_a_tier_year_window_every_member_with_a_new_order_is_judged(
    tiers: Tiers,
) -> None:
    await tiers(publish_ladder, huayue(window=Window.TIER_YEAR))
    done = await imported(tiers, order(BOB, "B-1", "9000", days_ago=400), judge=False)

    assert (done.marked, tiers.store.tables.upgrades_due) == (1, [(BOB, T0)])
    assert await judged(tiers) == Judged(1, 0)


async def test_the_job_judges_a_chunk_of_marked_members_at_a_time(tiers: Tiers) -> None:
    members = [f"member-{i:03d}" for i in range(7)]
    await imported(tiers, *(order(m, f"O-{m}", "6000") for m in members), judge=False)

    first = await tiers(judge_marked, tiers.now, 5)
    assert (first.judged, first.upgraded, len({m for m, _ in tiers.store.tables.upgrades_due})) == (
        5,
        5,
        2,
    )
    assert await judged(tiers) == Judged(2, 2)
    assert await judged(tiers) == Judged(0, 0)


async def test_orders_recorded_while_their_member_was_merged_become_the_survivors(
    tiers: Tiers,
) -> None:
    """A chunk looked BOB up just before the merge committed, and recorded BOB's order after
    the merge had moved BOB's activity: the job moves that order too, and judges the survivor
    on all of it."""
    await imported(tiers, order(BOB, "B-1", "3000", days_ago=20))
    await tiers(on_member_merged, ANN, BOB, tiers.now)
    straggler = OrderActivity(BOB, "B-2", T0 - timedelta(days=1), Decimal(2500), None)

    async def as_the_chunk_did(uow: FakeUnitOfWork) -> None:
        await uow.tiers.record_orders("mall", "orderImports/o-1", [straggler])
        await uow.tiers.mark_to_judge([BOB], tiers.now)

    await tiers(as_the_chunk_did)

    assert await judged(tiers) == Judged(1, 1)
    assert tiers.reasons(ANN)[-1] == ("basic", "silver", "qualified")
    moved = tiers.store.tables.activity[ANN, imported_event_id("mall", "B-2")]
    assert moved.origin == BOB
    assert BOB not in tiers.store.tables.members


async def test_a_member_erased_before_the_job_is_not_judged(tiers: Tiers) -> None:
    await imported(tiers, order(CAROL, "C-1", "6000"), judge=False)
    await tiers(on_member_erased, CAROL, tiers.now)

    assert await judged(tiers) == Judged(1, 0)
    assert tiers.reasons(CAROL) == []


async def test_a_member_is_judged_once_no_order_has_come_in_for_a_moment(tiers: Tiers) -> None:
    settle = timedelta(seconds=2)
    await imported(tiers, order(ANN, "A-1", "6000"), judge=False)
    tiers.later(seconds=1)
    await imported(tiers, order(ANN, "A-2", "1"), judge=False)  # marked anew
    tiers.later(seconds=1.5)

    assert await run_judgement(tiers.factory, lambda: tiers.now, 500, settle) == Judged(0, 0)
    tiers.later(seconds=0.5)
    assert await run_judgement(tiers.factory, lambda: tiers.now, 500, settle) == Judged(1, 1)
