"""Who may call each of the gateway's own (composite) methods, over gRPC (the kit's
interceptor) and over HTTP (the same check before the composer runs); docs/access.md is
rendered from it. The routes to the other services are authorised by those services."""

from __future__ import annotations

from loyalty_kit.access import Rule, rule

ACCESS: dict[str, Rule] = {
    "GetMemberOverview": rule(
        unit_field="unit", note="the overview of the caller's own unit unless admin"
    ),
    "RecordPurchase": rule("earn", unit_field="unit"),
    "RedeemAtCheckout": rule("redeem", unit_field="unit"),
    "RefundPurchase": rule("earn", unit_field="unit"),
}
