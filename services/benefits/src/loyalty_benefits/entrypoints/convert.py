"""Protobuf <-> the benefits domain."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from loyalty.benefits.v1 import benefits_service_pb2 as pb
from loyalty.benefits.v1 import catalogue_pb2 as cat
from loyalty.common.v1 import money_pb2
from loyalty_kit.errors import FieldViolation, InvalidArgument, Violations
from loyalty_kit.money import Amount, parse_amount, parse_decimal
from loyalty_kit.pagination import read_token
from loyalty_kit.resources import TAG_HINT, is_tag, member_name
from loyalty_kit.timestamps import moment_of, timestamp

from loyalty_benefits.domain.catalogue import (
    Benefit,
    BenefitKind,
    Catalogue,
    CouponKind,
    CouponTemplate,
    QuotaPeriod,
    Reward,
    TierBenefits,
)
from loyalty_benefits.domain.coupons import Coupon, CouponState
from loyalty_benefits.domain.entitlements import Consumption, Entitlement
from loyalty_benefits.domain.issuances import (
    DEFAULT_CHUNK,
    MAX_CHUNK,
    CouponIssuance,
    IssuanceState,
)
from loyalty_benefits.domain.rewards import Redemption

T = TypeVar("T")

BENEFIT_KINDS = {
    BenefitKind.PERCENTAGE_DISCOUNT: cat.BENEFIT_KIND_PERCENTAGE_DISCOUNT,
    BenefitKind.AMOUNT_OFF: cat.BENEFIT_KIND_AMOUNT_OFF,
    BenefitKind.FREE_SERVICE: cat.BENEFIT_KIND_FREE_SERVICE,
    BenefitKind.GIFT: cat.BENEFIT_KIND_GIFT,
    BenefitKind.PRIORITY_ACCESS: cat.BENEFIT_KIND_PRIORITY_ACCESS,
}
QUOTA_PERIODS = {
    QuotaPeriod.NONE: cat.QUOTA_PERIOD_UNSPECIFIED,
    QuotaPeriod.TIER_YEAR: cat.QUOTA_PERIOD_TIER_YEAR,
    QuotaPeriod.CALENDAR_YEAR: cat.QUOTA_PERIOD_CALENDAR_YEAR,
    QuotaPeriod.MONTH: cat.QUOTA_PERIOD_MONTH,
}
COUPON_KINDS = {
    CouponKind.AMOUNT_OFF: cat.COUPON_KIND_AMOUNT_OFF,
    CouponKind.PERCENTAGE_OFF: cat.COUPON_KIND_PERCENTAGE_OFF,
}
COUPON_STATES = {
    CouponState.ISSUED: pb.COUPON_STATE_ISSUED,
    CouponState.REDEEMED: pb.COUPON_STATE_REDEEMED,
    CouponState.EXPIRED: pb.COUPON_STATE_EXPIRED,
}
ISSUANCE_STATES = {
    IssuanceState.RUNNING: pb.COUPON_ISSUANCE_STATE_RUNNING,
    IssuanceState.SUCCEEDED: pb.COUPON_ISSUANCE_STATE_SUCCEEDED,
    IssuanceState.FAILED: pb.COUPON_ISSUANCE_STATE_FAILED,
}
ISSUANCES = "couponIssuances"


def code_of(code: str, field: str) -> str:
    code = code.strip()
    if not code or len(code) > 64:
        raise InvalidArgument.of([FieldViolation(field, "a code, e.g. 'hotel-late-checkout'")])
    return code


def member_cursor(page_token: str, filters: dict[str, Any]) -> str | None:
    """The member a job's `page_token` carries on after (None: from the first)."""
    after = read_token(page_token, filters)
    if after is None:
        return None
    try:
        return str(uuid.UUID(after))
    except (ValueError, TypeError, AttributeError):
        refused = FieldViolation("page_token", "not a token this job gave")
        raise InvalidArgument.of([refused]) from None


def child_of(name: str, collection: str, field: str) -> tuple[str, str]:
    """'members/{id}/{collection}/{child}' -> (member resource name, child)."""
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != "members" or parts[2] != collection or not parts[3]:
        raise InvalidArgument.of(
            [FieldViolation(field, f"a resource name: members/{{id}}/{collection}/{{id}}")]
        )
    return f"members/{parts[1]}", parts[3]


