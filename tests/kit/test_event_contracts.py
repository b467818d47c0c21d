"""Every domain event of every service as the contract message its outbox publishes, field by
field: what consumers in other services read must not change when the mapping's code does.

Each service lists a sample of every event class it declares with the message it must become,
written out here (not computed by the code under test); one sample of each class sets every
contract field, with values distinct enough that a field dropped, swapped or converted
differently changes the bytes the outbox writes."""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import ModuleType
from typing import Any

import pytest
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from loyalty.benefits.v1 import events_pb2 as benefits_pb
from loyalty.common.v1.channel_pb2 import CHANNEL_POS
from loyalty.common.v1.money_pb2 import Money
from loyalty.identity.v1 import events_pb2 as identity_pb
from loyalty.identity.v1 import order_import_pb2
from loyalty.points.v1 import events_pb2 as points_pb
from loyalty.points.v1 import points_service_pb2
from loyalty.tiers.v1 import events_pb2 as tiers_pb
from loyalty_benefits.adapters.events import CONTRACT as BENEFITS_CONTRACT
from loyalty_benefits.adapters.events import to_message as benefits_message
from loyalty_benefits.domain import events as benefits_events
from loyalty_identity.adapters.events import CONTRACT as IDENTITY_CONTRACT
from loyalty_identity.adapters.events import to_message as identity_message
from loyalty_identity.domain import events as identity_events
from loyalty_identity.domain.member import ConsentPurpose
from loyalty_identity.domain.member_import import ImportedMember
from loyalty_identity.domain.order_import import ImportedOrder, OrderImportMode
from loyalty_kit.contract import EventContract
from loyalty_kit.money import Amount
from loyalty_points.adapters.events import CONTRACT as POINTS_CONTRACT
from loyalty_points.adapters.events import to_message as points_message
from loyalty_points.domain import events as points_events
from loyalty_points.domain.ledger import PostingKind
from loyalty_tiers.adapters.events import CONTRACT as TIERS_CONTRACT
from loyalty_tiers.adapters.events import to_message as tiers_message
from loyalty_tiers.domain import events as tiers_events

# Samples' moments: T0 plus whole hours, with a fraction of a second so nanos are carried too.
T0 = datetime(2026, 3, 2, 10, 0, 0, 250_000, tzinfo=UTC)
T0_SECONDS = 1_772_445_600  # T0 written out, not computed by the code under test
T0_NANOS = 250_000_000

Sample = tuple[object, Message]


def at(hours: int) -> datetime:
    return T0 + timedelta(hours=hours)


def stamp(hours: int) -> Timestamp:
    """`at(hours)` as the contract carries it."""
    return Timestamp(seconds=T0_SECONDS + 3600 * hours, nanos=T0_NANOS)


