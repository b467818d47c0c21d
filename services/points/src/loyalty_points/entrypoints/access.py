"""Who may call each PointsService method (checked by the kit's interceptor; docs/access.md is
rendered from it). Reads are open to any authenticated caller (a till reads a balance)."""

from __future__ import annotations

from loyalty_kit.access import ADMIN_AUDITED, ANY_CALLER, Rule, rule

_OWN = rule(member_field="member")
EARN = "earn"  # credit points: purchases, their refunds and confirmations, referrals
REDEEM = "redeem"  # spend points: redemptions and their cancellation, transfers out
ADJUST = "points:adjust"  # a service desk's goodwill and corrections

ACCESS: dict[str, Rule] = {
    "EarnPoints": rule(EARN, unit_field="unit"),
    "PreviewEarn": rule(EARN, unit_field="unit"),
    "RedeemPoints": rule(REDEEM, unit_field="unit"),
    "ReverseEarn": rule(EARN, unit_field="unit"),
    "CancelRedemption": rule(REDEEM, resource_unit="the redemption's unit"),
    "LookupRedemption": rule(REDEEM, resource_unit="the redemption's unit"),
    "AdjustPoints": rule(ADJUST, unit_field="unit", audited=True),
    "ConfirmOrder": rule(EARN, unit_field="unit"),
    # Reads of one member: any client, and the member's own token for that member only.
    "GetBalance": _OWN,
    "ListPostings": _OWN,
    "ListLots": _OWN,  # as the balance the lots make up
    "GetSettlement": rule("admin", note="every unit's figures: the group's finance"),
    "GetProgramme": ANY_CALLER,
    "UpdateProgramme": ADMIN_AUDITED,
    "TransferPoints": rule(REDEEM),
    "ExchangeToPartner": rule(REDEEM),
    "ExchangeFromPartner": rule(EARN),
    "ReversePartnerExchange": rule(REDEEM),
    "RecordReferral": rule(EARN),
    "GetReferralCode": rule(
        member_field="member", note="a member's own token for itself; made on the first ask"
    ),
    "ListReferrals": rule(member_field="member", note="the referred members' IDs masked"),
    "RecordActivity": rule(EARN, unit_field="unit"),
    "RunPendingActivation": ADMIN_AUDITED,
    "RunExpiry": ADMIN_AUDITED,
    "RepublishLedger": ADMIN_AUDITED,
}
