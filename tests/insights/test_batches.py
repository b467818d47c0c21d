"""The insights consumers handle a fetched batch of events in one transaction (the kit's batch
mode): a delivery seen twice counts once, a poison event leaves the batch's others recorded, a
merge inside a batch of identity's events gives the survivor the absorbed member's figures. The
service's own consumers, handed the batches as JetStream would."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from google.protobuf.message import Message
from loyalty.common.v1 import money_pb2
from loyalty.identity.v1 import events_pb2 as identity_events
from loyalty.points.v1 import events_pb2 as points_events
from loyalty_insights.bootstrap import Insights
from loyalty_insights.entrypoints.consumers import consumers
from loyalty_kit import events
from loyalty_kit.db import driver_connection
from loyalty_kit.inbox import EventConsumer
from loyalty_kit.server import RunningService
from loyalty_kit.timestamps import timestamp

from tests.insights.conftest import Suite
from tests.insights.test_member_figures import row_of

pytestmark = pytest.mark.asyncio(loop_scope="session")


@dataclass
class Delivery:
    """A message as a JetStream fetch hands it over, noting how it was answered."""

    subject: str
    data: bytes
    headers: dict[str, str]
    reply: str = ""
    metadata: Any = field(default_factory=lambda: SimpleNamespace(num_delivered=1, timestamp=None))
    answers: list[str] = field(default_factory=list)

    async def ack(self) -> None:
        self.answers.append("ack")

    async def nak(self, delay: float | None = None) -> None:
        self.answers.append("nak")

    async def term(self) -> None:
        self.answers.append("term")


def delivery(event: Message, event_id: str = "") -> Delivery:
    event_id = event_id or str(uuid.uuid4())
    return Delivery(
        events.event_subject(event, "test"),
        event.SerializeToString(),
        {
            events.MSG_ID_HEADER: event_id,
            events.EVENT_ID_HEADER: event_id,
            events.EVENT_TYPE_HEADER: event.DESCRIPTOR.full_name,
        },
    )


def consumer(service: RunningService, name: str) -> EventConsumer:
    """A fresh consumer of the service's handler table (its own counters, the same inbox)."""
    app: Insights = service.root
    return next(c for c in consumers(app) if c.name == name)


def earned(suite: Suite, member_id: str, unit: str, days_ago: float) -> points_events.PointsEarned:
    return points_events.PointsEarned(
        member_id=member_id,
        posting_id=str(uuid.uuid4()),
        unit=unit,
        order_id=uuid.uuid4().hex,
        qualifying_spend_base=money_pb2.Money(currency_code="CNY", amount="100.00"),
        points=100,
        occurred_at=timestamp(suite.clock() - timedelta(days=days_ago)),
    )


async def activity_count(service: RunningService, member_id: str) -> int:
    async with service.context.uow() as uow:
        conn = await driver_connection(uow.session)
        return int(
            await conn.fetchval("SELECT count(*) FROM activity WHERE member_id = $1", member_id)
        )


async def test_a_delivery_seen_twice_in_a_batch_or_again_later_counts_once(
    suite: Suite, insights_service: RunningService
) -> None:
    member = str(uuid.uuid4())
    first = delivery(earned(suite, member, "mall", 3))
    batch = [
        first,
        delivery(earned(suite, member, "hotel", 2)),
        Delivery(first.subject, first.data, dict(first.headers)),  # redelivered meanwhile
        delivery(earned(suite, member, "mall", 1)),
    ]
    points = consumer(insights_service, "insights-points")
    assert await points.handle_batch(batch) == []  # type: ignore[arg-type]
    assert (points.handled, points.duplicates, points.batches) == (3, 1, 1)
    assert all(m.answers == ["ack"] for m in batch)
    row = await row_of(insights_service, member)
    assert row is not None and (row["visits_12m"], row["units"]) == (3, ["hotel", "mall"])

    # The whole batch again (acks lost): the inbox knows every event, nothing counts twice.
    again = [Delivery(m.subject, m.data, dict(m.headers)) for m in batch]
    assert await points.handle_batch(again) == []  # type: ignore[arg-type]
    assert (points.handled, points.duplicates) == (3, 5)
    assert await activity_count(insights_service, member) == 3
    row = await row_of(insights_service, member)
    assert row is not None and row["visits_12m"] == 3


