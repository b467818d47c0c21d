"""The events the tiers service learns from, as a handler table: qualifying activity from the
points service; merges, unmerges, erasures, imported members' legacy tiers and imported past
orders from the identity service. (Legacy balances carried over, points' PointsMigrated, are
not qualifying activity: this table does not follow them.)"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from loyalty.identity.v1 import events_pb2 as identity_pb
from loyalty.points.v1 import events_pb2 as points_events
from loyalty_kit.inbox import Batched, EventConsumer, Subscription, consumers_of, member_merges
from loyalty_kit.kernel.orders import OrderMode, past_orders
from loyalty_kit.logs import get_logger
from loyalty_kit.timestamps import moment, moment_of

from loyalty_tiers.bootstrap import Tiers
from loyalty_tiers.domain.ladder import Totals
from loyalty_tiers.domain.legacy import ImportedTiers, LegacyTier
from loyalty_tiers.service_layer import activity, identity_events, legacy, orders
from loyalty_tiers.service_layer.uow import TiersUnitOfWork

log = get_logger("loyalty.tiers.imports")


async def _activity(
    app: Tiers,
    uow: TiersUnitOfWork,
    e: points_events.PointsEarned | points_events.PointsReversed,
    sign: int,
) -> None:
    """Earned points count for the tier (and the earning as one visit, its order claimed);
    reversed ones undo it."""
    spend = Decimal(e.qualifying_spend_base.amount or "0")
    await activity.record_activity(
        uow,
        e.member_id,
        e.posting_id,
        moment(e.occurred_at, "occurred_at"),
        e.unit,
        Totals(sign * spend, sign * e.points, 1 if sign > 0 else 0),
        app.clock(),
        order_id=e.order_id if sign > 0 else "",
    )


async def points_earned(app: Tiers, uow: TiersUnitOfWork, e: points_events.PointsEarned) -> None:
    await _activity(app, uow, e, +1)


async def points_reversed(
    app: Tiers, uow: TiersUnitOfWork, e: points_events.PointsReversed
) -> None:
    await _activity(app, uow, e, -1)


async def members_imported(
    app: Tiers, uow: TiersUnitOfWork, e: identity_pb.MembersImported
) -> None:
    """A chunk of an import: its mapped legacy tiers become status matches."""
    now = app.clock()
    chunk = ImportedTiers(
        e.member_import,
        e.unit,
        moment_of(e, "imported_at") or now,
        tuple(
            LegacyTier(
                m.member_id, m.legacy_key, m.tier_code, moment_of(m, "tier_ends_at", "tier_ends_at")
            )
            for m in e.members
            if m.tier_code
        ),
    )
    done = await legacy.grant_legacy_tiers(uow, chunk, now)
    if done.skipped:
        # Tier codes come from the import's mapping to the ladder: no personal data.
        log.warning(
            "legacy tiers skipped",
            member_import=e.member_import,
            unit=e.unit,
            granted=done.granted,
            unknown_tiers=sorted(t[:40] for t in done.unknown_tiers)[:10],
            **{f"skipped_{outcome}": n for outcome, n in sorted(done.skipped.items())},
        )
    elif done.granted or done.granted_before:
        log.info(
            "legacy tiers granted",
            member_import=e.member_import,
            unit=e.unit,
            granted=done.granted,
            granted_before=done.granted_before,
        )


async def legacy_orders_imported(
    app: Tiers, uow: TiersUnitOfWork, e: identity_pb.LegacyOrdersImported
) -> None:
    """A chunk of an order import: in mode ACTIVITY_ONLY its orders become qualifying activity
    (`service_layer.orders`). A REPLAY chunk is the points service's: it earns each order, and
    tiers counts those earns as any (PointsEarned), so it does nothing here."""
    now = app.clock()
    chunk = past_orders(e, now)
    if chunk.mode is not OrderMode.ACTIVITY_ONLY:
        log.info(
            "order import chunk left to points",
            order_import=e.order_import,
            unit=e.unit,
            mode=chunk.mode.value,
            orders=len(e.orders),
        )
        return
    done = await orders.count_orders(uow, chunk, now)
    # Counts and reasons only: no member or order appears in the log.
    fields = {f"skipped_{reason}": n for reason, n in sorted(done.skipped.items())}
    (log.warning if done.skipped else log.info)(
        "past orders counted",
        order_import=e.order_import,
        unit=chunk.unit,
        recorded=done.recorded,
        counted_before=done.counted_before,
        marked_for_upgrade=done.marked,
        **fields,
    )


# Activity a fetched batch a transaction (the kit's batch mode: one inbox statement, one
# commit; each event still recorded and judged in order; a batch that fails is handled again
# one event at a time). The members judged stay locked to the batch's commit.
ACTIVITY_BATCH = 100

TABLE: Sequence[Subscription[Tiers]] = (
    Subscription(
        "tiers-activity",
        "points",
        {points_events.PointsEarned: points_earned, points_events.PointsReversed: points_reversed},
        batched=Batched(ACTIVITY_BATCH),
    ),
    Subscription(
        "tiers-members",
        "identity",
        {
            **member_merges(
                identity_events.on_member_merged,
                identity_events.on_member_unmerged,
                identity_events.on_member_erased,
            ),
            identity_pb.MembersImported: members_imported,
        },
    ),
    # Past orders apart: a long import never holds back merges and erasures. Chunks are
    # independent of each other (no member is locked for them): four at once keep the
    # database busy while Python reads the next (bench/README.md, tiers-order-activity).
    Subscription(
        "tiers-orders",
        "identity",
        {identity_pb.LegacyOrdersImported: legacy_orders_imported},
        concurrency=4,
    ),
)


def consumers(app: Tiers) -> list[EventConsumer]:
    return consumers_of(TABLE, app, app.uow, app.context.settings.event_namespace)
