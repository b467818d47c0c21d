"""The events the insights service keeps facts of, as a handler table: the points ledger
(LedgerPosted: every posting and lot movement), purchases, refunds and redemptions, and
programmes from the points service; registrations, imports, merges, unmerges, erasures,
consents, birthday months (ProfileChanged, MembersImported) and tags (MemberTagsChanged,
MembersImported) from identity; tier changes from tiers; benefits, coupons and rewards from
benefits; journeys' entries (treatment or control) and badges earned and revoked from
engagement. Events of other types are passed over.
Each event that touches members recomputes their figures (service_layer/refresh.py);
LedgerPosted feeds no member figure. The consumers handle a fetched batch of events in one
transaction (the kit's batch mode): facts written set-based and each touched member's figures
recomputed once for the batch (service_layer/refresh.py `batched`); identity's merges,
unmerges and erasures are each handled in a transaction of their own, in order. Past orders'
chunks (large already) stay one event a transaction, a few at once."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from decimal import Decimal

from loyalty.benefits.v1 import events_pb2 as benefits_pb
from loyalty.engagement.v1 import events_pb2 as engagement_pb
from loyalty.identity.v1 import events_pb2 as identity_pb
from loyalty.identity.v1 import order_import_pb2
from loyalty.points.v1 import events_pb2 as points_pb
from loyalty.points.v1 import points_service_pb2
from loyalty.tiers.v1 import events_pb2 as tiers_pb
from loyalty_kit.inbox import Batched, EventConsumer, Subscription, consumers_of, member_merges
from loyalty_kit.timestamps import moment, moment_of

from loyalty_insights.adapters.facts import ActivityFact, MovementFact, PostingFact
from loyalty_insights.bootstrap import Insights
from loyalty_insights.domain import crossunit
from loyalty_insights.service_layer import members
from loyalty_insights.service_layer.refresh import batched, recompute
from loyalty_insights.service_layer.uow import InsightsUnitOfWork


def _kind(kind: points_service_pb2.PostingKind.ValueType) -> str:
    """POSTING_KIND_EARN -> "earn" (the points service's own word for it); a kind newer than
    this contract is kept by its number ("kind_19"), counted as neither issued nor redeemed."""
    try:
        name = points_service_pb2.PostingKind.Name(kind)
    except ValueError:
        return f"kind_{int(kind)}"
    return name.removeprefix("POSTING_KIND_").lower()


# --- points ---------------------------------------------------------------------------------


async def ledger_posted(_app: Insights, uow: InsightsUnitOfWork, e: points_pb.LedgerPosted) -> None:
    await uow.facts.record_ledger(
        e.member_id,
        [
            PostingFact(
                p.posting_id,
                _kind(p.kind),
                p.unit,
                p.points,
                moment(p.posted_at, "posted_at"),
                moment_of(p, "occurred_at") or moment(p.posted_at, "posted_at"),
            )
            for p in e.postings
        ],
        [
            MovementFact(
                m.posting_id,
                m.lot_id,
                m.earned_unit,
                m.unit,
                m.points,
                moment(m.posted_at, "posted_at"),
                moment_of(m, "expires_at"),
            )
            for m in e.movements
        ],
    )


async def points_earned(app: Insights, uow: InsightsUnitOfWork, e: points_pb.PointsEarned) -> None:
    spend = e.qualifying_spend_base
    await uow.facts.record_activity(
        [
            ActivityFact(
                e.member_id,
                crossunit.PURCHASE,
                e.posting_id,
                e.unit,
                moment(e.occurred_at, "occurred_at"),
                Decimal(spend.amount or "0"),
                spend.currency_code,
            )
        ]
    )
    await recompute(uow, [e.member_id], app.clock())


async def points_reversed(
    app: Insights, uow: InsightsUnitOfWork, e: points_pb.PointsReversed
) -> None:
    spend = e.qualifying_spend_base
    await uow.facts.record_activity(
        [
            ActivityFact(
                e.member_id,
                crossunit.REFUND,
                e.posting_id,
                e.unit,
                moment(e.occurred_at, "occurred_at"),
                -Decimal(spend.amount or "0"),
                spend.currency_code,
            )
        ]
    )
    await recompute(uow, [e.member_id], app.clock())


async def points_redeemed(
    app: Insights, uow: InsightsUnitOfWork, e: points_pb.PointsRedeemed
) -> None:
    await uow.facts.record_activity(
        [
            ActivityFact(
                e.member_id,
                crossunit.REDEMPTION,
                e.posting_id,
                e.unit,
                moment(e.occurred_at, "occurred_at"),
                Decimal(0),
                "",
            )
        ]
    )
    await recompute(uow, [e.member_id], app.clock())


async def programme_published(
    _app: Insights, uow: InsightsUnitOfWork, e: points_pb.ProgrammePublished
) -> None:
    await uow.facts.record_programme(
        e.version,
        moment(e.effective_from, "effective_from"),
        e.base_currency_code,
        Decimal(e.point_value or "0"),
        list(e.units),
    )


# --- identity -------------------------------------------------------------------------------


async def member_registered(
    app: Insights, uow: InsightsUnitOfWork, e: identity_pb.MemberRegistered
) -> None:
    await uow.facts.record_registrations(
        [(e.member_id, e.unit, moment(e.registered_at, "registered_at"))], imported=False
    )
    await recompute(uow, [e.member_id], app.clock())


async def members_imported(
    app: Insights, uow: InsightsUnitOfWork, e: identity_pb.MembersImported
) -> None:
    at = moment_of(e, "imported_at") or app.clock()
    # A member joined when its legacy programme says, else when the import made it; a row
    # joining a member with an earlier date moves its joining earlier (cohorts).
    await uow.facts.record_registrations(
        [(m.member_id, e.unit, moment_of(m, "joined_at") or at) for m in e.members if m.created],
        imported=True,
    )
    await uow.facts.record_joined(
        [
            (m.member_id, e.unit, joined)
            for m in e.members
            if (joined := moment_of(m, "joined_at")) is not None
        ]
    )
    await uow.facts.record_birthdays(
        [(m.member_id, m.birthday_month, at) for m in e.members if 1 <= m.birthday_month <= 12]
    )
    await uow.facts.add_tags([(m.member_id, list(m.tags)) for m in e.members if m.tags])
    for m in e.members:  # the consents the rows gave (a member's own decisions are not here)
        for c in m.consents:
            await uow.facts.record_consent(
                m.member_id, c.purpose, c.granted, moment_of(c, "changed_at") or at
            )
    await recompute(uow, [m.member_id for m in e.members], app.clock())


async def member_tags_changed(
    _app: Insights, uow: InsightsUnitOfWork, e: identity_pb.MemberTagsChanged
) -> None:
    """The member's tags as identity keeps them (a merge's survivor: with the absorbed
    member's, as identity unions them)."""
    await uow.facts.record_tags(e.member_id, list(e.tags))


async def legacy_orders_imported(
    app: Insights, uow: InsightsUnitOfWork, e: identity_pb.LegacyOrdersImported
) -> None:
    """Past orders imported as activity (a REPLAY import's orders arrive as points' earns)."""
    if e.mode == order_import_pb2.ORDER_IMPORT_MODE_REPLAY:
        return
    await uow.facts.record_activity(
        [
            ActivityFact(
                o.member_id,
                crossunit.ORDER,
                o.order_id,
                e.unit,
                moment(o.occurred_at, "occurred_at"),
                Decimal(o.amount.amount or "0"),
                o.amount.currency_code,
            )
            for o in e.orders
        ]
    )
    await recompute(uow, [o.member_id for o in e.orders], app.clock())


async def consent_changed(
    app: Insights, uow: InsightsUnitOfWork, e: identity_pb.ConsentChanged
) -> None:
    await uow.facts.record_consent(
        e.member_id, e.purpose, e.granted, moment(e.changed_at, "changed_at")
    )
    await recompute(uow, [e.member_id], app.clock())


async def profile_changed(
    app: Insights, uow: InsightsUnitOfWork, e: identity_pb.ProfileChanged
) -> None:
    """Only the birthday's month is kept (for targeting by birthday month)."""
    at = moment_of(e, "changed_at") or app.clock()
    if 1 <= e.birthday_month <= 12:
        await uow.facts.record_birthdays([(e.member_id, e.birthday_month, at)])
    elif "birthday" in e.changed_fields:
        await uow.facts.forget_birthday(e.member_id)
    else:
        return
    await recompute(uow, [e.member_id], app.clock())


# --- tiers ----------------------------------------------------------------------------------


async def tier_changed(app: Insights, uow: InsightsUnitOfWork, e: tiers_pb.TierChanged) -> None:
    await uow.facts.record_tier_change(
        e.member_id, moment(e.effective_at, "effective_at"), e.from_tier, e.to_tier, e.reason
    )
    await recompute(uow, [e.member_id], app.clock())


# --- benefits -------------------------------------------------------------------------------


async def benefit_consumed(
    app: Insights, uow: InsightsUnitOfWork, e: benefits_pb.BenefitConsumed
) -> None:
    at = moment(e.occurred_at, "occurred_at")
    await uow.facts.record_benefit_fact(
        e.member_id, "consumed", e.consumption_id, e.benefit_code, e.unit, at
    )
    await uow.facts.record_activity(
        [
            ActivityFact(
                e.member_id, crossunit.CONSUMPTION, e.consumption_id, e.unit, at, Decimal(0), ""
            )
        ]
    )
    await recompute(uow, [e.member_id], app.clock())


async def benefit_released(
    app: Insights, uow: InsightsUnitOfWork, e: benefits_pb.BenefitReleased
) -> None:
    at = moment(e.occurred_at, "occurred_at")
    await uow.facts.record_benefit_fact(
        e.member_id, "released", e.consumption_id, e.benefit_code, e.unit, at
    )
    await uow.facts.forget_activity(e.member_id, crossunit.CONSUMPTION, e.consumption_id)
    await recompute(uow, [e.member_id], app.clock())


async def coupon_issued(
    app: Insights, uow: InsightsUnitOfWork, e: benefits_pb.CouponIssued
) -> None:
    await uow.facts.record_benefit_fact(
        e.member_id,
        "coupon_issued",
        e.code,
        e.template_code,
        "",
        moment(e.occurred_at, "occurred_at"),
    )
    await recompute(uow, [e.member_id], app.clock())


async def coupon_claimed(
    app: Insights, uow: InsightsUnitOfWork, e: benefits_pb.CouponClaimed
) -> None:
    """A coupon the member claimed of an offer: its own pick of the template, a use of it for
    the personalised offers (adapters/offers.py). Its CouponIssued comes too (held)."""
    await uow.facts.record_benefit_fact(
        e.member_id,
        "coupon_claimed",
        e.code,
        e.template_code,
        e.issuer_unit,
        moment(e.occurred_at, "occurred_at"),
    )
    await recompute(uow, [e.member_id], app.clock())


async def coupon_redeemed(
    app: Insights, uow: InsightsUnitOfWork, e: benefits_pb.CouponRedeemed
) -> None:
    at = moment(e.occurred_at, "occurred_at")
    fact_id = f"{e.code}:{e.order_id}"
    await uow.facts.record_benefit_fact(
        e.member_id, "coupon_redeemed", fact_id, e.template_code, e.unit, at
    )
    await uow.facts.record_activity(
        [ActivityFact(e.member_id, crossunit.COUPON, fact_id, e.unit, at, Decimal(0), "")]
    )
    await recompute(uow, [e.member_id], app.clock())


async def coupon_released(
    app: Insights, uow: InsightsUnitOfWork, e: benefits_pb.CouponReleased
) -> None:
    fact_id = f"{e.code}:{e.order_id}"
    await uow.facts.record_benefit_fact(
        e.member_id,
        "coupon_released",
        fact_id,
        e.template_code,
        e.unit,
        moment(e.occurred_at, "occurred_at"),
    )
    await uow.facts.forget_activity(e.member_id, crossunit.COUPON, fact_id)
    await recompute(uow, [e.member_id], app.clock())


async def reward_redeemed(
    app: Insights, uow: InsightsUnitOfWork, e: benefits_pb.RewardRedeemed
) -> None:
    await uow.facts.record_benefit_fact(
        e.member_id,
        "reward_redeemed",
        e.redemption_id,
        e.reward_code,
        e.unit,
        moment(e.occurred_at, "occurred_at"),
    )
    await recompute(uow, [e.member_id], app.clock())


# --- engagement -----------------------------------------------------------------------------


async def journey_entered(
    _app: Insights, uow: InsightsUnitOfWork, e: engagement_pb.JourneyEntered
) -> None:
    await uow.facts.record_journey_entry(
        e.journey_id, e.member_id, moment(e.entered_at, "entered_at"), e.control, e.unit
    )


async def badge_earned(
    _app: Insights, uow: InsightsUnitOfWork, e: engagement_pb.BadgeEarned
) -> None:
    await uow.facts.add_badge(e.member_id, e.badge)


async def badge_revoked(
    _app: Insights, uow: InsightsUnitOfWork, e: engagement_pb.BadgeRevoked
) -> None:
    await uow.facts.remove_badge(e.member_id, e.badge)


def _batch(_app: Insights, uow: InsightsUnitOfWork) -> AbstractAsyncContextManager[None]:
    return batched(uow)


BATCH_SIZE = 500  # events a transaction at most (a fetch's worth)
BATCHED: Batched[Insights] = Batched(BATCH_SIZE, _batch)
# Identity's control events: each alone, in its place in the order (the batch split at it).
MEMBERS_BATCHED: Batched[Insights] = Batched(
    BATCH_SIZE,
    _batch,
    frozenset({identity_pb.MemberMerged, identity_pb.MemberUnmerged, identity_pb.MemberErased}),
)

TABLE: Sequence[Subscription[Insights]] = (
    Subscription(
        "insights-points",
        "points",
        {
            points_pb.LedgerPosted: ledger_posted,
            points_pb.PointsEarned: points_earned,
            points_pb.PointsReversed: points_reversed,
            points_pb.PointsRedeemed: points_redeemed,
            points_pb.ProgrammePublished: programme_published,
        },
        batched=BATCHED,
    ),
    Subscription(
        "insights-members",
        "identity",
        {
            **member_merges(
                members.on_member_merged, members.on_member_unmerged, members.on_member_erased
            ),
            identity_pb.MemberRegistered: member_registered,
            identity_pb.MembersImported: members_imported,
            identity_pb.ConsentChanged: consent_changed,
            identity_pb.ProfileChanged: profile_changed,
            identity_pb.MemberTagsChanged: member_tags_changed,
        },
        batched=MEMBERS_BATCHED,
    ),
    # Past orders apart, as tiers reads them: a long import never holds back merges and
    # erasures; chunks are independent facts.
    Subscription(
        "insights-orders",
        "identity",
        {identity_pb.LegacyOrdersImported: legacy_orders_imported},
        concurrency=4,
    ),
    Subscription("insights-tiers", "tiers", {tiers_pb.TierChanged: tier_changed}, batched=BATCHED),
    Subscription(
        "insights-benefits",
        "benefits",
        {
            benefits_pb.BenefitConsumed: benefit_consumed,
            benefits_pb.BenefitReleased: benefit_released,
            benefits_pb.CouponIssued: coupon_issued,
            benefits_pb.CouponClaimed: coupon_claimed,
            benefits_pb.CouponRedeemed: coupon_redeemed,
            benefits_pb.CouponReleased: coupon_released,
            benefits_pb.RewardRedeemed: reward_redeemed,
        },
        batched=BATCHED,
    ),
    Subscription(
        "insights-engagement",
        "engagement",
        {
            engagement_pb.JourneyEntered: journey_entered,
            engagement_pb.BadgeEarned: badge_earned,
            engagement_pb.BadgeRevoked: badge_revoked,
        },
        batched=BATCHED,
    ),
)


def consumers(app: Insights) -> list[EventConsumer]:
    return consumers_of(TABLE, app, app.uow, app.context.settings.event_namespace)
