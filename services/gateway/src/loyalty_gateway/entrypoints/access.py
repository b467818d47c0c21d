"""Who may call each of the gateway's own (composite) methods, over gRPC (the kit's
interceptor) and over HTTP (the same check before the composer runs); docs/access.md is
rendered from it. The routes to the other services are authorised by those services.

A member's own channel (MeService) is for member tokens only: its requests name no member, the
token does; the services it calls check the member's token against their own rules again."""

from __future__ import annotations

from loyalty_kit.access import ADMIN_ONLY, Rule, rule
from loyalty_kit.caller import PERSONAL_DATA_READ
from loyalty_kit.scopes import SELF_READ, SELF_REDEEM, SELF_WRITE

MEMBER_READS = rule(SELF_READ, member_only=True)
MEMBER_WRITES = rule(SELF_WRITE, member_only=True)

ACCESS: dict[str, Rule] = {
    "GetMemberOverview": rule(
        unit_field="unit", note="the overview of the caller's own unit unless admin"
    ),
    "RecordPurchase": rule("earn", unit_field="unit"),
    "RedeemAtCheckout": rule("redeem", unit_field="unit"),
    "RefundPurchase": rule("earn", unit_field="unit"),
    "ExportMemberData": rule(
        PERSONAL_DATA_READ,
        SELF_WRITE,
        member_field="member",
        note="all of a member's data: identity's, points, tier, benefits",
        audited=True,
    ),
    "ListAuditEntries": ADMIN_ONLY,
    # MeService: a member's own channel.
    "GetMyProfile": MEMBER_READS,
    "UpdateMyProfile": MEMBER_WRITES,
    "GetMyAccount": MEMBER_READS,
    "ListMyPostings": MEMBER_READS,
    "ListMyLots": MEMBER_READS,
    "ListMyCoupons": MEMBER_READS,
    "ListMyEntitlements": MEMBER_READS,
    "ListMyTierHistory": MEMBER_READS,
    "RedeemMyReward": rule(SELF_REDEEM, member_only=True, note="pays with the member's points"),
    "ListMyConsents": MEMBER_READS,
    "SetMyConsents": MEMBER_WRITES,
    "ExportMyData": rule(
        SELF_WRITE, member_only=True, note="the member's whole data export", audited=True
    ),
    "GetMyMemberCode": MEMBER_READS,
    "RotateMyMemberCode": MEMBER_WRITES,
    "SignMeOutEverywhere": MEMBER_WRITES,
    "ListMyCouponOffers": MEMBER_READS,
    "ClaimMyCoupon": rule(
        SELF_REDEEM, member_only=True, note="a coupon of an offer, once per request id"
    ),
    "GetMyReferralCode": MEMBER_READS,
    "ListMyReferrals": MEMBER_READS,
    "RequestMyErasure": rule(
        SELF_WRITE, member_only=True, note="sends a confirmation code to the member's phone"
    ),
    "ConfirmMyErasure": rule(SELF_WRITE, member_only=True, note="with the code sent"),
    "CancelMyErasure": MEMBER_WRITES,
    "GetMyErasureRequest": MEMBER_READS,
}