POINTS: list[Sample] = [
    (
        points_events.ProgrammePublished(7, ("shop", "web"), at(1), "CNY", "0.01"),
        points_pb.ProgrammePublished(
            version=7,
            units=["shop", "web"],
            effective_from=stamp(1),
            base_currency_code="CNY",
            point_value="0.01",
        ),
    ),
    (
        points_events.PointsEarned(
            "m-1",
            "post-1",
            "shop",
            "ord-1",
            Amount("USD", Decimal("12.5")),
            Amount("CNY", Decimal("90")),
            125,
            True,
            at(2),
        ),
        points_pb.PointsEarned(
            member_id="m-1",
            posting_id="post-1",
            unit="shop",
            order_id="ord-1",
            qualifying_spend=Money(currency_code="USD", amount="12.50"),
            qualifying_spend_base=Money(currency_code="CNY", amount="90.00"),
            points=125,
            pending=True,
            occurred_at=stamp(2),
        ),
    ),
    (
        points_events.PointsReversed(
            "m-2", "post-2", "post-1", "web", "ord-2", Amount("JPY", Decimal("300")), -30, at(3)
        ),
        points_pb.PointsReversed(
            member_id="m-2",
            posting_id="post-2",
            earn_posting_id="post-1",
            unit="web",
            order_id="ord-2",
            qualifying_spend_base=Money(currency_code="JPY", amount="300"),
            points=-30,
            occurred_at=stamp(3),
        ),
    ),
    (
        points_events.PointsRedeemed("m-3", "post-3", "app", -40, at(4)),
        points_pb.PointsRedeemed(
            member_id="m-3", posting_id="post-3", unit="app", points=-40, occurred_at=stamp(4)
        ),
    ),
    (
        points_events.RedemptionCancelled("m-4", "post-4", "post-3", 40, at(5)),
        points_pb.RedemptionCancelled(
            member_id="m-4",
            posting_id="post-4",
            redemption_posting_id="post-3",
            points=40,
            occurred_at=stamp(5),
        ),
    ),
    (
        points_events.PointsExpired("m-5", "post-5", -50, at(6)),
        points_pb.PointsExpired(
            member_id="m-5", posting_id="post-5", points=-50, occurred_at=stamp(6)
        ),
    ),
    (
        points_events.PendingPointsActivated("m-6", "post-6", 60, at(7)),
        points_pb.PendingPointsActivated(
            member_id="m-6", posting_id="post-6", points=60, activated_at=stamp(7)
        ),
    ),
    (
        points_events.PointsAdjusted("m-7", "post-7", "pos", 70, at(8)),
        points_pb.PointsAdjusted(
            member_id="m-7", posting_id="post-7", unit="pos", points=70, occurred_at=stamp(8)
        ),
    ),
    (
        points_events.PointsTransferred("m-8", "m-9", "post-8", 80, at(9)),
        points_pb.PointsTransferred(
            from_member_id="m-8",
            to_member_id="m-9",
            posting_id="post-8",
            points=80,
            occurred_at=stamp(9),
        ),
    ),
    (
        points_events.PartnerExchanged("m-10", "post-10", "airline", -100, 33, at(10)),
        points_pb.PartnerExchanged(
            member_id="m-10",
            posting_id="post-10",
            partner="airline",
            points=-100,
            partner_units=33,
            occurred_at=stamp(10),
        ),
    ),
    (
        points_events.ReferralRewarded("m-11", "m-12", 110, 120, at(11)),
        points_pb.ReferralRewarded(
            referrer_member_id="m-11",
            referee_member_id="m-12",
            referrer_points=110,
            referee_points=120,
            occurred_at=stamp(11),
        ),
    ),
    (
        points_events.ActivityRecorded(
            "m-15",
            "cinema",
            "cinema:trailer_watched",
            "act-15",
            at(15),
            {"trailer": "t-9", "screen": "3"},
            5,
            "group",
            "post-15",
            "NO_RULE",  # every field set (not a real combination)
        ),
        points_pb.ActivityRecorded(
            member_id="m-15",
            unit="cinema",
            activity_type="cinema:trailer_watched",
            activity_id="act-15",
            occurred_at=stamp(15),
            attributes={"trailer": "t-9", "screen": "3"},
            points=5,
            funding_unit="group",
            posting_id="post-15",
            limit_reason="NO_RULE",
        ),
    ),
    (
        points_events.ActivityRecorded(
            "m-16", "mall", "review", "act-16", at(16), {}, 0, "mall", "", "LIMIT_REACHED"
        ),
        points_pb.ActivityRecorded(
            member_id="m-16",
            unit="mall",
            activity_type="review",
            activity_id="act-16",
            occurred_at=stamp(16),
            funding_unit="mall",
            limit_reason="LIMIT_REACHED",
        ),
    ),
    (
        points_events.PointsMigrated(
            "memberImports/imp-1",
            "mall",
            "10",
            (
                points_events.MigratedBalance("m-13", "post-13", 12_345, 1_234, at(13)),
                points_events.MigratedBalance("m-14", "post-14", 70, 7, None),
            ),
            at(12),
        ),
        points_pb.PointsMigrated(
            member_import="memberImports/imp-1",
            unit="mall",
            legacy_points_per_point="10",
            balances=[
                points_pb.MigratedBalance(
                    member_id="m-13",
                    posting_id="post-13",
                    legacy_points=12_345,
                    points=1_234,
                    expires_at=stamp(13),
                ),
                points_pb.MigratedBalance(
                    member_id="m-14", posting_id="post-14", legacy_points=70, points=7
                ),
            ],
            occurred_at=stamp(12),
        ),
    ),
    (
        points_events.LedgerPosted(
            "m-15",
            (
                points_events.LedgerPosting(
                    "post-15", PostingKind.REDEEM, "spa", -40, at(15), at(14)
                ),
            ),
            (
                points_events.LotMovement("post-15", "lot-1", "mall", "spa", -30, at(15), at(20)),
                points_events.LotMovement("post-15", "lot-2", "hotel", "spa", -10, at(15), None),
            ),
        ),
        points_pb.LedgerPosted(
            member_id="m-15",
            postings=[
                points_pb.LedgerPosting(
                    posting_id="post-15",
                    kind=points_service_pb2.POSTING_KIND_REDEEM,
                    unit="spa",
                    points=-40,
                    posted_at=stamp(15),
                    occurred_at=stamp(14),
                )
            ],
            movements=[
                points_pb.LotMovement(
                    posting_id="post-15",
                    lot_id="lot-1",
                    earned_unit="mall",
                    unit="spa",
                    points=-30,
                    posted_at=stamp(15),
                    expires_at=stamp(20),
                ),
                points_pb.LotMovement(
                    posting_id="post-15",
                    lot_id="lot-2",
                    earned_unit="hotel",
                    unit="spa",
                    points=-10,
                    posted_at=stamp(15),
                ),
            ],
        ),
    ),
]


