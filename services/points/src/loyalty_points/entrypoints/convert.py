"""Protobuf <-> domain for the points service."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from loyalty.common.v1 import channel_pb2
from loyalty.points.v1 import points_service_pb2 as pb
from loyalty.points.v1 import programme_pb2
from loyalty_kit.errors import FieldViolation, InvalidArgument, Violations
from loyalty_kit.money import DEFAULT_BASE_CURRENCY, money, parse_currency
from loyalty_kit.resources import member_name
from loyalty_kit.timestamps import moment, moment_of
from loyalty_kit.timestamps import timestamp as ts
from loyalty_kit.validation import enum_violation

from loyalty_points.domain.activities import ActivityLimit, ActivityRule, Period, RecordedActivity
from loyalty_points.domain.ledger import LotRecord, LotStatus, Posting, PostingKind
from loyalty_points.domain.money import parse_amount, parse_factor
from loyalty_points.domain.programme import (
    Campaign,
    CurrencyRule,
    Earned,
    Line,
    PartnerRule,
    Programme,
    UnitRule,
)
from loyalty_points.service_layer.accounts import BalanceView

KINDS = {
    PostingKind.EARN: pb.POSTING_KIND_EARN,
    PostingKind.REDEEM: pb.POSTING_KIND_REDEEM,
    PostingKind.REVERSE: pb.POSTING_KIND_REVERSE,
    PostingKind.REDEMPTION_CANCEL: pb.POSTING_KIND_REDEMPTION_CANCEL,
    PostingKind.ADJUST: pb.POSTING_KIND_ADJUST,
    PostingKind.EXPIRE: pb.POSTING_KIND_EXPIRE,
    PostingKind.MERGE_IN: pb.POSTING_KIND_MERGE_IN,
    PostingKind.MERGE_OUT: pb.POSTING_KIND_MERGE_OUT,
    PostingKind.TRANSFER_OUT: pb.POSTING_KIND_TRANSFER_OUT,
    PostingKind.TRANSFER_IN: pb.POSTING_KIND_TRANSFER_IN,
    PostingKind.PARTNER_EXCHANGE_OUT: pb.POSTING_KIND_PARTNER_EXCHANGE_OUT,
    PostingKind.PARTNER_EXCHANGE_IN: pb.POSTING_KIND_PARTNER_EXCHANGE_IN,
    PostingKind.PARTNER_EXCHANGE_REVERSE: pb.POSTING_KIND_PARTNER_EXCHANGE_REVERSE,
    PostingKind.REFERRAL_BONUS: pb.POSTING_KIND_REFERRAL_BONUS,
    PostingKind.ERASURE_FORFEIT: pb.POSTING_KIND_ERASURE_FORFEIT,
    PostingKind.UNMERGE_OUT: pb.POSTING_KIND_UNMERGE_OUT,
    PostingKind.UNMERGE_IN: pb.POSTING_KIND_UNMERGE_IN,
    PostingKind.MIGRATION: pb.POSTING_KIND_MIGRATION,
    PostingKind.ACTIVITY: pb.POSTING_KIND_ACTIVITY,
}
PERIODS = {
    Period.DAY: programme_pb2.ACTIVITY_PERIOD_DAY,
    Period.WEEK: programme_pb2.ACTIVITY_PERIOD_WEEK,
    Period.MONTH: programme_pb2.ACTIVITY_PERIOD_MONTH,
    Period.EVER: programme_pb2.ACTIVITY_PERIOD_EVER,
}


def channel_name(channel: channel_pb2.Channel.ValueType) -> str:
    try:
        return str(channel_pb2.Channel.Name(channel))
    except ValueError:
        raise InvalidArgument.of([FieldViolation("channel", "unknown channel")]) from None


def lines_from(lines: Any) -> list[Line]:
    problems = Violations()
    result: list[Line] = []
    for index, line in enumerate(lines):
        try:
            amount = parse_amount(
                line.amount.currency_code, line.amount.amount, f"lines[{index}].amount"
            )
        except InvalidArgument as error:
            problems.items.extend(error.field_violations)
            continue
        if line.quantity < 0:
            problems.add(f"lines[{index}].quantity", "must not be negative")
        result.append(Line(line.line_id.strip(), amount))
    problems.raise_if_any()
    return result


def breakdown(data: dict[str, Any] | None) -> pb.EarnBreakdown:
    if not data:
        return pb.EarnBreakdown()
    currency = data["spend"]["currency"]
    base = data.get("base_spend")  # postings from before it was kept have none
    message = pb.EarnBreakdown(
        qualifying_spend=money(Decimal(data["spend"]["amount"]), currency),
        base_rate=data["base_rate"],
        multipliers=[
            pb.Factor(source=f["source"], multiplier=f["multiplier"]) for f in data["factors"]
        ],
        bonuses=[pb.Bonus(source=b["source"], points=b["points"]) for b in data["bonuses"]],
        exact_points=data["exact"],
        points=data["points"],
        lines=[pb.LinePoints(line_id=k, points=v) for k, v in data["lines"].items()],
    )
    if base:
        message.qualifying_spend_base.CopyFrom(money(Decimal(base["amount"]), base["currency"]))
    return message


def earned_breakdown(earned: Earned) -> pb.EarnBreakdown:
    return breakdown(earned.as_json())


def posting(p: Posting) -> pb.Posting:
    message = pb.Posting(
        name=f"{member_name(p.member_id)}/postings/{p.posting_id}",
        posting_id=p.posting_id,
        member_id=p.member_id,
        kind=KINDS[p.kind],
        points=p.points,
        pending=p.pending,
        unit=p.unit,
        channel=channel_pb2.Channel.Value(p.channel),
        order_id=p.order_id,
        occur_time=ts(p.occurred_at),
        post_time=ts(p.posted_at),
        programme_version=p.programme_version or 0,
        related_posting_id=p.related_posting_id or "",
        reason=p.reason,
        unrecovered_points=p.unrecovered_points,
    )
    if p.available_at and p.pending:
        message.available_time.CopyFrom(ts(p.available_at))
    if p.breakdown and p.kind is PostingKind.EARN:  # other kinds keep their own details there
        message.breakdown.CopyFrom(breakdown(p.breakdown))
    return message


LOT_STATES = {
    LotStatus.PENDING: pb.LOT_STATE_PENDING,
    LotStatus.OPEN: pb.LOT_STATE_OPEN,
    LotStatus.EXPIRED: pb.LOT_STATE_EXPIRED,
    LotStatus.CANCELLED: pb.LOT_STATE_CANCELLED,
}


def lot(record: LotRecord) -> pb.Lot:
    held = record.lot
    message = pb.Lot(
        name=f"{member_name(record.member_id)}/lots/{held.lot_id}",
        lot_id=held.lot_id,
        posting_id=held.posting_id,
        unit=held.earned_unit,
        points=record.points,
        remaining_points=held.remaining,
        state=LOT_STATES[held.status],
        earn_time=ts(held.earned_at),
    )
    if held.available_at is not None:
        message.available_time.CopyFrom(ts(held.available_at))
    if held.expires_at is not None:
        message.expire_time.CopyFrom(ts(held.expires_at))
    return message


def balance(view: BalanceView) -> pb.Balance:
    return pb.Balance(
        available=view.account.available,
        pending=view.account.pending,
        expiring_soon=view.expiring_soon,
        expiring_soon_until=ts(view.until),
        lifetime_earned=view.account.lifetime_earned,
        tier=view.account.tier,
    )


# --- programme ----------------------------------------------------------------------------------
def programme_from(message: programme_pb2.Programme, now: datetime) -> Programme:
    problems = Violations()

    def factor(text: str, field: str) -> Decimal:
        try:
            return parse_factor(text, field)
        except InvalidArgument as error:
            problems.items.extend(error.field_violations)
            return Decimal(1)

    currencies = {}
    for i, cur in enumerate(message.currencies):
        try:
            parse_currency(cur.currency_code, f"programme.currencies[{i}].currency_code")
        except InvalidArgument as error:  # its minor units would be unknown
            problems.items.extend(error.field_violations)
        currencies[cur.currency_code] = CurrencyRule(
            cur.currency_code,
            factor(cur.base_rate, f"programme.currencies[{i}].base_rate"),
            factor(cur.point_value, f"programme.currencies[{i}].point_value"),
            factor(cur.base_currency_rate, f"programme.currencies[{i}].base_currency_rate"),
        )
    units = {}
    for i, u in enumerate(message.units):
        if u.unit in units:
            problems.add(f"programme.units[{i}].unit", "given twice")
        units[u.unit] = UnitRule(
            u.unit,
            factor(u.multiplier, f"programme.units[{i}].multiplier"),
            u.pending_days,
            (
                factor(u.legacy_points_per_point, f"programme.units[{i}].legacy_points_per_point")
                if u.legacy_points_per_point
                else None
            ),
        )
    tiers = {
        t.tier: factor(t.multiplier, f"programme.tiers[{i}].multiplier")
        for i, t in enumerate(message.tiers)
    }
    campaigns = []
    for i, rule in enumerate(message.campaigns):
        c = rule
        effect = c.WhichOneof("effect")
        if enum_violation(
            programme_pb2.Stacking.values(), c.stacking, "stacking", unspecified_ok=False
        ):
            problems.add(f"programme.campaigns[{i}].stacking", "EXCLUSIVE or COMBINABLE")
        campaigns.append(
            Campaign(
                code=c.code,
                name=c.name,
                start=moment(c.start_time, f"programme.campaigns[{i}].start_time"),
                end=moment(c.end_time, f"programme.campaigns[{i}].end_time"),
                units=tuple(c.units),
                tiers=tuple(c.tiers),
                multiplier=(
                    factor(c.multiplier, f"programme.campaigns[{i}].multiplier")
                    if effect == "multiplier"
                    else None
                ),
                bonus_points=c.bonus_points if effect == "bonus_points" else 0,
                exclusive=c.stacking == programme_pb2.STACKING_EXCLUSIVE,
                priority=c.priority,
                badges=tuple(c.badges),
            )
        )
    partners = {}
    for i, partner in enumerate(message.partners):
        if partner.partner in partners:
            problems.add(f"programme.partners[{i}].partner", "given twice")
        partners[partner.partner] = PartnerRule(
            partner.partner,
            partner.points_per_partner_unit,
            partner.points_per_partner_unit_in,
            partner.min_points,
            partner.max_points_per_day,
        )
    activities = activity_rules_from(message.activities, problems)
    problems.raise_if_any()
    return Programme(
        version=0,
        effective_from=moment_of(message, "effective_from", "programme.effective_from") or now,
        currencies=currencies,
        units=units,
        tiers=tiers,
        expiry_months=message.expiry.months_after_earning,
        campaigns=campaigns,
        time_zone=message.time_zone or "Asia/Shanghai",
        base_currency=message.base_currency_code or DEFAULT_BASE_CURRENCY,
        transfer_max_per_transfer=message.transfer.max_points_per_transfer,
        transfer_max_per_day=message.transfer.max_points_per_day,
        partners=partners,
        referrer_points=message.referral.referrer_points,
        referee_points=message.referral.referee_points,
        activities=activities,
    )


def activity_rules_from(
    rules: Sequence[programme_pb2.ActivityRule], problems: Violations
) -> list[ActivityRule]:
    periods = {v: k for k, v in PERIODS.items()}
    found = []
    for i, r in enumerate(rules):
        limits = []
        for n, limit in enumerate(r.limits):
            if limit.period not in periods:
                problems.add(
                    f"programme.activities[{i}].limits[{n}].period", "DAY, WEEK, MONTH or EVER"
                )
                continue
            limits.append(
                ActivityLimit(
                    periods[limit.period], limit.max_awards, limit.per_unit, limit.per_attribute
                )
            )
        found.append(ActivityRule(r.activity_type, r.points, r.unit, r.funding_unit, tuple(limits)))
    return found


def activity_rule_message(rule: ActivityRule) -> programme_pb2.ActivityRule:
    return programme_pb2.ActivityRule(
        activity_type=rule.activity_type,
        unit=rule.unit,
        points=rule.points,
        funding_unit=rule.funding_unit,
        limits=[
            programme_pb2.ActivityLimit(
                period=PERIODS[lim.period],
                max_awards=lim.max_awards,
                per_unit=lim.per_unit,
                per_attribute=lim.per_attribute,
            )
            for lim in rule.limits
        ],
    )


def activity(a: RecordedActivity) -> pb.Activity:
    return pb.Activity(
        name=f"{member_name(a.member_id)}/activities/{a.unit}:{a.activity_id}",
        member_id=a.member_id,
        unit=a.unit,
        activity_type=a.activity_type,
        activity_id=a.activity_id,
        occur_time=ts(a.occurred_at),
        attributes=a.attributes,
        points=a.points,
        funding_unit=a.funding_unit,
        posting_id=a.posting_id,
        limit_reason=a.limit_reason,
        limit=a.limit,
        programme_version=a.programme_version,
        record_time=ts(a.recorded_at),
    )


def programme_message(p: Programme) -> programme_pb2.Programme:
    message = programme_pb2.Programme(
        version=p.version,
        effective_from=ts(p.effective_from),
        currencies=[
            programme_pb2.CurrencyRule(
                currency_code=c.code,
                base_rate=str(c.base_rate),
                point_value=str(c.point_value),
                base_currency_rate=str(c.base_currency_rate),
            )
            for c in p.currencies.values()
        ],
        units=[
            programme_pb2.UnitRule(
                unit=u.unit,
                multiplier=str(u.multiplier),
                pending_days=u.pending_days,
                legacy_points_per_point=(
                    str(u.legacy_points_per_point) if u.legacy_points_per_point is not None else ""
                ),
            )
            for u in p.units.values()
        ],
        tiers=[programme_pb2.TierRule(tier=t, multiplier=str(m)) for t, m in p.tiers.items()],
        expiry=programme_pb2.ExpiryPolicy(months_after_earning=p.expiry_months),
        time_zone=p.time_zone,
        base_currency_code=p.base_currency,
        transfer=programme_pb2.TransferPolicy(
            max_points_per_transfer=p.transfer_max_per_transfer,
            max_points_per_day=p.transfer_max_per_day,
        ),
        partners=[
            programme_pb2.PartnerRule(
                partner=r.partner,
                points_per_partner_unit=r.points_per_unit_out,
                points_per_partner_unit_in=r.points_per_unit_in,
                min_points=r.min_points,
                max_points_per_day=r.max_points_per_day,
            )
            for r in p.partners.values()
        ],
        referral=programme_pb2.ReferralPolicy(
            referrer_points=p.referrer_points, referee_points=p.referee_points
        ),
        activities=[activity_rule_message(r) for r in p.activities],
    )
    for c in p.campaigns:
        campaign = programme_pb2.Campaign(
            code=c.code,
            name=c.name,
            start_time=ts(c.start),
            end_time=ts(c.end),
            units=list(c.units),
            tiers=list(c.tiers),
            badges=list(c.badges),
            stacking=(
                programme_pb2.STACKING_EXCLUSIVE
                if c.exclusive
                else programme_pb2.STACKING_COMBINABLE
            ),
            priority=c.priority,
        )
        if c.multiplier is not None:
            campaign.multiplier = str(c.multiplier)
        else:
            campaign.bonus_points = c.bonus_points
        message.campaigns.append(campaign)
    return message
