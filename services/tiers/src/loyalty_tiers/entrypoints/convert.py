"""Protobuf <-> the tiers domain: the ladder, grants, progress."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Any

from loyalty.tiers.v1 import tiers_service_pb2 as pb
from loyalty_kit.errors import FieldViolation, InvalidArgument, Violations
from loyalty_kit.money import DEFAULT_BASE_CURRENCY, format_money
from loyalty_kit.resources import member_id_of, member_name
from loyalty_kit.timestamps import moment_of, timestamp
from loyalty_kit.validation import enum_violation

from loyalty_tiers.domain.grants import Grant, GrantKind, GrantState
from loyalty_tiers.domain.ladder import (
    MONEY_METRICS,
    Ladder,
    Metric,
    Progress,
    TierRule,
    Totals,
    Window,
    decimal_of,
)
from loyalty_tiers.service_layer.queries import ExtraActivity

METRICS = {
    Metric.QUALIFYING_SPEND: pb.METRIC_QUALIFYING_SPEND,
    Metric.POINTS_EARNED: pb.METRIC_POINTS_EARNED,
    Metric.VISITS: pb.METRIC_VISITS,
    Metric.GROWTH_VALUE: pb.METRIC_GROWTH_VALUE,
}
WINDOWS = {
    Window.ROLLING_MONTHS: pb.WINDOW_ROLLING_MONTHS,
    Window.CALENDAR_YEAR: pb.WINDOW_CALENDAR_YEAR,
    Window.TIER_YEAR: pb.WINDOW_TIER_YEAR,
}
KINDS = {
    GrantKind.STATUS_MATCH: pb.GRANT_KIND_STATUS_MATCH,
    GrantKind.GIFT: pb.GRANT_KIND_GIFT,
    GrantKind.PAID_MEMBERSHIP: pb.GRANT_KIND_PAID_MEMBERSHIP,
}
STATES = {
    GrantState.ACTIVE: pb.GRANT_STATE_ACTIVE,
    GrantState.ENDED: pb.GRANT_STATE_ENDED,
    GrantState.REVOKED: pb.GRANT_STATE_REVOKED,
}
GRANTS = "tierGrants/"


def ladder_from(message: pb.Ladder) -> Ladder:
    problems = Violations()
    by_value = {v: m for m, v in METRICS.items()}
    currency = message.base_currency_code.strip() or DEFAULT_BASE_CURRENCY  # checked by validate

    def rule(items: Any, where: str) -> dict[Metric, Decimal]:
        found: dict[Metric, Decimal] = {}
        for j, threshold in enumerate(items):
            metric = by_value.get(threshold.metric)
            if metric is None:
                problems.add(
                    f"{where}[{j}].metric",
                    "QUALIFYING_SPEND, GROWTH_VALUE, POINTS_EARNED or VISITS",
                )
                continue
            money = currency if metric in MONEY_METRICS else None
            try:
                found[metric] = decimal_of(threshold.value, f"{where}[{j}].value", currency=money)
            except InvalidArgument as error:
                problems.items.extend(error.field_violations)
        return found

    def named(enum: Any, value: int, field: str) -> None:
        if violation := enum_violation(enum.values(), value, field):
            problems.items.append(violation)

    named(pb.Window, message.window, "ladder.window")
    named(pb.DowngradePolicy, message.downgrade_policy, "ladder.downgrade_policy")
    tiers: list[TierRule] = []
    for i, tier in enumerate(message.tiers):
        named(pb.Combine, tier.combine, f"ladder.tiers[{i}].combine")
        thresholds = rule(tier.thresholds, f"ladder.tiers[{i}].thresholds")
        retention = rule(tier.retention_thresholds, f"ladder.tiers[{i}].retention_thresholds")
        tiers.append(
            TierRule(
                code=tier.code.strip(),
                name_zh=tier.name_zh,
                name_en=tier.name_en,
                thresholds=thresholds,
                combine_all=tier.combine == pb.COMBINE_ALL,
                welcome_gift_code=tier.welcome_gift_code,
                retention=retention,
            )
        )
    weights: dict[str, Decimal] = {}
    for unit, weight in message.growth_weights.items():
        try:
            weights[unit.strip()] = decimal_of(
                weight, f"ladder.growth_weights[{unit}]", zero_ok=True
            )
        except InvalidArgument as error:
            problems.items.extend(error.field_violations)
    window = {v: w for w, v in WINDOWS.items()}.get(message.window, Window.ROLLING_MONTHS)
    problems.raise_if_any()
    return Ladder(
        version=0,
        tiers=tiers,
        window_months=message.window_months or 12,
        downgrade_to_supported=message.downgrade_policy == pb.DOWNGRADE_POLICY_TO_SUPPORTED,
        window=window,
        growth_weights=weights,
        grace_days=message.grace_days,
        time_zone=message.time_zone or "UTC",
        base_currency=currency,
    )


def shown(metric: Metric, value: Decimal, currency: str, rounding: str = ROUND_HALF_EVEN) -> str:
    """A metric's value in an answer: an amount of the base currency with exactly its minor
    digits (qualifying spend, growth value), or the number as counted (points, visits)."""
    if metric in MONEY_METRICS:
        return format_money(value, currency, rounding=rounding)
    return str(value)


def _thresholds(rule: dict[Metric, Decimal], currency: str) -> list[pb.Threshold]:
    return [pb.Threshold(metric=METRICS[m], value=shown(m, v, currency)) for m, v in rule.items()]


def ladder_message(ladder: Ladder) -> pb.Ladder:
    currency = ladder.base_currency
    return pb.Ladder(
        version=ladder.version,
        base_currency_code=currency,
        window_months=ladder.window_months,
        window=WINDOWS[ladder.window],
        growth_weights={u: str(w) for u, w in ladder.growth_weights.items()},
        grace_days=ladder.grace_days,
        time_zone=ladder.time_zone,
        tiers=[
            pb.Tier(
                code=t.code,
                name_zh=t.name_zh,
                name_en=t.name_en,
                thresholds=_thresholds(t.thresholds, currency),
                combine=pb.COMBINE_ALL if t.combine_all else pb.COMBINE_ANY,
                welcome_gift_code=t.welcome_gift_code,
                retention_thresholds=_thresholds(t.retention, currency),
            )
            for t in ladder.tiers
        ],
        downgrade_policy=(
            pb.DOWNGRADE_POLICY_TO_SUPPORTED
            if ladder.downgrade_to_supported
            else pb.DOWNGRADE_POLICY_ONE_LEVEL
        ),
    )


def progress_messages(items: Progress, currency: str) -> list[pb.Progress]:
    """Amounts are rounded so that they add up and never overstate: what the member has
    down, what is still missing up (a weighted growth value may have more digits)."""
    return [
        pb.Progress(
            metric=METRICS[metric],
            current=shown(metric, current, currency, ROUND_FLOOR),
            required=shown(metric, required, currency, ROUND_CEILING),
            remaining=shown(metric, max(required - current, Decimal(0)), currency, ROUND_CEILING),
        )
        for metric, current, required in items
    ]


def grant_name(grant: Grant) -> str:
    return f"{member_name(grant.member_id)}/{GRANTS}{grant.grant_id}"


def grant_of(name: str, field: str) -> tuple[str, str]:
    """'members/{m}/tierGrants/{g}' -> (member id, grant id)."""
    member, _, rest = name.partition(f"/{GRANTS}")
    member_id = member_id_of(member, field)
    try:
        return member_id, str(uuid.UUID(rest))
    except ValueError:
        raise InvalidArgument.of(
            [FieldViolation(field, "a grant name: members/{id}/tierGrants/{grant_id}")]
        ) from None


def grant_message(grant: Grant) -> pb.TierGrant:
    return pb.TierGrant(
        name=grant_name(grant),
        tier=grant.tier,
        kind=KINDS[grant.kind],
        reason=grant.reason,
        start_time=timestamp(grant.starts_at),
        end_time=timestamp(grant.ends_at),
        state=STATES[grant.state],
        unit=grant.unit,
        order_ids=grant.order_ids,
        end_reason=grant.end_reason,
    )


def kind_of(kind: int) -> GrantKind:
    if kind == pb.GRANT_KIND_STATUS_MATCH:
        return GrantKind.STATUS_MATCH
    if kind == pb.GRANT_KIND_GIFT:
        return GrantKind.GIFT
    raise InvalidArgument.of(
        [
            FieldViolation(
                "tier_grant.kind",
                "STATUS_MATCH or GIFT (paid memberships come from PurchaseMembership)",
            )
        ]
    )


def extra_activity(items: Iterable[pb.ExtraActivity]) -> list[ExtraActivity]:
    """(unit, totals, posting id, when: None for now) per extra activity."""
    problems = Violations()
    extra: list[ExtraActivity] = []
    for i, item in enumerate(items):
        where = f"activities[{i}]"
        spend = Decimal(0)
        if item.qualifying_spend:
            try:
                spend = decimal_of(item.qualifying_spend, f"{where}.qualifying_spend", zero_ok=True)
            except InvalidArgument as error:
                problems.items.extend(error.field_violations)
        if item.points < 0:
            problems.add(f"{where}.points", "must not be negative")
        if item.visits < 0:
            problems.add(f"{where}.visits", "must not be negative")
        when = None
        try:
            when = moment_of(item, "occur_time", f"{where}.occur_time")
        except InvalidArgument as error:
            problems.items.extend(error.field_violations)
        extra.append(
            (
                item.unit.strip(),
                Totals(spend, item.points, item.visits),
                item.posting_id.strip(),
                when,
            )
        )
    if not extra:
        problems.add("activities", "at least one")
    problems.raise_if_any()
    return extra