async def test_a_poison_event_leaves_the_rest_of_its_batch_recorded(
    suite: Suite, insights_service: RunningService
) -> None:
    members = [str(uuid.uuid4()) for _ in range(3)]
    poison = earned(suite, str(uuid.uuid4()), "mall", 1)
    poison.occurred_at.seconds = -(10**12)  # out of range: its handler fails, every time
    batch = [
        delivery(earned(suite, members[0], "mall", 1)),
        delivery(earned(suite, members[1], "mall", 1)),
        delivery(poison),
        delivery(earned(suite, members[2], "hotel", 1)),
    ]
    points = consumer(insights_service, "insights-points")
    assert await points.handle_batch(batch) == []  # type: ignore[arg-type]
    assert (points.batches, points.batches_split, points.handled) == (0, 1, 3)
    # The good ones acknowledged one at a time; the poison one retried later (then parked).
    assert [m.answers for m in batch] == [["ack"], ["ack"], ["nak"], ["ack"]]
    for member in members:
        assert await activity_count(insights_service, member) == 1
        row = await row_of(insights_service, member)
        assert row is not None and row["visits_12m"] == 1


async def test_a_merge_inside_a_batch_gives_the_survivor_the_absorbed_members_figures(
    suite: Suite, insights_service: RunningService
) -> None:
    survivor, absorbed = str(uuid.uuid4()), str(uuid.uuid4())
    now = suite.clock()
    points = consumer(insights_service, "insights-points")
    await points.handle_batch(  # type: ignore[arg-type]
        [
            delivery(earned(suite, survivor, "mall", 5)),
            delivery(earned(suite, absorbed, "hotel", 4)),
            delivery(earned(suite, absorbed, "hotel", 3)),
        ]
    )
    merged = identity_events.MemberMerged(
        survivor_member_id=survivor, absorbed_member_id=absorbed, merged_at=timestamp(now)
    )
    members = consumer(insights_service, "insights-members")
    batch = [
        delivery(
            identity_events.MemberRegistered(
                member_id=survivor, unit="mall", registered_at=timestamp(now - timedelta(days=30))
            )
        ),
        delivery(
            identity_events.MemberRegistered(
                member_id=absorbed,
                unit="hotel",
                registered_at=timestamp(now - timedelta(days=90)),
            )
        ),
        delivery(
            identity_events.ProfileChanged(
                member_id=absorbed,
                changed_fields=["birthday"],
                birthday_month=7,
                changed_at=timestamp(now),
            )
        ),
        delivery(merged),
        delivery(
            identity_events.ConsentChanged(
                member_id=survivor,
                purpose="CONSENT_PURPOSE_PERSONALISED_OFFERS",
                granted=False,
                changed_at=timestamp(now),
            )
        ),
    ]
    assert await members.handle_batch(batch) == []  # type: ignore[arg-type]
    # The merge alone, the events before and after it a batch each, in order.
    assert (members.handled, members.batches) == (5, 2)
    row = await row_of(insights_service, survivor)
    assert row is not None
    assert (
        row["visits_12m"],
        row["units"],
        row["registered_unit"],
        row["birthday_month"],
        row["offers_consent"],
    ) == (3, ["hotel", "mall"], "hotel", 7, False)
    assert await row_of(insights_service, absorbed) is None

    # A purchase still named for the absorbed member, in a later batch: the survivor's.
    await points.handle_batch([delivery(earned(suite, absorbed, "cinema", 1))])  # type: ignore[arg-type]
    row = await row_of(insights_service, survivor)
    assert row is not None and (row["visits_12m"], row["units"]) == (
        4,
        ["cinema", "hotel", "mall"],
    )
    assert await row_of(insights_service, absorbed) is None
