"""Who may call each BenefitsService and CouponOfferService method (checked by the kit's
interceptor; docs/access.md is rendered from it). Reads are open to any authenticated caller."""

from __future__ import annotations

from loyalty_kit.access import ADMIN_AUDITED, ANY_CALLER, Rule, rule
from loyalty_kit.scopes import COUPONS_ISSUE, SELF_REDEEM

# Reads of one member: any client, and the member's own token for that member only.
_OWN = rule(member_field="member")
ISSUE = COUPONS_ISSUE  # a unit's (or the group's) marketing
REDEEM = "redeem"  # spends the member's points

ACCESS: dict[str, Rule] = {
    "GetCatalogue": ANY_CALLER,
    "UpdateCatalogue": ADMIN_AUDITED,
    "ListEntitlements": _OWN,
    "ConsumeBenefit": rule(unit_field="unit"),
    "LookupConsumption": rule(resource_unit="the consumption's unit"),
    "ReleaseConsumption": rule(resource_unit="the consumption's unit"),
    "IssueCoupons": rule(ISSUE, resource_unit="the template's unit", audited=True),
    "CreateCouponIssuance": rule(ISSUE, resource_unit="the template's unit", audited=True),
    "GetCouponIssuance": rule(ISSUE, note="an issuance's progress is its issuers' business"),
    "ListCouponIssuances": rule(ISSUE, note="a unit lists the issuances it started; an admin, all"),
    "GetCoupon": ANY_CALLER,
    "ListCoupons": _OWN,
    "RedeemCoupon": rule(unit_field="unit"),
    "LookupCouponRedemption": rule(resource_unit="the redeeming unit"),
    "ReleaseCoupon": rule(resource_unit="the redeeming unit"),
    "ListRewards": ANY_CALLER,
    "RestockReward": rule(resource_unit="the reward's unit"),
    "RunBirthdayGifts": ADMIN_AUDITED,
    "RedeemReward": rule(
        REDEEM, SELF_REDEEM, member_field="member", note="spends the member's points"
    ),
    # CouponOfferService
    "CreateCouponOffer": rule(ISSUE, resource_unit="the template's unit", audited=True),
    "GetCouponOffer": _OWN,
    "ListCouponOffers": _OWN,
    "ClaimCoupon": rule(
        SELF_REDEEM,
        ISSUE,
        member_field="member",
        resource_unit="the offer's unit (a group offer: any unit's app)",
        note="a member's own token claims for itself; a unit's app for its members",
        audited=True,
    ),
}