def amount_of(message: money_pb2.Money, field: str) -> Amount:
    return parse_amount(message.currency_code, message.amount, field)


def _set_time(message: Any, name: str, value: datetime | None) -> None:
    if value is not None:
        getattr(message, name).CopyFrom(timestamp(value))


# --- catalogue: protobuf -> domain -----------------------------------------------------------


class _Reader:
    """Reads a catalogue message, collecting every bad field before refusing it."""

    def __init__(self) -> None:
        self.problems = Violations()

    def field(self, read: Callable[[], T], default: T) -> T:
        try:
            return read()
        except InvalidArgument as error:
            self.problems.items.extend(error.field_violations)
            return default

    def percentage(self, text: str, where: str) -> Decimal | None:
        if not text:
            return None
        return self.field(lambda: parse_decimal(text, where, example="10"), None)

    def time(self, message: Any, name: str, where: str) -> datetime | None:
        try:
            return moment_of(message, name, f"{where}.{name}")
        except InvalidArgument as error:
            self.problems.items.extend(error.field_violations)
            return None

    def amount(self, message: Any, name: str, where: str) -> Amount | None:
        if not message.HasField(name):
            return None
        return self.field(lambda: amount_of(getattr(message, name), where), None)

    def enum(self, mapping: Mapping[Any, Any], value: int, where: str, allowed: str) -> Any:
        found = next((k for k, v in mapping.items() if v == value), None)
        if found is None:
            self.problems.add(where, allowed)
        return found


def catalogue_from(message: cat.Catalogue) -> Catalogue:
    read = _Reader()
    benefits: list[Benefit] = []
    for i, b in enumerate(message.benefits):
        where = f"catalogue.benefits[{i}]"
        kind = read.enum(BENEFIT_KINDS, b.kind, f"{where}.kind", "a benefit kind")
        benefits.append(
            Benefit(
                code=b.code.strip(),
                name_zh=b.name_zh,
                name_en=b.name_en,
                kind=kind or BenefitKind.GIFT,
                percentage=read.percentage(b.percentage, f"{where}.percentage"),
                amount=read.amount(b, "amount", f"{where}.amount"),
                unit=b.unit.strip(),
                tiers=tuple(t.strip() for t in b.tiers),
                quota=b.quota,
                quota_period=QuotaPeriod.NONE
                if b.quota_period == cat.QUOTA_PERIOD_UNSPECIFIED
                else read.enum(QUOTA_PERIODS, b.quota_period, f"{where}.quota_period", "a period")
                or QuotaPeriod.NONE,
                valid_from=read.time(b, "valid_from", where),
                valid_until=read.time(b, "valid_until", where),
            )
        )
    templates: list[CouponTemplate] = []
    for i, t in enumerate(message.coupon_templates):
        where = f"catalogue.coupon_templates[{i}]"
        kind = read.enum(COUPON_KINDS, t.kind, f"{where}.kind", "AMOUNT_OFF or PERCENTAGE_OFF")
        templates.append(
            CouponTemplate(
                code=t.code.strip(),
                name_zh=t.name_zh,
                name_en=t.name_en,
                kind=kind or CouponKind.AMOUNT_OFF,
                amount=read.amount(t, "amount", f"{where}.amount"),
                percentage=read.percentage(t.percentage, f"{where}.percentage"),
                minimum_spend=read.amount(t, "minimum_spend", f"{where}.minimum_spend"),
                unit=t.unit.strip(),
                valid_from=read.time(t, "valid_from", where),
                valid_until=read.time(t, "valid_until", where),
                valid_days=t.valid_days,
            )
        )
    read.problems.raise_if_any()
    return Catalogue(
        version=0,
        time_zone=message.time_zone or "Asia/Shanghai",
        tiers=[
            TierBenefits(
                t.tier.strip(),
                t.welcome_coupon_template.strip(),
                t.birthday_coupon_template.strip(),
            )
            for t in message.tiers
        ],
        benefits=benefits,
        coupon_templates=templates,
        rewards=[
            Reward(
                r.code.strip(), r.name_zh, r.name_en, r.unit.strip(), r.points, r.coupon_template
            )
            for r in message.rewards
        ],
    )


