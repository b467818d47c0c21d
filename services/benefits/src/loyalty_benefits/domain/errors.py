"""The benefits service's errors, in the domain's words. Each has a stable reason (ErrorInfo)."""

from __future__ import annotations

from datetime import datetime

from loyalty_kit.errors import (
    DomainError,
    ErrorKind,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
)
from loyalty_kit.errors import MemberNotActive as MemberNotActive


class NoCatalogue(FailedPrecondition):
    reason = "NO_CATALOGUE"

    def __init__(self) -> None:
        super().__init__("no benefits catalogue is in force: publish one with UpdateCatalogue")


class BenefitNotFound(NotFound):
    reason = "BENEFIT_NOT_FOUND"

    def __init__(self, code: str) -> None:
        super().__init__(f"no benefit {code!r} in the catalogue", metadata={"benefit": code})


class BenefitNotInForce(FailedPrecondition):
    reason = "BENEFIT_NOT_IN_FORCE"

    def __init__(self, code: str) -> None:
        super().__init__(f"benefit {code!r} is not in force now", metadata={"benefit": code})


class NotEntitled(FailedPrecondition):
    reason = "NOT_ENTITLED"

    def __init__(self, code: str, tier: str) -> None:
        super().__init__(
            f"a {tier or 'member without a tier'} member is not entitled to {code!r}",
            metadata={"benefit": code, "tier": tier},
        )


class QuotaExhausted(FailedPrecondition):
    reason = "QUOTA_EXHAUSTED"

    def __init__(self, code: str, quota: int, period_end: datetime | None) -> None:
        metadata = {"benefit": code, "quota": str(quota)}
        if period_end is not None:
            metadata["period_end"] = period_end.isoformat()
        super().__init__(
            f"the {quota} uses of {code!r} in this period are used up", metadata=metadata
        )


class BenefitOfAnotherUnit(PermissionDenied):
    reason = "BENEFIT_OF_ANOTHER_UNIT"

    def __init__(self, code: str, owner: str, unit: str) -> None:
        super().__init__(
            f"benefit {code!r} belongs to {owner}; {unit} cannot consume it",
            metadata={"benefit": code, "benefit_unit": owner, "unit": unit},
        )


class ConsumptionNotFound(NotFound):
    reason = "CONSUMPTION_NOT_FOUND"

    def __init__(self, consumption_id: str) -> None:
        super().__init__(
            f"consumption {consumption_id} was not found",
            metadata={"consumption_id": consumption_id},
        )


class ConsumptionAlreadyReleased(FailedPrecondition):
    reason = "CONSUMPTION_ALREADY_RELEASED"

    def __init__(self, consumption_id: str) -> None:
        super().__init__(
            f"consumption {consumption_id} was already released",
            metadata={"consumption_id": consumption_id},
        )


class CouponTemplateNotFound(NotFound):
    reason = "COUPON_TEMPLATE_NOT_FOUND"

    def __init__(self, code: str) -> None:
        super().__init__(f"no coupon template {code!r}", metadata={"template": code})


class CouponNotFound(NotFound):
    reason = "COUPON_NOT_FOUND"

    def __init__(self, code: str) -> None:
        super().__init__(f"the member has no coupon {code}", metadata={"code": code})


class CouponAlreadyRedeemed(FailedPrecondition):
    reason = "COUPON_ALREADY_REDEEMED"

    def __init__(self, code: str, order_id: str) -> None:
        super().__init__(
            f"coupon {code} was already redeemed (order {order_id})",
            metadata={"code": code, "order_id": order_id},
        )


class CouponNotRedeemed(FailedPrecondition):
    reason = "COUPON_NOT_REDEEMED"

    def __init__(self, code: str) -> None:
        super().__init__(
            f"coupon {code} is not redeemed: there is no redemption to release",
            metadata={"code": code},
        )


class CouponExpired(FailedPrecondition):
    reason = "COUPON_EXPIRED"

    def __init__(self, code: str, until: datetime) -> None:
        super().__init__(
            f"coupon {code} expired at {until.isoformat()}",
            metadata={"code": code, "valid_until": until.isoformat()},
        )


