"""Who may call each TiersService method (checked by the kit's interceptor; docs/access.md is
rendered from it). Reads are open to any authenticated caller."""

from __future__ import annotations

from loyalty_kit.access import ADMIN_AUDITED, ANY_CALLER, Rule, rule

# Reads of one member: any client, and the member's own token for that member only.
_OWN = rule(member_field="member")
SELL = "membership"  # a unit's shop selling paid memberships
EARN = "earn"  # a till, which sells them at the counter too

ACCESS: dict[str, Rule] = {
    "GetLadder": ANY_CALLER,
    "UpdateLadder": ADMIN_AUDITED,
    "GetMemberTier": _OWN,
    "RunYearEnd": ADMIN_AUDITED,
    "ListTierHistory": _OWN,
    "PreviewMemberTier": _OWN,
    "GetTierDistribution": ANY_CALLER,
    "CreateTierGrant": ADMIN_AUDITED,
    "RevokeTierGrant": ADMIN_AUDITED,
    "ListTierGrants": _OWN,
    "PurchaseMembership": rule(SELL, EARN, unit_field="unit"),
    "RefundMembership": rule(SELL, EARN, unit_field="unit"),
    "RunGrantExpiry": ADMIN_AUDITED,
}
