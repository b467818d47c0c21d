"""Journeys in time, over a real channel with real events: waits run by the timer once however
many timers race, a budget is never exceeded, the inactivity sweep enters once per spell, and
"until the next purchase" branches both ways. The timer's use cases run on the running
service's database and peers (`service.root`) at a moment the test chooses (the service's own
timer, on the session's clock, finds nothing due then)."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from loyalty.engagement.v1 import engagement_service_pb2 as pb
from loyalty.identity.v1 import events_pb2 as identity_events
from loyalty.identity.v1 import member_pb2
from loyalty.points.v1 import events_pb2 as points_events
from loyalty_engagement.adapters.tables import member_activity, member_lots
from loyalty_engagement.bootstrap import Engagement as Root
from loyalty_engagement.domain.journeys import Budget, TriggerEvent, TriggerKind
from loyalty_engagement.service_layer import journeys, timer
from loyalty_kit.server import RunningService
from loyalty_kit.timestamps import timestamp
from sqlalchemy import select

from tests.engagement.conftest import Engagement, rid, until
from tests.engagement.test_journeys import coupon_step, points_step, tier_changed
from tests.support.events import publish
from tests.support.rpc import fails

SMS = member_pb2.CONSENT_PURPOSE_MARKETING_SMS


def _at(offset: timedelta) -> Callable[[], datetime]:
    return lambda: datetime.now(UTC) + offset


async def _tier_journey(
    engagement: Engagement, tier: str, *steps: pb.Step, **more: Any
) -> pb.Journey:
    return await engagement.journey(
        pb.Journey(
            display_name="in time",
            trigger=pb.Trigger(kind=pb.TRIGGER_KIND_TIER_CHANGED, to_tier=tier),
            steps=list(steps),
            **more,
        )
    )


async def _purchase(engagement: Engagement, member_id: str, at: datetime) -> None:
    await publish(
        engagement.settings,
        "points",
        points_events.PointsEarned(
            member_id=member_id,
            posting_id=rid(),
            unit="mall",
            order_id=rid(),
            points=10,
            occurred_at=timestamp(at),
        ),
    )


def _outcomes(entry: pb.JourneyEntry) -> list[tuple[int, str]]:
    return [(s.step, s.outcome) for s in entry.steps]


async def test_a_delay_runs_the_next_step_once_after_it_with_two_timers_racing(
    engagement: Engagement, engagement_service: RunningService
) -> None:
    root: Root = engagement_service.root
    tier = f"t-{uuid.uuid4().hex[:8]}"
    delay = pb.Step(delay=pb.Delay(seconds=3600))
    journey = await _tier_journey(engagement, tier, delay, points_step(30, "mall"))
    member_id = await engagement.member()
    await publish(engagement.settings, "tiers", tier_changed(member_id, tier, datetime.now(UTC)))
    entries = await until(lambda: engagement.entries(journey.name), lambda e: bool(e))
    assert [e.state for e in entries] == [pb.ENTRY_STATE_WAITING]
    due = entries[0].due_time.ToDatetime(UTC)
    assert timedelta(minutes=59) < due - datetime.now(UTC) <= timedelta(hours=1)
    # Not due yet: nothing runs.
    await timer.run_due(root.uow, root.actions, _at(timedelta(minutes=30)))
    assert await engagement.postings(member_id) == []
    # Paused, the due entry waits; resumed, it runs (once, however many timers race).
    await engagement.as_().PauseJourney(pb.PauseJourneyRequest(name=journey.name, request_id=rid()))
    await timer.run_due(root.uow, root.actions, _at(timedelta(hours=2)))
    assert await engagement.postings(member_id) == []
    await engagement.as_().ResumeJourney(
        pb.ResumeJourneyRequest(name=journey.name, request_id=rid())
    )
    later = _at(timedelta(hours=2))
    await asyncio.gather(
        timer.run_due(root.uow, root.actions, later),
        timer.run_due(root.uow, root.actions, later),
    )
    postings = await engagement.postings(member_id)
    assert [(p.unit, p.points) for p in postings] == [("mall", 30)]
    [entry] = await engagement.entries(journey.name)
    assert entry.state == pb.ENTRY_STATE_COMPLETED
    assert _outcomes(entry) == [(0, "waited"), (1, "done")]
    await timer.run_due(root.uow, root.actions, _at(timedelta(hours=3)))
    assert len(await engagement.postings(member_id)) == 1


async def test_the_service_timer_runs_a_short_delay_on_its_own(engagement: Engagement) -> None:
    """The service's own timer (every second in tests), on the session's clock."""
    tier = f"t-{uuid.uuid4().hex[:8]}"
    delay = pb.Step(delay=pb.Delay(seconds=1))
    journey = await _tier_journey(engagement, tier, delay, points_step(12, "mall"))
    member_id = await engagement.member()
    await publish(engagement.settings, "tiers", tier_changed(member_id, tier, datetime.now(UTC)))
    [entry] = await until(
        lambda: engagement.entries(journey.name),
        lambda e: bool(e) and e[0].state == pb.ENTRY_STATE_COMPLETED,
    )
    assert _outcomes(entry) == [(0, "waited"), (1, "done")]
    assert [p.points for p in await engagement.postings(member_id)] == [12]


async def test_a_budget_of_two_coupons_gives_two_of_five_entries(
    engagement: Engagement, engagement_service: RunningService
) -> None:
    tier = f"t-{uuid.uuid4().hex[:8]}"
    journey = await _tier_journey(engagement, tier, coupon_step(), budget=pb.Budget(coupons=2))
    members = [await engagement.member() for _ in range(5)]
    for member_id in members:
        await publish(
            engagement.settings, "tiers", tier_changed(member_id, tier, datetime.now(UTC))
        )
    entries = await until(
        lambda: engagement.entries(journey.name),
        lambda found: len(found) == 5 and all(e.state == pb.ENTRY_STATE_COMPLETED for e in found),
    )
    outcomes = sorted(s.outcome for e in entries for s in e.steps)
    assert outcomes == ["budget_exhausted"] * 3 + ["done"] * 2
    coupons = [c for m in members for c in await engagement.coupons(m)]
    assert len(coupons) == 2


async def test_a_budget_holds_under_concurrent_entries(
    engagement: Engagement, engagement_service: RunningService
) -> None:
    """Entries made at once by several consumers (as replicas would)."""
    root: Root = engagement_service.root
    tier = f"t-{uuid.uuid4().hex[:8]}"
    journey = await _tier_journey(
        engagement, tier, points_step(40, "mall"), budget=pb.Budget(points=100)
    )
    members = [f"m-{uuid.uuid4().hex}" for _ in range(6)]

    async def enter(member_id: str) -> None:
        at = datetime.now(UTC)
        event = TriggerEvent(
            TriggerKind.TIER_CHANGED, member_id, f"tier:x>{tier}@{at.isoformat()}", at, to_tier=tier
        )
        async with root.uow() as uow:
            counting: Any = _Counting()  # only award_points is called
            await journeys.on_event(uow, counting, event, at)
            await uow.commit()

    await asyncio.gather(*(enter(m) for m in members))
    entries = await engagement.entries(journey.name)
    done = [s for e in entries for s in e.steps if s.outcome == "done"]
    assert len(done) == 2  # 40 + 40 <= 100 < 120
    async with root.uow(read_only=True) as uow:
        assert await uow.timing.spent(journey.name.removeprefix("journeys/")) == (80, 0)


async def test_a_budget_is_never_exceeded_by_concurrent_spends(
    engagement_service: RunningService,
) -> None:
    """A property over random budgets and steps, on the store's own conditional UPDATE: spends
    made at once never pass a set limit, and each one refused would not have fitted."""
    root: Root = engagement_service.root
    rng = random.Random(19)
    for _case in range(25):
        journey_id = f"budget-{uuid.uuid4().hex}"
        budget = Budget(
            points=rng.choice([0, rng.randint(1, 400)]), coupons=rng.choice([0, rng.randint(1, 5)])
        )
        costs = [
            (rng.randint(1, 150), 0) if rng.random() < 0.5 else (0, 1)
            for _ in range(rng.randint(1, 12))
        ]

        async def spend(
            cost: tuple[int, int], journey_id: str = journey_id, budget: Budget = budget
        ) -> bool:
            async with root.uow() as uow:
                spent = await uow.timing.spend(journey_id, budget, *cost)
                await uow.commit()
                return spent

        taken = await asyncio.gather(*(spend(c) for c in costs))
        points = sum(c[0] for c, ok in zip(costs, taken, strict=True) if ok)
        coupons = sum(c[1] for c, ok in zip(costs, taken, strict=True) if ok)
        assert not budget.points or points <= budget.points, (budget, costs, taken)
        assert not budget.coupons or coupons <= budget.coupons, (budget, costs, taken)
        for cost, ok in zip(costs, taken, strict=True):
            if not ok:
                assert (budget.points and cost[0] and points + cost[0] > budget.points) or (
                    budget.coupons and cost[1] and coupons + cost[1] > budget.coupons
                ), (budget, costs, taken)
        async with root.uow(read_only=True) as uow:
            assert await uow.timing.spent(journey_id) == (points, coupons)


class _Counting:
    async def award_points(
        self, member_id: str, points: int, funding_unit: str, reason: str, key: str
    ) -> str:
        await asyncio.sleep(0.05)
        return key


async def test_until_the_next_purchase_branches_both_ways(
    engagement: Engagement, engagement_service: RunningService
) -> None:
    root: Root = engagement_service.root
    tier = f"t-{uuid.uuid4().hex[:8]}"
    wait = pb.Step(until_purchase=pb.UntilPurchase(days=7))
    journey = await _tier_journey(engagement, tier, wait, points_step(15, "mall"))
    exiting = await _tier_journey(
        engagement,
        tier,
        pb.Step(until_purchase=pb.UntilPurchase(days=7, exit_on_purchase=True)),
        points_step(25, "mall"),
    )
    buyer, idle = await engagement.member(), await engagement.member()
    for member_id in (buyer, idle):
        await publish(
            engagement.settings, "tiers", tier_changed(member_id, tier, datetime.now(UTC))
        )
    await until(lambda: engagement.entries(exiting.name), lambda e: len(e) == 2)
    await _purchase(engagement, buyer, datetime.now(UTC))
    [bought] = await until(
        lambda: engagement.entries(journey.name, buyer),
        lambda e: bool(e) and e[0].state == pb.ENTRY_STATE_COMPLETED,
    )
    assert _outcomes(bought) == [(0, "purchased"), (1, "done")]
    [left] = await engagement.entries(exiting.name, buyer)
    assert left.state == pb.ENTRY_STATE_COMPLETED
    assert _outcomes(left) == [(0, "purchased")]
    assert [p.points for p in await engagement.postings(buyer)] == [15]
    # The other member never buys: after the days, the next step.
    [waiting] = await engagement.entries(journey.name, idle)
    assert waiting.state == pb.ENTRY_STATE_WAITING
    await timer.run_due(root.uow, root.actions, _at(timedelta(days=8)))
    [timed_out] = await engagement.entries(journey.name, idle)
    assert _outcomes(timed_out) == [(0, "timed_out"), (1, "done")]
    assert sorted(p.points for p in await engagement.postings(idle)) == [15, 25]


async def test_the_inactivity_sweep_enters_a_member_once_per_spell(
    engagement: Engagement, engagement_service: RunningService
) -> None:
    root: Root = engagement_service.root
    journey = await engagement.journey(
        pb.Journey(
            display_name="win-back",
            trigger=pb.Trigger(kind=pb.TRIGGER_KIND_INACTIVE, days=90),
            steps=[points_step(5, "mall")],
        )
    )
    member_id = await engagement.member()
    now = datetime.now(UTC)
    await _purchase(engagement, member_id, now)
    await until(lambda: _last_purchase(root, member_id), lambda at: at is not None)
    # Not inactive long enough yet.
    await timer.sweep(root.uow, _at(timedelta(days=89)))
    assert await engagement.entries(journey.name, member_id) == []
    # Two sweeps racing, then again later: one entry for the spell.
    crossing = _at(timedelta(days=91))
    await asyncio.gather(
        timer.sweep(root.uow, crossing),
        timer.sweep(root.uow, crossing),
    )
    await timer.sweep(root.uow, _at(timedelta(days=95)))
    await timer.run_due(root.uow, root.actions, _at(timedelta(days=95)))
    entries = await engagement.entries(journey.name, member_id)
    assert [e.state for e in entries] == [pb.ENTRY_STATE_COMPLETED]
    assert [p.points for p in await engagement.postings(member_id)] == [5]
    # A purchase ends the spell; the next spell enters again.
    await _purchase(engagement, member_id, now + timedelta(days=100))
    await until(
        lambda: _last_purchase(root, member_id),
        lambda at: at is not None and at > now + timedelta(days=99),
    )
    await timer.sweep(root.uow, _at(timedelta(days=191)))
    assert len(await engagement.entries(journey.name, member_id)) == 2


async def _last_purchase(root: Root, member_id: str) -> datetime | None:
    async with root.uow(read_only=True) as uow:
        found: datetime | None = (
            await uow.session.execute(
                select(member_activity.c.last_purchase_at).where(
                    member_activity.c.member_id == member_id
                )
            )
        ).scalar()
        return found


async def test_a_message_in_quiet_hours_is_deferred_to_their_end(
    engagement: Engagement, engagement_service: RunningService
) -> None:
    root: Root = engagement_service.root
    now = datetime.now(UTC)
    start, end = now - timedelta(hours=1), now + timedelta(hours=1)
    journey = await engagement.journey(
        pb.Journey(
            display_name="quiet",
            trigger=pb.Trigger(kind=pb.TRIGGER_KIND_MEMBER_REGISTERED),
            conditions=pb.Conditions(units=["hotel"]),
            steps=[pb.Step(send_message=pb.SendMessage(purpose=SMS, body="Good morning"))],
            time_zone="UTC",
            quiet_hours=pb.TimeWindow(start=start.strftime("%H:%M"), end=end.strftime("%H:%M")),
        )
    )
    member_id = await engagement.member("hotel", SMS)
    [entry] = await until(lambda: engagement.entries(journey.name, member_id), lambda e: bool(e))
    assert entry.state == pb.ENTRY_STATE_WAITING
    assert entry.due_time.ToDatetime(UTC).strftime("%H:%M") == end.strftime("%H:%M")
    assert await engagement.messages(member_id) == []
    await timer.run_due(root.uow, root.actions, _at(timedelta(hours=1, minutes=5)))
    assert [m.body for m in await engagement.messages(member_id)] == ["Good morning"]
    [entry] = await engagement.entries(journey.name, member_id)
    assert entry.state == pb.ENTRY_STATE_COMPLETED


async def test_a_birthday_enters_the_member_once_that_year(
    engagement: Engagement, engagement_service: RunningService
) -> None:
    root: Root = engagement_service.root
    journey = await engagement.journey(
        pb.Journey(
            display_name="birthday",
            trigger=pb.Trigger(kind=pb.TRIGGER_KIND_BIRTHDAY),
            steps=[points_step(8, "mall")],
            time_zone="UTC",
        )
    )
    member_id = await engagement.member()
    birthday = datetime.now(UTC) + timedelta(days=2)
    await publish(
        engagement.settings,
        "identity",
        identity_events.ProfileChanged(
            member_id=member_id,
            changed_fields=["birthday"],
            birthday_month=birthday.month,
            birthday_day=birthday.day,
            changed_at=timestamp(datetime.now(UTC)),
        ),
    )
    await until(lambda: birthday_month_of(root, member_id), lambda found: found == birthday.month)
    await timer.sweep(root.uow, _at(timedelta(days=1)))
    assert await engagement.entries(journey.name, member_id) == []
    on_the_day = _at(timedelta(days=2))
    await asyncio.gather(timer.sweep(root.uow, on_the_day), timer.sweep(root.uow, on_the_day))
    await timer.run_due(root.uow, root.actions, on_the_day)
    [entry] = await engagement.entries(journey.name, member_id)
    assert entry.state == pb.ENTRY_STATE_COMPLETED
    assert entry.trigger_key == f"birthday:{birthday.year}"
    assert [p.points for p in await engagement.postings(member_id)] == [8]


async def birthday_month_of(root: Root, member_id: str) -> int:
    async with root.uow(read_only=True) as uow:
        found = (
            await uow.session.execute(
                select(member_activity.c.birthday_month).where(
                    member_activity.c.member_id == member_id
                )
            )
        ).scalar()
        return int(found or 0)


async def test_points_about_to_expire_enter_the_member_once(
    engagement: Engagement, engagement_service: RunningService
) -> None:
    root: Root = engagement_service.root
    journey = await engagement.journey(
        pb.Journey(
            display_name="expiring",
            trigger=pb.Trigger(kind=pb.TRIGGER_KIND_POINTS_EXPIRING, days=30),
            steps=[pb.Step(change_tags=pb.ChangeTags(add_tags=["journey:expiring"]))],
        )
    )
    member_id = await engagement.member()
    expires = datetime.now(UTC) + timedelta(days=40)
    lot = rid()
    await publish(
        engagement.settings,
        "points",
        points_events.LedgerPosted(
            member_id=member_id,
            movements=[
                points_events.LotMovement(
                    posting_id=rid(),
                    lot_id=lot,
                    earned_unit="mall",
                    unit="mall",
                    points=120,
                    expires_at=timestamp(expires),
                )
            ],
        ),
    )
    await until(lambda: _lot_points(root, lot), lambda points: points == 120)
    await timer.sweep(root.uow, _at(timedelta(days=5)))  # 35 days before: not yet
    assert await engagement.entries(journey.name, member_id) == []
    await timer.sweep(root.uow, _at(timedelta(days=11)))
    await timer.sweep(root.uow, _at(timedelta(days=12)))
    await timer.run_due(root.uow, root.actions, _at(timedelta(days=12)))
    entries = await engagement.entries(journey.name, member_id)
    assert [e.state for e in entries] == [pb.ENTRY_STATE_COMPLETED]
    assert "journey:expiring" in await engagement.tags(member_id)


async def test_lots_moved_in_one_batch_add_up_once_each_event(
    engagement: Engagement, engagement_service: RunningService
) -> None:
    """Lot movements are kept a batch at a time (one statement at its end): a lot moved by
    several events, or twice in one, adds up its points, keeps its first expiry, and an event
    delivered again is counted once."""
    root: Root = engagement_service.root
    member_id = await engagement.member()
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=40)
    a, b, marker = rid(), rid(), rid()

    def moved(lot: str, points: int, days: int = 0) -> points_events.LotMovement:
        return points_events.LotMovement(
            posting_id=rid(),
            lot_id=lot,
            earned_unit="mall",
            unit="mall",
            points=points,
            expires_at=timestamp(expires + timedelta(days=days)),
        )

    def posted(*movements: points_events.LotMovement) -> points_events.LedgerPosted:
        return points_events.LedgerPosted(member_id=member_id, movements=list(movements))

    await publish(engagement.settings, "points", posted(moved(a, 120), moved(b, 30)))
    again = posted(moved(a, -20), moved(a, -5, days=9))
    event_id = await publish(engagement.settings, "points", again)
    await publish(engagement.settings, "points", again, event_id=event_id, msg_id=rid())
    await publish(engagement.settings, "points", posted(moved(marker, 1)))
    await until(lambda: _lot_points(root, marker), lambda points: points == 1)
    assert [await _lot_points(root, lot) for lot in (a, b)] == [95, 30]
    async with root.uow(read_only=True) as uow:
        kept = (
            await uow.session.execute(
                select(member_lots.c.member_id, member_lots.c.expires_at).where(
                    member_lots.c.lot_id == a
                )
            )
        ).one()
    assert (kept.member_id, kept.expires_at) == (member_id, expires)


async def _lot_points(root: Root, lot_id: str) -> int:
    async with root.uow(read_only=True) as uow:
        found = (
            await uow.session.execute(
                select(member_lots.c.points).where(member_lots.c.lot_id == lot_id)
            )
        ).scalar()
        return int(found or 0)


async def test_bad_waits_zones_quiet_hours_and_budgets_are_refused_by_field(
    engagement: Engagement,
) -> None:
    bad = pb.Journey(
        display_name="bad timing",
        trigger=pb.Trigger(kind=pb.TRIGGER_KIND_INACTIVE),
        steps=[
            pb.Step(delay=pb.Delay(seconds=0)),
            pb.Step(window=pb.TimeWindow(start="25:00", end="9")),
            pb.Step(until_purchase=pb.UntilPurchase(days=400)),
        ],
        time_zone="Mars/Olympus_Mons",
        quiet_hours=pb.TimeWindow(start="21:00", end="21:00"),
        budget=pb.Budget(points=-5),
    )
    failure = await fails(
        engagement.as_().CreateJourney(pb.CreateJourneyRequest(journey=bad, request_id=rid()))
    )
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(failure.fields) >= {
        "journey.steps[1].window.start",
        "journey.steps[1].window.end",
    }
    fixed = pb.Journey()
    fixed.CopyFrom(bad)
    fixed.steps[1].window.CopyFrom(pb.TimeWindow(start="10:00", end="18:00"))
    failure = await fails(
        engagement.as_().CreateJourney(pb.CreateJourneyRequest(journey=fixed, request_id=rid()))
    )
    assert set(failure.fields) == {
        "journey.trigger.days",
        "journey.steps[0].delay.seconds",
        "journey.steps[2].until_purchase.days",
        "journey.time_zone",
        "journey.quiet_hours",
        "journey.budget.points",
    }


async def test_an_erased_members_waiting_entries_go_no_further(
    engagement: Engagement, engagement_service: RunningService
) -> None:
    root: Root = engagement_service.root
    tier = f"t-{uuid.uuid4().hex[:8]}"
    delay = pb.Step(delay=pb.Delay(seconds=3600))
    journey = await _tier_journey(engagement, tier, delay, points_step(9, "mall"))
    member_id = await engagement.member()
    await publish(engagement.settings, "tiers", tier_changed(member_id, tier, datetime.now(UTC)))
    await until(lambda: engagement.entries(journey.name), lambda e: bool(e))
    await publish(
        engagement.settings,
        "identity",
        identity_events.MemberErased(member_id=member_id, erased_at=timestamp(datetime.now(UTC))),
    )
    [entry] = await until(
        lambda: engagement.entries(journey.name),
        lambda e: bool(e) and e[0].state == pb.ENTRY_STATE_SKIPPED,
    )
    assert entry.state == pb.ENTRY_STATE_SKIPPED
    await timer.run_due(root.uow, root.actions, _at(timedelta(hours=2)))
    assert await engagement.postings(member_id) == []


async def test_a_sweep_enters_nobody_past_the_journeys_end(
    engagement: Engagement, engagement_service: RunningService
) -> None:
    root: Root = engagement_service.root
    journey = await engagement.journey(
        pb.Journey(
            display_name="win-back ending",
            trigger=pb.Trigger(kind=pb.TRIGGER_KIND_INACTIVE, days=30),
            steps=[points_step(5, "mall")],
            end_time=timestamp(datetime.now(UTC) + timedelta(days=20)),
        )
    )
    member_id = await engagement.member()
    await _purchase(engagement, member_id, datetime.now(UTC))
    await until(lambda: _last_purchase(root, member_id), lambda at: at is not None)
    await timer.sweep(root.uow, _at(timedelta(days=31)))
    assert await engagement.entries(journey.name, member_id) == []