class CouponNotYetValid(FailedPrecondition):
    reason = "COUPON_NOT_YET_VALID"

    def __init__(self, code: str, since: datetime) -> None:
        super().__init__(
            f"coupon {code} is valid from {since.isoformat()}",
            metadata={"code": code, "valid_from": since.isoformat()},
        )


class CouponNotValidAtUnit(FailedPrecondition):
    reason = "COUPON_NOT_VALID_AT_UNIT"

    def __init__(self, code: str, coupon_unit: str, unit: str) -> None:
        super().__init__(
            f"coupon {code} is redeemable at {coupon_unit} only, not at {unit}",
            metadata={"code": code, "coupon_unit": coupon_unit, "unit": unit},
        )


class MinimumSpendNotMet(FailedPrecondition):
    reason = "MINIMUM_SPEND_NOT_MET"

    def __init__(self, code: str, minimum: str) -> None:
        super().__init__(
            f"coupon {code} needs an order of at least {minimum}",
            metadata={"code": code, "minimum_spend": minimum},
        )


class CurrencyMismatch(FailedPrecondition):
    reason = "CURRENCY_MISMATCH"

    def __init__(self, code: str, coupon_currency: str, currency: str) -> None:
        super().__init__(
            f"coupon {code} is in {coupon_currency}; the order is in {currency}",
            metadata={"code": code, "coupon_currency": coupon_currency, "currency": currency},
        )


class RewardNotFound(NotFound):
    reason = "REWARD_NOT_FOUND"

    def __init__(self, code: str) -> None:
        super().__init__(f"no reward {code!r} in the catalogue", metadata={"reward": code})


class OutOfStock(FailedPrecondition):
    reason = "OUT_OF_STOCK"

    def __init__(self, code: str) -> None:
        super().__init__(f"reward {code!r} is out of stock", metadata={"reward": code})


class RedemptionPending(DomainError):
    """The points service could not be reached or did not answer in time: whether it debited
    is not known yet. The redemption stays pending; a retry with the same request_id (or the
    recovery job) finishes it, never charging twice."""

    kind = ErrorKind.UNAVAILABLE
    reason = "REDEMPTION_PENDING"

    def __init__(self, redemption_id: str) -> None:
        super().__init__(
            f"redemption {redemption_id} is pending: retry with the same request_id",
            metadata={"redemption_id": redemption_id},
        )


class RedemptionFailed(FailedPrecondition):
    """A retry of a redemption that failed and was undone: the first answer, again."""

    def __init__(self, redemption_id: str, reason: str, message: str) -> None:
        super().__init__(
            f"redemption {redemption_id} failed and was undone: {message}",
            reason=reason,
            metadata={"redemption_id": redemption_id},
        )


class PointsRefused(DomainError):
    """The points service refused a debit for good (not enough points, member suspended...).
    Passed on to the caller as the points service said it: its code, reason and metadata."""

    def __init__(
        self, kind: ErrorKind, reason: str, message: str, metadata: dict[str, str]
    ) -> None:
        super().__init__(message, reason=reason, metadata={**metadata, "upstream": "points"})
        self.kind = kind


class PointsUnreachable(Exception):
    """The points service did not answer: whether the call took effect is unknown."""


class CouponIssuanceNotFound(NotFound):
    reason = "COUPON_ISSUANCE_NOT_FOUND"

    def __init__(self, issuance_id: str) -> None:
        super().__init__(
            f"no coupon issuance {issuance_id!r}", metadata={"issuance_id": issuance_id}
        )


class SegmentRefused(DomainError):
    """The identity service refused to list a segment for good (a malformed tag...): the
    issuance fails with its reason."""

    def __init__(self, reason: str, message: str, upstream: str = "identity") -> None:
        super().__init__(message, reason=reason, metadata={"upstream": upstream})


class SegmentUnreachable(Exception):
    """The service listing the segment (identity, insights) did not answer: the chunk is
    tried again later."""
