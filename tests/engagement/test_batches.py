"""A consumer's batch of purchases handled together (the kit's batch mode; entrypoints/
consumers.py) leaves what each purchase handled alone leaves: entries into journeys that act at
once recorded set-based, a frequency cap counting the batch's own earlier entries, the same
event twice entered once, and the challenges' progress counted in order with a completion paid
once. The use cases run on the running service's own database (`service.root`), with peers
that count the calls they get; the journeys trigger at units only these tests use."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from loyalty.engagement.v1 import engagement_service_pb2 as pb
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
from tests.engagement.test_journeys import points_step


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
