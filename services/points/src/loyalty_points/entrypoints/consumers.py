"""The events the points service learns from, as a handler table: merges, unmerges, suspensions,
reactivations and erasures from the identity service; tier changes from the tiers service."""

from __future__ import annotations

from collections.abc import Sequence

from loyalty.identity.v1 import events_pb2 as identity_events
from loyalty.tiers.v1 import events_pb2 as tier_events
from loyalty_kit.inbox import EventConsumer, Subscription, consumers_of, member_merges
from loyalty_kit.kernel.members import MemberState
from loyalty_kit.timestamps import moment

from loyalty_points.bootstrap import Points
from loyalty_points.service_layer import consumers as use_cases
from loyalty_points.service_layer.uow import PointsUnitOfWork


async def member_suspended(
    app: Points, uow: PointsUnitOfWork, e: identity_events.MemberSuspended
) -> None:
    await use_cases.on_member_state(uow, e.member_id, MemberState.SUSPENDED.value, app.clock())


async def member_reactivated(
    app: Points, uow: PointsUnitOfWork, e: identity_events.MemberReactivated
) -> None:
    await use_cases.on_member_state(uow, e.member_id, MemberState.ACTIVE.value, app.clock())


async def tier_changed(app: Points, uow: PointsUnitOfWork, e: tier_events.TierChanged) -> None:
    effective_at = moment(e.effective_at, "effective_at")
    await use_cases.on_tier_changed(uow, e.member_id, e.to_tier, effective_at, app.clock())


TABLE: Sequence[Subscription[Points]] = (
    Subscription(
        "points-members",
        "identity",
        {
            **member_merges(
                use_cases.on_member_merged, use_cases.on_member_unmerged, use_cases.on_member_erased
            ),
            identity_events.MemberSuspended: member_suspended,
            identity_events.MemberReactivated: member_reactivated,
        },
    ),
    Subscription("points-tiers", "tiers", {tier_events.TierChanged: tier_changed}),
)


def consumers(app: Points) -> list[EventConsumer]:
    return consumers_of(TABLE, app, app.uow, app.context.settings.event_namespace)