BENEFITS: list[Sample] = [
    (
        benefits_events.BenefitConsumed("m-1", "use-1", "lounge", "shop", "ord-1", at(1)),
        benefits_pb.BenefitConsumed(
            member_id="m-1",
            consumption_id="use-1",
            benefit_code="lounge",
            unit="shop",
            order_id="ord-1",
            occurred_at=stamp(1),
        ),
    ),
    (
        benefits_events.BenefitReleased("m-2", "use-2", "parking", "web", "order returned", at(2)),
        benefits_pb.BenefitReleased(
            member_id="m-2",
            consumption_id="use-2",
            benefit_code="parking",
            unit="web",
            reason="order returned",
            occurred_at=stamp(2),
        ),
    ),
    (
        benefits_events.CouponIssued("m-3", "C-3", "tpl-3", "birthday", at(30), at(3)),
        benefits_pb.CouponIssued(
            member_id="m-3",
            code="C-3",
            template_code="tpl-3",
            source="birthday",
            valid_until=stamp(30),
            occurred_at=stamp(3),
        ),
    ),
    (
        benefits_events.CouponRedeemed(
            "m-4", "C-4", "tpl-4", "app", "ord-4", Amount("KWD", Decimal("1.5")), at(4)
        ),
        benefits_pb.CouponRedeemed(
            member_id="m-4",
            code="C-4",
            template_code="tpl-4",
            unit="app",
            order_id="ord-4",
            discount=Money(currency_code="KWD", amount="1.500"),
            occurred_at=stamp(4),
        ),
    ),
    (
        benefits_events.CouponReleased(
            "m-5", "C-5", "tpl-5", "pos", "ord-5", "refund", Amount("CNY", Decimal("8")), at(5)
        ),
        benefits_pb.CouponReleased(
            member_id="m-5",
            code="C-5",
            template_code="tpl-5",
            unit="pos",
            order_id="ord-5",
            reason="refund",
            discount=Money(currency_code="CNY", amount="8.00"),
            occurred_at=stamp(5),
        ),
    ),
    (  # released before it was redeemed against an amount: no discount goes out
        benefits_events.CouponReleased(
            "m-6", "C-6", "tpl-6", "pos", "ord-6", "cancelled", None, at(6)
        ),
        benefits_pb.CouponReleased(
            member_id="m-6",
            code="C-6",
            template_code="tpl-6",
            unit="pos",
            order_id="ord-6",
            reason="cancelled",
            occurred_at=stamp(6),
        ),
    ),
    (
        benefits_events.RewardRedeemed("m-7", "red-7", "mug", "web", 700, "post-7", "C-7", at(7)),
        benefits_pb.RewardRedeemed(
            member_id="m-7",
            redemption_id="red-7",
            reward_code="mug",
            unit="web",
            points=700,
            points_posting_id="post-7",
            coupon_code="C-7",
            occurred_at=stamp(7),
        ),
    ),
    (
        benefits_events.CouponClaimed("m-8", "off-8", "C-8", "tpl-8", "mall", 3, at(8)),
        benefits_pb.CouponClaimed(
            member_id="m-8",
            offer_id="off-8",
            code="C-8",
            template_code="tpl-8",
            issuer_unit="mall",
            offer_claimed=3,
            occurred_at=stamp(8),
        ),
    ),
]


