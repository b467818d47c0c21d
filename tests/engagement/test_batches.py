"""A consumer's batch of purchases handled together (the kit's batch mode; entrypoints/
consumers.py) leaves what each purchase handled alone leaves: entries into journeys that act at
once recorded set-based, a frequency cap counting the batch's own earlier entries, the same
event twice entered once, and the challenges' progress counted in order with a completion paid
once; every admitted entry announced (JourneyEntered, treatment or control) and badge
conditions judged as `admit` judges them; purchases kept for refunds and merges (a refund
before or after the batch taken out, an absorbed member's purchase counted for the survivor).
The use cases run on the running service's own database (`service.root`), with peers that
count the calls they get; the journeys trigger at units only these tests use."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from loyalty.engagement.v1 import challenges_pb2 as challenges_pb
from loyalty.engagement.v1 import engagement_service_pb2 as pb
from loyalty.engagement.v1 import events_pb2 as engagement_events
from loyalty_engagement.bootstrap import Engagement as Root
from loyalty_engagement.domain.challenges import (
    ChallengeSpec,
    Goal,
    GoalKind,
    Occurrence,
    Reward,
    Window,
    WindowKind,
)
from loyalty_engagement.domain.journeys import TriggerEvent, TriggerKind
from loyalty_engagement.service_layer import challenges, timer
from loyalty_kit.server import RunningService

from tests.engagement.conftest import Engagement
from tests.engagement.test_challenges import progress_in, units
from tests.engagement.test_challenges_integrity import challenge, score, spend_board
from tests.engagement.test_journeys import points_step
from tests.support.events import published


@dataclass
class Counting:
    """Peers that answer at once and keep each call's idempotency key."""

    keys: list[str] = field(default_factory=list)

    async def award_points(
        self, member_id: str, points: int, funding_unit: str, reason: str, key: str
    ) -> str:
        self.keys.append(key)
        return f"posting-{key}"

    async def issue_coupon(
        self, member_id: str, template: str, unit: str, key: str, grant_key: str = ""
    ) -> str:
        self.keys.append(key)
        return f"code-{key}"


def _purchase(member_id: str, unit: str, key: str, at: datetime) -> TriggerEvent:
    return TriggerEvent(TriggerKind.PURCHASE, member_id, f"purchase:{key}", at, unit=unit)


async def test_a_batch_of_purchases_enters_each_once_and_keeps_the_cap(
    engagement: Engagement, engagement_service: RunningService
) -> None:
    root: Root = engagement_service.root
    unit = f"shop-{uuid.uuid4().hex[:8]}"
    trigger = pb.Trigger(kind=pb.TRIGGER_KIND_PURCHASE, unit=unit)
    every = await engagement.journey(
        pb.Journey(display_name="each purchase", trigger=trigger, steps=[points_step(5, "mall")])
    )
    capped = await engagement.journey(
        pb.Journey(
            display_name="once a month",
            trigger=trigger,
            steps=[points_step(9, "mall")],
            frequency_cap=pb.FrequencyCap(max_entries=1, period_days=30),
        )
    )
    member, other = str(uuid.uuid4()), str(uuid.uuid4())
    at = datetime.now(UTC)
    batch = [
        _purchase(member, unit, "a", at),
        _purchase(member, unit, "b", at + timedelta(seconds=1)),
        _purchase(member, unit, "a", at),  # the first again (a replay in the same batch)
        _purchase(other, unit, "c", at),
        _purchase(member, "elsewhere", "d", at),  # at another unit: no entry
    ]
    peers = Counting()
    async with root.uow() as uow:
        await timer.on_purchase_events(uow, peers, batch, root.clock())  # type: ignore[arg-type]
        await uow.commit()
    mine = await engagement.entries(every.name, member)
    assert sorted(e.state for e in mine) == [pb.ENTRY_STATE_COMPLETED] * 2
    for entry in mine:
        key = f"journey-{entry.name.rsplit('/', 1)[-1]}-0"
        assert [(s.outcome, s.detail) for s in entry.steps] == [("done", f"posting-{key}")]
    capped_states = sorted(e.state for e in await engagement.entries(capped.name, member))
    assert capped_states == [pb.ENTRY_STATE_COMPLETED, pb.ENTRY_STATE_CAPPED]
    assert [e.state for e in await engagement.entries(capped.name, other)] == [
        pb.ENTRY_STATE_COMPLETED
    ]
    assert len(peers.keys) == len(set(peers.keys)) == 2 + 1 + 1 + 1

    # The same batch again (redelivered after a crash before the ack): nothing more.
    async with root.uow() as uow:
        await timer.on_purchase_events(uow, peers, batch, root.clock())  # type: ignore[arg-type]
        await uow.commit()
    assert len(peers.keys) == 5
    assert len(await engagement.entries(every.name, member)) == 2


