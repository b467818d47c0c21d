"""The events the points service learns from, as a handler table: merges, unmerges, suspensions,
reactivations, erasures, imported members' legacy balances and replayed past orders from the
identity service; tier changes from the tiers service; badges earned and revoked from the
engagement service."""

from __future__ import annotations

from collections.abc import Sequence

from loyalty.engagement.v1 import events_pb2 as engagement_events
from loyalty.identity.v1 import events_pb2 as identity_events
from loyalty.tiers.v1 import events_pb2 as tier_events
from loyalty_kit.inbox import EventConsumer, Subscription, consumers_of, member_merges
from loyalty_kit.kernel.members import MemberState
from loyalty_kit.kernel.orders import OrderMode, past_orders
from loyalty_kit.logs import get_logger
from loyalty_kit.timestamps import moment, moment_of

from loyalty_points.bootstrap import Points
from loyalty_points.domain.migration import ImportedChunk, LegacyBalance
from loyalty_points.service_layer import consumers as use_cases
from loyalty_points.service_layer import migration, replay
from loyalty_points.service_layer.uow import PointsUnitOfWork

log = get_logger("loyalty.points.migration")


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


async def badge_earned(
    app: Points, uow: PointsUnitOfWork, e: engagement_events.BadgeEarned
) -> None:
    at = moment(e.earned_at, "earned_at")
    await use_cases.on_badge_earned(uow, e.member_id, e.badge, at)


async def badge_revoked(
    app: Points, uow: PointsUnitOfWork, e: engagement_events.BadgeRevoked
) -> None:
    at = moment(e.revoked_at, "revoked_at")
    await use_cases.on_badge_revoked(uow, e.member_id, e.badge, at)


async def members_imported(
    app: Points, uow: PointsUnitOfWork, e: identity_events.MembersImported
) -> None:
    """A chunk of an import: its legacy balances carried over (`service_layer.migration`)."""
    now = app.clock()
    chunk = ImportedChunk(
        e.member_import,
        e.unit,
        moment_of(e, "imported_at") or now,
        tuple(
            LegacyBalance(
                m.member_id,
                m.legacy_key,
                m.legacy_points,
                moment_of(m, "legacy_points_expire_at", "members.legacy_points_expire_at"),
            )
            for m in e.members
        ),
    )
    done = await migration.carry_over(uow, chunk, now)
    if done.credited or done.skipped or done.carried_before:
        log.info(
            "legacy balances carried over",
            member_import=e.member_import,
            unit=e.unit,
            credited=done.credited,
            points=done.points,
            carried_before=done.carried_before,
            **{f"skipped_{outcome}": n for outcome, n in sorted(done.skipped.items())},
        )


async def legacy_orders_imported(
    app: Points, uow: PointsUnitOfWork, e: identity_events.LegacyOrdersImported
) -> None:
    """A chunk of an order import: in mode REPLAY each order earns as an offline receipt
    (`service_layer.replay`). An ACTIVITY_ONLY chunk is the tiers service's: no points."""
    now = app.clock()
    chunk = past_orders(e, now)
    if chunk.mode is not OrderMode.REPLAY:
        return
    done = await replay.replay_orders(uow, chunk, now)
    # Counts and reasons only: no member or order appears in the log.
    fields = {f"skipped_{reason}": n for reason, n in sorted(done.skipped.items())}
    (log.warning if done.skipped else log.info)(
        "past orders replayed",
        order_import=e.order_import,
        unit=chunk.unit,
        earned=done.earned,
        points=done.points,
        expired_at_once=done.expired,
        earned_before=done.earned_before,
        **fields,
    )


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
            identity_events.MembersImported: members_imported,
        },
    ),
    Subscription("points-tiers", "tiers", {tier_events.TierChanged: tier_changed}),
    # Badges held, for campaigns for their holders.
    Subscription(
        "points-badges",
        "engagement",
        {
            engagement_events.BadgeEarned: badge_earned,
            engagement_events.BadgeRevoked: badge_revoked,
        },
    ),
    # Past orders apart: a long replay never holds back merges, suspensions and erasures.
    Subscription(
        "points-orders",
        "identity",
        {identity_events.LegacyOrdersImported: legacy_orders_imported},
    ),
)


def consumers(app: Points) -> list[EventConsumer]:
    return consumers_of(TABLE, app, app.uow, app.context.settings.event_namespace)