IDENTITY: list[Sample] = [
    (
        identity_events.MemberRegistered("m-1", "shop", "CHANNEL_POS", at(1)),
        identity_pb.MemberRegistered(
            member_id="m-1", unit="shop", channel=CHANNEL_POS, registered_at=stamp(1)
        ),
    ),
    (  # registered through no particular channel
        identity_events.MemberRegistered("m-2", "web", "", at(2)),
        identity_pb.MemberRegistered(member_id="m-2", unit="web", registered_at=stamp(2)),
    ),
    (
        identity_events.ConsentChanged(
            "m-3", ConsentPurpose.PERSONALISED_OFFERS, True, "app", at(3)
        ),
        identity_pb.ConsentChanged(
            member_id="m-3",
            purpose="CONSENT_PURPOSE_PERSONALISED_OFFERS",
            granted=True,
            source="app",
            changed_at=stamp(3),
        ),
    ),
    (
        identity_events.ProfileChanged(
            "m-4", ("birthday", "region", "time_zone"), date(1990, 7, 14), at(4), "Asia/Shanghai"
        ),
        identity_pb.ProfileChanged(
            member_id="m-4",
            changed_fields=["birthday", "region", "time_zone"],
            birthday_month=7,
            birthday_day=14,
            changed_at=stamp(4),
            time_zone="Asia/Shanghai",
        ),
    ),
    (  # the birthday was cleared: month and day go out as zero
        identity_events.ProfileChanged("m-5", ("birthday",), None, at(5)),
        identity_pb.ProfileChanged(
            member_id="m-5", changed_fields=["birthday"], changed_at=stamp(5)
        ),
    ),
    (
        identity_events.MemberMerged("m-6", "m-7", at(6)),
        identity_pb.MemberMerged(
            survivor_member_id="m-6", absorbed_member_id="m-7", merged_at=stamp(6)
        ),
    ),
    (
        identity_events.MemberUnmerged("m-8", "m-9", at(7), at(8)),
        identity_pb.MemberUnmerged(
            survivor_member_id="m-8",
            restored_member_id="m-9",
            merged_at=stamp(7),
            unmerged_at=stamp(8),
        ),
    ),
    (
        identity_events.MemberSuspended("m-10", at(9)),
        identity_pb.MemberSuspended(member_id="m-10", suspended_at=stamp(9)),
    ),
    (
        identity_events.MemberReactivated("m-11", at(10)),
        identity_pb.MemberReactivated(member_id="m-11", reactivated_at=stamp(10)),
    ),
    (
        identity_events.MemberErased("m-12", at(11)),
        identity_pb.MemberErased(member_id="m-12", erased_at=stamp(11)),
    ),
    (  # tags changed: every tag now, those added and removed
        identity_events.MemberTagsChanged(
            "m-12", ("bu:hotel", "bu:mall"), ("bu:hotel",), ("rfm:lost",), at(11)
        ),
        identity_pb.MemberTagsChanged(
            member_id="m-12",
            tags=["bu:hotel", "bu:mall"],
            added_tags=["bu:hotel"],
            removed_tags=["rfm:lost"],
            occurred_at=stamp(11),
        ),
    ),
    (  # a chunk of an import: a new member with a balance and a tier, one joined with neither
        identity_events.MembersImported(
            "memberImports/i-1",
            "mall",
            (
                ImportedMember(
                    "m-13", "ab12", True, 1500, at(12), "gold", at(13), 7, 14, ("bu:mall-active",)
                ),
                ImportedMember("m-14", "cd34", False, 0, None, "", None, 0, 0),
            ),
            at(14),
        ),
        identity_pb.MembersImported(
            member_import="memberImports/i-1",
            unit="mall",
            members=[
                identity_pb.ImportedMember(
                    member_id="m-13",
                    legacy_key="ab12",
                    created=True,
                    legacy_points=1500,
                    legacy_points_expire_at=stamp(12),
                    tier_code="gold",
                    tier_ends_at=stamp(13),
                    birthday_month=7,
                    birthday_day=14,
                    tags=["bu:mall-active"],
                ),
                identity_pb.ImportedMember(member_id="m-14", legacy_key="cd34"),
            ],
            imported_at=stamp(14),
        ),
    ),
    (  # a chunk of an order import: two past orders of two members
        identity_events.LegacyOrdersImported(
            "orderImports/o-1",
            "mall",
            OrderImportMode.ACTIVITY_ONLY,
            (
                ImportedOrder("m-15", "A-1", Amount("CNY", Decimal("1234.5")), at(15)),
                ImportedOrder("m-16", "A-2", Amount("CNY", Decimal("0")), at(16)),
            ),
            at(17),
        ),
        identity_pb.LegacyOrdersImported(
            order_import="orderImports/o-1",
            unit="mall",
            mode=order_import_pb2.ORDER_IMPORT_MODE_ACTIVITY_ONLY,
            orders=[
                identity_pb.ImportedOrder(
                    member_id="m-15",
                    order_id="A-1",
                    amount=Money(currency_code="CNY", amount="1234.50"),
                    occurred_at=stamp(15),
                ),
                identity_pb.ImportedOrder(
                    member_id="m-16",
                    order_id="A-2",
                    amount=Money(currency_code="CNY", amount="0.00"),
                    occurred_at=stamp(16),
                ),
            ],
            imported_at=stamp(17),
        ),
    ),
]