async def test_a_batch_of_purchases_counts_in_order_and_pays_a_completion_once(
    engagement_service: RunningService,
) -> None:
    root: Root = engagement_service.root
    tag = uuid.uuid4().hex[:6]
    units = (f"mall-{tag}", f"hotel-{tag}", f"cinema-{tag}")
    spec = ChallengeSpec(
        display_name=f"Explorer of {tag}",
        unit="group",
        goal=Goal(GoalKind.DISTINCT_UNITS, 3, units=units),
        window=Window(WindowKind.QUARTER),
        reward=Reward(points=1000, funding_unit="group"),
        repeatable=False,
        time_zone="Asia/Shanghai",
        start_at=None,
        end_at=None,
    )
    now = root.clock()
    async with root.uow() as uow:
        challenge = await challenges.create(uow, spec, now)
        await uow.commit()
    member = str(uuid.uuid4())
    at = datetime.now(UTC)

    def bought(key: str, unit: str) -> Occurrence:
        return Occurrence(f"purchase:{key}-{tag}", member, at, unit=unit, spend=Decimal(120))

    batch = [
        bought("1", units[0]),
        bought("2", units[0]),
        bought("3", units[1]),
        bought("3", units[1]),  # the same event twice
        bought("4", units[2]),  # the third unit: completed
        bought("5", units[2]),  # after the completion: not counted
    ]
    peers = Counting()
    async with root.uow() as uow:
        await challenges.on_purchases(uow, peers, batch, root.clock())  # type: ignore[arg-type]
        await uow.commit()
    async with root.uow() as uow:
        await challenges.on_purchases(uow, peers, batch, root.clock())  # type: ignore[arg-type]
        await uow.commit()
    async with root.uow(read_only=True) as uow:
        progress = await uow.challenges.member_progress(member)
    (mine,) = [p for p in progress if p.challenge_id == challenge.challenge_id]
    assert (mine.progress.value, sorted(mine.progress.units)) == (3, sorted(units))
    assert peers.keys == [f"challenge-{challenge.challenge_id}-{member}-once"]


