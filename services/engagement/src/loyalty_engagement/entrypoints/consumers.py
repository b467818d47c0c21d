"""The events that trigger journeys, as a handler table: registrations (identity), purchases
(points' PointsEarned), tier changes (tiers; also kept as the member's tier for conditions)
and segment moves (insights' SegmentEntered / SegmentLeft, also kept as segments' members for
scheduled journeys); members' last purchases, birthdays and time zones (identity's
ProfileChanged, MembersImported) and points lots' expiry (points'
LedgerPosted) for the timer's sweeps; purchases, activities and referrals counted by challenges
and leaderboards (their own subscription), refunds taken back out of them and merges combining
them (a subscription each); an erased member's messages, tier, challenge
progress, webhook deliveries and unsubscribe tokens are deleted and the sweeps' data on them
forgotten (identity's MemberErased).
Each event is handled in one transaction with the kit's inbox (a redelivered event is passed
over); purchases and the challenges' events a fetched batch a transaction (the kit's batch
mode: one inbox statement, one commit; a batch that fails is handled again one event at a
time), and each trigger event is named by its content (`TriggerEvent.key`) so a replay of it is
the same entry."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal

from loyalty.identity.v1 import events_pb2 as identity_pb
from loyalty.insights.v1 import events_pb2 as insights_pb
from loyalty.points.v1 import events_pb2 as points_pb
from loyalty.tiers.v1 import events_pb2 as tiers_pb
from loyalty_kit.inbox import Batched, EventConsumer, Subscription, consumers_of
from loyalty_kit.timestamps import moment, moment_of

from loyalty_engagement.bootstrap import Engagement
from loyalty_engagement.domain.challenges import Occurrence
from loyalty_engagement.domain.journeys import TriggerEvent, TriggerKind
from loyalty_engagement.service_layer import challenges, journeys, timer
from loyalty_engagement.service_layer.uow import EngagementUnitOfWork


async def member_registered(
    app: Engagement, uow: EngagementUnitOfWork, e: identity_pb.MemberRegistered
) -> None:
    event = TriggerEvent(
        TriggerKind.MEMBER_REGISTERED,
        e.member_id,
        "registered",  # once per member
        moment(e.registered_at, "registered_at"),
        unit=e.unit,
    )
    await journeys.on_event(uow, app.actions, event, app.clock())


async def points_earned(
    app: Engagement, uow: EngagementUnitOfWork, e: points_pb.PointsEarned
) -> None:
    event = TriggerEvent(
        TriggerKind.PURCHASE,
        e.member_id,
        f"purchase:{e.posting_id}",
        moment(e.occurred_at, "occurred_at"),
        unit=e.unit,
    )
    if uow.purchases is not None:  # in a batch: handled with the others at its end
        uow.purchases.append(event)
        return
    now = app.clock()
    await journeys.on_event(uow, app.actions, event, now)
    # The member's last activity (inactivity), and entries waiting for a purchase.
    await timer.on_purchase(uow, app.actions, e.member_id, event.occurred_at, now)


async def ledger_posted(
    _app: Engagement, uow: EngagementUnitOfWork, e: points_pb.LedgerPosted
) -> None:
    """Each lot's points and expiry (the expiring-points sweep reads them); in a batch, kept
    with the others at its end in one statement."""
    for movement in e.movements:
        expires = moment_of(movement, "expires_at")
        if expires is None or not movement.lot_id:
            continue
        if uow.lots is not None:
            uow.lots.append((movement.lot_id, e.member_id, movement.points, expires))
        else:
            await uow.timing.move_lot(movement.lot_id, e.member_id, movement.points, expires)


async def profile_changed(
    _app: Engagement, uow: EngagementUnitOfWork, e: identity_pb.ProfileChanged
) -> None:
    if "birthday" in e.changed_fields or e.birthday_month:
        await uow.timing.set_birthday(e.member_id, e.birthday_month, e.birthday_day)
    if "time_zone" in e.changed_fields or e.time_zone:
        await uow.timing.set_time_zone(e.member_id, e.time_zone)


async def members_imported(
    _app: Engagement, uow: EngagementUnitOfWork, e: identity_pb.MembersImported
) -> None:
    for member in e.members:
        if member.birthday_month:
            await uow.timing.set_birthday(
                member.member_id, member.birthday_month, member.birthday_day
            )


async def tier_changed(app: Engagement, uow: EngagementUnitOfWork, e: tiers_pb.TierChanged) -> None:
    at = moment(e.effective_at, "effective_at")
    await uow.journeys.set_tier(e.member_id, e.to_tier, at)
    event = TriggerEvent(
        TriggerKind.TIER_CHANGED,
        e.member_id,
        f"tier:{e.from_tier}>{e.to_tier}@{at.isoformat()}",
        at,
        to_tier=e.to_tier,
        reason=e.reason,
    )
    await journeys.on_event(uow, app.actions, event, app.clock())


async def segment_entered(
    app: Engagement, uow: EngagementUnitOfWork, e: insights_pb.SegmentEntered
) -> None:
    at = moment_of(e, "occurred_at") or app.clock()
    await uow.timing.move_segment(e.segment, e.member_id, True, at)
    event = TriggerEvent(
        TriggerKind.SEGMENT_ENTERED,
        e.member_id,
        f"entered:{e.segment}@{at.isoformat()}",
        at,
        segment=e.segment,
    )
    await journeys.on_event(uow, app.actions, event, app.clock())


async def segment_left(
    app: Engagement, uow: EngagementUnitOfWork, e: insights_pb.SegmentLeft
) -> None:
    at = moment_of(e, "occurred_at") or app.clock()
    await uow.timing.move_segment(e.segment, e.member_id, False, at)
    event = TriggerEvent(
        TriggerKind.SEGMENT_LEFT,
        e.member_id,
        f"left:{e.segment}@{at.isoformat()}",
        at,
        segment=e.segment,
    )
    await journeys.on_event(uow, app.actions, event, app.clock())


async def member_erased(
    app: Engagement, uow: EngagementUnitOfWork, e: identity_pb.MemberErased
) -> None:
    await uow.journeys.forget(e.member_id)
    await uow.challenges.forget(e.member_id)
    await uow.channels.forget(e.member_id)
    await uow.timing.forget(e.member_id, app.clock())


# Challenges and leaderboards count purchases, activities and referrals, each named by its
# content (a posting, an activity, a referral), on their own subscription.


async def purchase_counted(
    app: Engagement, uow: EngagementUnitOfWork, e: points_pb.PointsEarned
) -> None:
    spend = Decimal(e.qualifying_spend_base.amount or "0")
    event = Occurrence(
        f"purchase:{e.posting_id}",
        e.member_id,
        moment(e.occurred_at, "occurred_at"),
        unit=e.unit,
        spend=spend,
    )
    if uow.counted_purchases is not None:  # in a batch: counted with the others at its end
        uow.counted_purchases.append(event)
        return
    await challenges.on_occurrence(uow, app.actions, event, app.clock())


async def activity_counted(
    app: Engagement, uow: EngagementUnitOfWork, e: points_pb.ActivityRecorded
) -> None:
    event = Occurrence(
        f"activity:{e.unit}:{e.activity_id}",
        e.member_id,
        moment(e.occurred_at, "occurred_at"),
        unit=e.unit,
        activity_type=e.activity_type,
    )
    await challenges.on_occurrence(uow, app.actions, event, app.clock())


async def referral_counted(
    app: Engagement, uow: EngagementUnitOfWork, e: points_pb.ReferralRewarded
) -> None:
    event = Occurrence(
        f"referral:{e.referee_member_id}",  # a referee is referred once
        e.referrer_member_id,
        moment(e.occurred_at, "occurred_at"),
    )
    await challenges.on_occurrence(uow, app.actions, event, app.clock(), referral=True)


async def refund_counted(
    app: Engagement, uow: EngagementUnitOfWork, e: points_pb.PointsReversed
) -> None:
    await challenges.on_refund(
        uow,
        f"refund:{e.posting_id}",
        f"purchase:{e.earn_posting_id}",
        e.member_id,
        Decimal(e.qualifying_spend_base.amount or "0"),
        moment(e.occurred_at, "occurred_at"),
        app.clock(),
    )


async def member_merged(
    app: Engagement, uow: EngagementUnitOfWork, e: identity_pb.MemberMerged
) -> None:
    await challenges.on_merge(
        uow, app.actions, e.survivor_member_id, e.absorbed_member_id, app.clock()
    )


@contextlib.asynccontextmanager
async def purchases_together(app: Engagement, uow: EngagementUnitOfWork) -> AsyncIterator[None]:
    """A batch's purchases noted as they come and entered together at its end, before the
    commit (`timer.on_purchase_events`); its lots' movements kept together too."""
    uow.purchases, uow.lots = [], []
    try:
        yield
        events, lots = uow.purchases, uow.lots
    finally:
        uow.purchases = uow.lots = None
    await uow.timing.move_lots(lots)
    await timer.on_purchase_events(uow, app.actions, events, app.clock())


