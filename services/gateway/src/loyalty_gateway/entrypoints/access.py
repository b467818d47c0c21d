"""Who may call each of the gateway's own (composite) methods, over gRPC (the kit's
interceptor) and over HTTP (the same check before the composer runs); docs/access.md is
rendered from it. The routes to the other services are authorised by those services."""

from __future__ import annotations

from loyalty_kit.access import ADMIN_ONLY, Rule, rule
from loyalty_kit.caller import PERSONAL_DATA_READ
from loyalty_kit.scopes import SELF_WRITE

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
}
