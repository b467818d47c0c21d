"""Coupons: issued from a template with the terms it had then, redeemed once, within their
validity, at an allowed unit; a redemption may be released (a cancelled checkout, a refunded
order), the coupon then usable again. Codes are unique and unguessable. Pure rules, no I/O."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from loyalty_kit.errors import FailedPrecondition
from loyalty_kit.money import Amount, floor_money

from loyalty_benefits.domain.catalogue import CouponKind, CouponTemplate
from loyalty_benefits.domain.errors import (
    CouponAlreadyRedeemed,
    CouponExpired,
    CouponNotRedeemed,
    CouponNotValidAtUnit,
    CouponNotYetValid,
    CurrencyMismatch,
    MinimumSpendNotMet,
)
from loyalty_benefits.domain.events import CouponIssued

# Crockford's base32 (no I, L, O, U: nothing to misread at a till). 16 characters: 80 random
# bits from the OS's CSPRNG, so codes cannot be guessed or enumerated.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 16
# 10 random bytes are 16 base32 digits: RFC 4648's encoder spells them, each digit is then
# re-spelt in Crockford's alphabet (one OS call per code, not one per character: bulk issuance
# makes 100,000 codes at a time).
_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", ALPHABET)


def new_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(CODE_LENGTH * 5 // 8)).decode().translate(_CROCKFORD)
    return "-".join(raw[i : i + 4] for i in range(0, CODE_LENGTH, 4))


class CouponState(StrEnum):
    ISSUED = "issued"
    REDEEMED = "redeemed"
    EXPIRED = "expired"  # never stored: an issued coupon past its validity


class TemplateExpired(FailedPrecondition):
    reason = "COUPON_TEMPLATE_EXPIRED"

    def __init__(self, code: str) -> None:
        super().__init__(
            f"coupons of template {code!r} can no longer be issued: its validity has ended",
            metadata={"template": code},
        )


@dataclass(frozen=True)
class CouponRedemption:
    """What a coupon's redemption was: when, where, for which order, and the discount."""

    redeemed_at: datetime
    unit: str
    order_id: str
    discount: Amount | None


@dataclass
class Coupon:
    code: str
    member_id: str
    template_code: str
    name_zh: str
    name_en: str
    kind: CouponKind
    amount: Amount | None
    percentage: Decimal | None
    minimum_spend: Amount | None
    unit: str
    valid_from: datetime
    valid_until: datetime
    source: str
    issued_at: datetime
    state: CouponState = CouponState.ISSUED
    redeemed_at: datetime | None = None
    redeemed_unit: str = ""
    redeemed_order_id: str = ""
    discount: Amount | None = None

    def issued(self, now: datetime) -> CouponIssued:
        """The event that announces this coupon, newly issued."""
        return CouponIssued(
            self.member_id, self.code, self.template_code, self.source, self.valid_until, now
        )

    def state_at(self, now: datetime) -> CouponState:
        if self.state is CouponState.ISSUED and now >= self.valid_until:
            return CouponState.EXPIRED
        return self.state

    def redeem(self, unit: str, order_id: str, order: Amount, now: datetime) -> Amount:
        """Redeem for an order: the discount, or the reason it cannot be."""
        if self.state is CouponState.REDEEMED:
            raise CouponAlreadyRedeemed(self.code, self.redeemed_order_id)
        if now >= self.valid_until:
            raise CouponExpired(self.code, self.valid_until)
        if now < self.valid_from:
            raise CouponNotYetValid(self.code, self.valid_from)
        if self.unit and self.unit != unit:
            raise CouponNotValidAtUnit(self.code, self.unit, unit)
        for terms in (self.amount, self.minimum_spend):
            if terms is not None and terms.currency != order.currency:
                raise CurrencyMismatch(self.code, terms.currency, order.currency)
        if self.minimum_spend is not None and order.value < self.minimum_spend.value:
            raise MinimumSpendNotMet(self.code, str(self.minimum_spend))
        if self.kind is CouponKind.AMOUNT_OFF:
            assert self.amount is not None
            value = min(self.amount.value, order.value)
        else:
            assert self.percentage is not None
            value = floor_money(order.value * self.percentage / 100, order.currency)
        self.state = CouponState.REDEEMED
        self.redeemed_at = now
        self.redeemed_unit = unit
        self.redeemed_order_id = order_id
        self.discount = Amount(order.currency, value)
        return self.discount

    def release(self) -> CouponRedemption:
        """Undo the redemption: the coupon is issued again (usable within its validity, expired
        if that has ended meanwhile). The redemption it had, or CouponNotRedeemed."""
        if self.state is not CouponState.REDEEMED or self.redeemed_at is None:
            raise CouponNotRedeemed(self.code)
        undone = CouponRedemption(
            self.redeemed_at, self.redeemed_unit, self.redeemed_order_id, self.discount
        )
        self.state = CouponState.ISSUED
        self.redeemed_at = None
        self.redeemed_unit = ""
        self.redeemed_order_id = ""
        self.discount = None
        return undone


def issuable_window(template: CouponTemplate, now: datetime) -> tuple[datetime, datetime]:
    """When a coupon issued now would be valid; TemplateExpired if it never would be."""
    valid_from, valid_until = template.window(now)
    if valid_until <= now or valid_until <= valid_from:
        raise TemplateExpired(template.code)
    return valid_from, valid_until


def issue(template: CouponTemplate, member_id: str, source: str, now: datetime) -> Coupon:
    valid_from, valid_until = issuable_window(template, now)
    return Coupon(
        code=new_code(),
        member_id=member_id,
        template_code=template.code,
        name_zh=template.name_zh,
        name_en=template.name_en,
        kind=template.kind,
        amount=template.amount,
        percentage=template.percentage,
        minimum_spend=template.minimum_spend,
        unit=template.unit,
        valid_from=valid_from,
        valid_until=valid_until,
        source=source,
        issued_at=now,
    )
