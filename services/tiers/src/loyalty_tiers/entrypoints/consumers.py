"""The events the tiers service learns from, as a handler table: qualifying activity from the
points service, merges, unmerges and erasures from the identity service."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from loyalty.points.v1 import events_pb2 as points_events
from loyalty_kit.inbox import EventConsumer, Subscription, consumers_of, member_merges
from loyalty_kit.timestamps import moment

from loyalty_tiers.bootstrap import Tiers
from loyalty_tiers.domain.ladder import Totals
from loyalty_tiers.service_layer import activity, identity_events
from loyalty_tiers.service_layer.uow import TiersUnitOfWork


async def _activity(
    app: Tiers,
    uow: TiersUnitOfWork,
    e: points_events.PointsEarned | points_events.PointsReversed,
    sign: int,
) -> None:
    """Earned points count for the tier (and the earning as one visit); reversed ones undo it."""
    spend = Decimal(e.qualifying_spend_base.amount or "0")
    await activity.record_activity(
        uow,
        e.member_id,
        e.posting_id,
        moment(e.occurred_at, "occurred_at"),
        e.unit,
        Totals(sign * spend, sign * e.points, 1 if sign > 0 else 0),
        app.clock(),
    )


async def points_earned(app: Tiers, uow: TiersUnitOfWork, e: points_events.PointsEarned) -> None:
    await _activity(app, uow, e, +1)


async def points_reversed(
    app: Tiers, uow: TiersUnitOfWork, e: points_events.PointsReversed
) -> None:
    await _activity(app, uow, e, -1)


TABLE: Sequence[Subscription[Tiers]] = (
    Subscription(
        "tiers-activity",
        "points",
        {points_events.PointsEarned: points_earned, points_events.PointsReversed: points_reversed},
    ),
    Subscription(
        "tiers-members",
        "identity",
        member_merges(
            identity_events.on_member_merged,
            identity_events.on_member_unmerged,
            identity_events.on_member_erased,
        ),
    ),
)


def consumers(app: Tiers) -> list[EventConsumer]:
    return consumers_of(TABLE, app, app.uow, app.context.settings.event_namespace)