async def test_a_batch_announces_every_admitted_entry_and_judges_badge_conditions(
    engagement: Engagement, engagement_service: RunningService
) -> None:
    root: Root = engagement_service.root
    unit, badge = f"shop-{uuid.uuid4().hex[:8]}", f"vip-{uuid.uuid4().hex[:8]}"
    trigger = pb.Trigger(kind=pb.TRIGGER_KIND_PURCHASE, unit=unit)

    async def journey(share: float, **conditions: list[str]) -> str:
        made = await engagement.journey(
            pb.Journey(
                display_name="batched",
                trigger=trigger,
                steps=[points_step(5, "mall")],
                control_share=share,
                conditions=pb.Conditions(**conditions),  # type: ignore[arg-type]
            )
        )
        return made.name

    treated, held = await journey(0.0), await journey(1.0)
    holders, lackers = (
        await journey(0.0, held_badges=[badge]),
        await journey(0.0, lacking_badges=[badge]),
    )
    holder, lacker = str(uuid.uuid4()), str(uuid.uuid4())
    async with root.uow() as uow:
        await uow.challenges.award_badge(holder, badge, "test", root.clock())
        await uow.commit()
    at = datetime.now(UTC)
    batch = [
        _purchase(holder, unit, "a", at),
        _purchase(lacker, unit, "b", at),
        _purchase(holder, unit, "a", at),  # the same event twice
    ]
    async with root.uow() as uow:
        await timer.on_purchase_events(uow, Counting(), batch, root.clock())  # type: ignore[arg-type]
        await uow.commit()

    async def states(journey: str, member: str) -> list[int]:
        return [e.state for e in await engagement.entries(journey, member)]

    done, held_out, skipped = (
        [pb.ENTRY_STATE_COMPLETED],
        [pb.ENTRY_STATE_HELD_OUT],
        [pb.ENTRY_STATE_SKIPPED],
    )
    assert await states(holders, holder) == done and await states(holders, lacker) == skipped
    assert await states(lackers, holder) == skipped and await states(lackers, lacker) == done
    assert await states(held, holder) == held_out and await states(treated, lacker) == done

    announced = await published(
        engagement.settings, "engagement", engagement_events.JourneyEntered, [holder, lacker], 3
    )
    expected = {
        holder: [(treated, False), (held, True), (holders, False)],
        lacker: [(treated, False), (held, True), (lackers, False)],
    }
    for member, wanted in expected.items():
        entries = {
            e.name.rsplit("/", 1)[-1]: e
            for journey, _ in wanted
            for e in await engagement.entries(journey, member)
        }
        got = announced[member]
        assert sorted((f"journeys/{e.journey_id}", e.control) for e in got) == sorted(wanted)
        assert sorted(e.entry_id for e in got) == sorted(entries)  # one for each entry
        assert all(e.entered_at == entries[e.entry_id].enter_time for e in got)


async def test_a_batch_keeps_its_purchases_for_refunds_and_merges(
    engagement: Engagement, engagement_service: RunningService
) -> None:
    root: Root = engagement_service.root
    mall = units()[0]
    spend = await challenge(
        engagement,
        challenges_pb.Goal(kind=challenges_pb.GOAL_KIND_SPEND, target=400, unit=mall),
        challenges_pb.ChallengeReward(points=500, funding_unit="group"),
    )
    board = await spend_board(engagement, mall)
    survivor, absorbed = str(uuid.uuid4()), str(uuid.uuid4())
    at, tag = datetime.now(UTC), uuid.uuid4().hex
    peers = Counting()

    def bought(key: str, member: str, spend: int) -> Occurrence:
        return Occurrence(f"purchase:{key}-{tag}", member, at, unit=mall, spend=Decimal(spend))

    async def refunded(key: str, amount: int) -> None:
        async with root.uow() as uow:
            await challenges.on_refund(
                uow,
                f"refund:{key}-{tag}",
                f"purchase:{key}-{tag}",
                survivor,
                Decimal(amount),
                at,
                root.clock(),
            )
            await uow.commit()

    async def batch(*events: Occurrence) -> None:
        async with root.uow() as uow:
            await challenges.on_purchases(uow, peers, list(events), root.clock())  # type: ignore[arg-type]
            await uow.commit()

    async def standing() -> tuple[int, bool, int]:
        found = await progress_in(engagement, survivor, spend.name)
        return found.value, found.completed, await score(engagement, board, survivor)

    async with root.uow() as uow:
        await challenges.on_merge(uow, peers, survivor, absorbed, root.clock())  # type: ignore[arg-type]
        await uow.commit()
    await refunded("3", 100)  # before its purchase: the purchase counts net of it
    first = bought("1", survivor, 120)
    await batch(first, bought("2", survivor, 120), bought("3", survivor, 120), first)
    await batch(bought("4", absorbed, 50))  # absorbed before: the survivor's
    assert await standing() == (120 + 120 + 20 + 50, False, 310)

    await refunded("1", 120)  # after the batch: taken back out of progress and score
    assert await standing() == (190, False, 190)

    await batch(bought("5", survivor, 210), bought("6", survivor, 10))
    assert await standing() == (400, True, 410)  # completed on the fifth; the sixth scores
    assert peers.keys == [f"challenge-{spend.name.rsplit('/', 1)[-1]}-{survivor}-once"]