TIERS: list[Sample] = [
    (
        tiers_events.TierChanged("m-1", "silver", "gold", "granted", at(1), at(8760), at(720)),
        tiers_pb.TierChanged(
            member_id="m-1",
            from_tier="silver",
            to_tier="gold",
            reason="granted",
            effective_at=stamp(1),
            tier_year_end=stamp(8760),
            grant_end_time=stamp(720),
        ),
    ),
    (  # a tier the ladder gave, with no tier year and no grant behind it
        tiers_events.TierChanged("m-2", "gold", "silver", "requalified", at(2)),
        tiers_pb.TierChanged(
            member_id="m-2",
            from_tier="gold",
            to_tier="silver",
            reason="requalified",
            effective_at=stamp(2),
        ),
    ),
]


SERVICES: dict[str, tuple[ModuleType, Callable[[Any], Message], list[Sample]]] = {
    "points": (points_events, points_message, POINTS),
    "benefits": (benefits_events, benefits_message, BENEFITS),
    "identity": (identity_events, identity_message, IDENTITY),
    "tiers": (tiers_events, tiers_message, TIERS),
}
CONTRACTS: dict[str, EventContract] = {
    "points": POINTS_CONTRACT,
    "benefits": BENEFITS_CONTRACT,
    "identity": IDENTITY_CONTRACT,
    "tiers": TIERS_CONTRACT,
}


def event_classes(module: ModuleType) -> set[type]:
    """Every event a service declares: the dataclasses defined in its domain events module,
    but for the parts of events (a dataclass an event's fields hold, e.g. a chunk's balances,
    named in their annotations), which are checked as parts of their event's sample."""
    declared = {
        value
        for value in vars(module).values()
        if inspect.isclass(value)
        and dataclasses.is_dataclass(value)
        and value.__module__ == module.__name__
    }
    held = " ".join(str(field.type) for kind in declared for field in dataclasses.fields(kind))
    return {kind for kind in declared if not re.search(rf"\b{kind.__name__}\b", held)}


def every_field_set(message: Message) -> bool:
    """True when no field of `message` is left at its default (so leaving one out is seen)."""
    return len(message.ListFields()) == len(message.DESCRIPTOR.fields)


@pytest.mark.parametrize("service", SERVICES)
def test_every_event_of_every_service_maps_to_its_contract(service: str) -> None:
    """Checked from the classes, with no event at hand: a field added on one side only fails
    here, whether or not a sample has it yet."""
    module, contract = SERVICES[service][0], CONTRACTS[service]

    for kind in event_classes(module):
        contract.check(kind)
    assert set(contract.rules) <= event_classes(module)  # no rule left for an event that is gone


@pytest.mark.parametrize("service", SERVICES)
def test_every_event_has_a_sample_setting_every_contract_field(service: str) -> None:
    module, _, samples = SERVICES[service]

    assert {type(event) for event, _ in samples} == event_classes(module)
    for kind in event_classes(module):
        assert any(every_field_set(m) for e, m in samples if type(e) is kind), kind.__name__


@pytest.mark.parametrize(
    ("to_message", "event", "expected"),
    [
        pytest.param(to_message, event, expected, id=f"{service}-{type(event).__name__}")
        for service, (_, to_message, samples) in SERVICES.items()
        for event, expected in samples
    ],
)
def test_each_event_becomes_its_contract_message(
    to_message: Callable[[Any], Message], event: object, expected: Message
) -> None:
    message = to_message(event)

    assert message == expected
    assert message.SerializeToString(deterministic=True) == expected.SerializeToString(
        deterministic=True
    )