# --- domain -> protobuf ----------------------------------------------------------------------


def benefit_message(b: Benefit) -> cat.Benefit:
    message = cat.Benefit(
        code=b.code,
        name_zh=b.name_zh,
        name_en=b.name_en,
        kind=BENEFIT_KINDS[b.kind],
        percentage="" if b.percentage is None else str(b.percentage),
        unit=b.unit,
        tiers=list(b.tiers),
        quota=b.quota,
        quota_period=QUOTA_PERIODS[b.quota_period],
    )
    if b.amount is not None:
        message.amount.CopyFrom(b.amount.message())
    _set_time(message, "valid_from", b.valid_from)
    _set_time(message, "valid_until", b.valid_until)
    return message


def template_message(t: CouponTemplate) -> cat.CouponTemplate:
    message = cat.CouponTemplate(
        code=t.code,
        name_zh=t.name_zh,
        name_en=t.name_en,
        kind=COUPON_KINDS[t.kind],
        percentage="" if t.percentage is None else str(t.percentage),
        unit=t.unit,
        valid_days=t.valid_days,
    )
    if t.amount is not None:
        message.amount.CopyFrom(t.amount.message())
    if t.minimum_spend is not None:
        message.minimum_spend.CopyFrom(t.minimum_spend.message())
    _set_time(message, "valid_from", t.valid_from)
    _set_time(message, "valid_until", t.valid_until)
    return message


def reward_message(r: Reward, available: int = 0) -> cat.Reward:
    return cat.Reward(
        code=r.code,
        name_zh=r.name_zh,
        name_en=r.name_en,
        unit=r.unit,
        points=r.points,
        coupon_template=r.coupon_template,
        available=available,
    )


def catalogue_message(c: Catalogue) -> cat.Catalogue:
    message = cat.Catalogue(
        version=c.version,
        time_zone=c.time_zone,
        tiers=[
            cat.TierBenefits(
                tier=t.tier,
                welcome_coupon_template=t.welcome_coupon_template,
                birthday_coupon_template=t.birthday_coupon_template,
            )
            for t in c.tiers
        ],
        benefits=[benefit_message(b) for b in c.benefits],
        coupon_templates=[template_message(t) for t in c.coupon_templates],
        rewards=[reward_message(r) for r in c.rewards],
    )
    _set_time(message, "create_time", c.created_at)
    return message


def entitlement_message(e: Entitlement) -> pb.Entitlement:
    message = pb.Entitlement(
        benefit=benefit_message(e.benefit),
        unlimited=e.unlimited,
        quota=e.benefit.quota,
        used=e.used,
        remaining=e.remaining,
    )
    _set_time(message, "period_end", e.period.end)
    return message


def consumption_message(c: Consumption) -> pb.Consumption:
    message = pb.Consumption(
        name=f"{member_name(c.member_id)}/consumptions/{c.consumption_id}",
        consumption_id=c.consumption_id,
        benefit_code=c.benefit_code,
        unit=c.unit,
        order_id=c.order_id,
        consume_time=timestamp(c.consumed_at),
    )
    _set_time(message, "release_time", c.released_at)
    return message


def coupon_message(c: Coupon, now: datetime) -> pb.Coupon:
    message = pb.Coupon(
        name=f"{member_name(c.member_id)}/coupons/{c.code}",
        code=c.code,
        template_code=c.template_code,
        name_zh=c.name_zh,
        name_en=c.name_en,
        kind=COUPON_KINDS[c.kind],
        percentage="" if c.percentage is None else str(c.percentage),
        unit=c.unit,
        valid_from=timestamp(c.valid_from),
        valid_until=timestamp(c.valid_until),
        state=COUPON_STATES[c.state_at(now)],
        source=c.source,
        issue_time=timestamp(c.issued_at),
        redeemed_unit=c.redeemed_unit,
        redeemed_order_id=c.redeemed_order_id,
    )
    for name, value in (
        ("amount", c.amount),
        ("minimum_spend", c.minimum_spend),
        ("discount", c.discount),
    ):
        if value is not None:
            getattr(message, name).CopyFrom(value.message())
    _set_time(message, "redeem_time", c.redeemed_at)
    return message