@contextlib.asynccontextmanager
async def purchases_counted_together(
    app: Engagement, uow: EngagementUnitOfWork
) -> AsyncIterator[None]:
    """A batch's purchases counted together at its end (`challenges.on_purchases`); its
    activities and referrals as they come (they count for other challenges; scores add up)."""
    uow.counted_purchases = []
    try:
        yield
        events = uow.counted_purchases
    finally:
        uow.counted_purchases = None
    await challenges.on_purchases(uow, app.actions, events, app.clock())


# Events a transaction at most on the busy subscriptions (a fetch's worth): a step's run row,
# its effect's record and the inbox entry still commit together, so each step runs once.
BATCH_SIZE = 200
COUNTED_BATCHED: Batched[Engagement] = Batched(BATCH_SIZE, purchases_counted_together)
PURCHASES_BATCHED: Batched[Engagement] = Batched(BATCH_SIZE, purchases_together)

TABLE: Sequence[Subscription[Engagement]] = (
    Subscription(
        "engagement-members",
        "identity",
        {
            identity_pb.MemberRegistered: member_registered,
            identity_pb.MemberErased: member_erased,
            identity_pb.ProfileChanged: profile_changed,
            identity_pb.MembersImported: members_imported,
        },
    ),
    Subscription(
        "engagement-points",
        "points",
        {points_pb.PointsEarned: points_earned, points_pb.LedgerPosted: ledger_posted},
        batched=PURCHASES_BATCHED,
    ),
    Subscription(
        "engagement-challenges",
        "points",
        {
            points_pb.PointsEarned: purchase_counted,
            points_pb.ActivityRecorded: activity_counted,
            points_pb.ReferralRewarded: referral_counted,
        },
        batched=COUNTED_BATCHED,
    ),
    Subscription(
        "engagement-challenge-refunds", "points", {points_pb.PointsReversed: refund_counted}
    ),
    Subscription(
        "engagement-challenge-merges", "identity", {identity_pb.MemberMerged: member_merged}
    ),
    Subscription("engagement-tiers", "tiers", {tiers_pb.TierChanged: tier_changed}),
    Subscription(
        "engagement-segments",
        "insights",
        {insights_pb.SegmentEntered: segment_entered, insights_pb.SegmentLeft: segment_left},
    ),
)


def consumers(app: Engagement) -> list[EventConsumer]:
    return consumers_of(TABLE, app, app.uow, app.context.settings.event_namespace)