def coupon_state_of(value: int) -> CouponState | None:
    if value == pb.COUPON_STATE_UNSPECIFIED:
        return None
    for state, number in COUPON_STATES.items():
        if number == value:
            return state
    raise InvalidArgument.of([FieldViolation("state", "ISSUED, REDEEMED or EXPIRED")])


def issuance_state_of(value: int) -> IssuanceState | None:
    if value == pb.COUPON_ISSUANCE_STATE_UNSPECIFIED:
        return None
    for state, number in ISSUANCE_STATES.items():
        if number == value:
            return state
    raise InvalidArgument.of([FieldViolation("state", "RUNNING, SUCCEEDED or FAILED")])


def issuance_position(after: Any) -> tuple[datetime, str] | None:
    """The position a ListCouponIssuances page token carries: the last one's creation and ID."""
    if after is None:
        return None
    try:
        created, issuance_id = after
        position = (datetime.fromisoformat(created), str(uuid.UUID(issuance_id)))
    except (TypeError, ValueError, AttributeError):
        position = None
    if position is None or position[0].tzinfo is None:
        raise InvalidArgument.of([FieldViolation("page_token", "not a token this list gave")])
    return position


def uuid_of(text: str, field: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise InvalidArgument.of([FieldViolation(field, "ends with an ID it was given")]) from None


def reward_message_of(redemption: Redemption) -> cat.Reward:
    """A reward the catalogue no longer lists, as its redemption remembers it."""
    return cat.Reward(code=redemption.reward_code, unit=redemption.unit, points=redemption.points)


def issuance_request_of(
    request: pb.CreateCouponIssuanceRequest,
) -> tuple[str, str, str, int]:
    """The template, the tag or the segment (exactly one) and the chunk size of a new issuance;
    every bad field at once."""
    issuance = request.coupon_issuance
    violations: list[FieldViolation] = []
    template = issuance.template.strip()
    if not template or len(template) > 64:
        violations.append(
            FieldViolation("coupon_issuance.template", "a coupon template's code, required")
        )
    tag = issuance.tag.strip()
    segment = issuance.segment.strip()
    if segment and tag:
        violations.append(FieldViolation("coupon_issuance.segment", "a tag or a segment, not both"))
    elif segment:
        segment_id = segment.removeprefix("segments/")
        if segment_id == segment or not segment_id or "/" in segment_id or len(segment_id) > 64:
            violations.append(
                FieldViolation("coupon_issuance.segment", "a segment name: segments/{segment_id}")
            )
    elif not is_tag(tag):
        violations.append(FieldViolation("coupon_issuance.tag", TAG_HINT))
    if request.chunk_size < 0:
        violations.append(FieldViolation("chunk_size", "must not be negative"))
    if violations:
        raise InvalidArgument.of(violations)
    return template, tag, segment, min(request.chunk_size or DEFAULT_CHUNK, MAX_CHUNK)


def issuance_id_of(name: str, field: str = "name") -> str:
    prefix, _, issuance_id = name.partition("/")
    if prefix != ISSUANCES or not issuance_id:
        raise InvalidArgument.of(
            [FieldViolation(field, f"a resource name: {ISSUANCES}/{{issuance_id}}")]
        )
    return uuid_of(issuance_id, field)


def issuance_message(i: CouponIssuance) -> pb.CouponIssuance:
    message = pb.CouponIssuance(
        name=f"{ISSUANCES}/{i.issuance_id}",
        template=i.template_code,
        tag=i.tag,
        segment=i.segment,
        state=ISSUANCE_STATES[i.state],
        total_members=i.total_members,
        processed_members=i.processed_members,
        issued_coupons=i.issued_coupons,
        progress_percent=i.progress_percent,
        issuer_unit=i.issuer_unit,
        failure_reason=i.failure_reason,
        failure_message=i.failure_message,
    )
    _set_time(message, "create_time", i.created_at)
    _set_time(message, "update_time", i.updated_at)
    _set_time(message, "done_time", i.done_at)
    return message
