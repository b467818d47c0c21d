"""Reads and coupon issuance of the suite as deployed (`python -m bench --deployed`), on the
suite, load processes and measurements of `bench/scenarios/deployed.py`.

`deployed-member-overview` drives the gateway's member overview (`GET
/v1/members/{id}/overview`: identity, points, tiers, benefits, engagement and insights asked in
parallel) with wrk and `bench/wrk/overview.lua`; `deployed-entitlements` and
`deployed-coupon-issuance` drive the benefits service over gRPC from `bench.deployed_load`.
"""

from __future__ import annotations

from pathlib import Path

from bench.context import BenchContext
from bench.registry import Measurement, scenario
from bench.scenarios.deployed import (
    RAW_POOL,
    _grpc_load,
    _http_load,
    _measurement,
    _more_than_one,
    _suite_groups,
    _url,
    drive_service,
    raw_processes,
    start_suite,
)

OVERVIEW_LUA = Path(__file__).resolve().parent.parent / "wrk" / "overview.lua"
TEMPLATE = "mall-voucher-100"  # the demo's coupon template of the mall (Huayue)


@scenario("deployed-member-overview", explicit=True)
async def deployed_member_overview(ctx: BenchContext) -> Measurement:
    """GET /v1/members/{id}/overview through the deployed gateway with `wrk` (a Lua script: a
    mall API client's bearer token, a random registered member); non-2xx answers fail the
    scenario. No raw ceiling yet: a bare front fanning out to stand-ins of the seven reads
    (identity, points, tiers, two of engagement, two of benefits, insights) is still to write.

    The gateway asks every part in parallel; identity's part is required, the others are only
    listed as unavailable when their service does not answer (a 200 still)."""
    suite = await start_suite(ctx)
    measured = await _http_load(
        ctx,
        _suite_groups(ctx, suite),
        suite.http,
        suite.members,
        suite.token,
        script=OVERVIEW_LUA,
    )
    return _measurement(
        ctx, measured, "overviews", members=len(suite.members), workers=_more_than_one(suite)
    )


@scenario("raw-deployed-entitlements", explicit=True)
async def raw_deployed_entitlements(ctx: BenchContext) -> Measurement:
    """Ceiling: bare grpc.aio + asyncpg ListEntitlements in a process of its own
    (`RawEntitlements` of `bench/scenarios/benefits.py`: the catalogue's version, the member's
    tier, the quota used; the service's domain functions) over the suite's benefits database."""
    suite = await start_suite(ctx)
    role = (
        "raw-benefits",
        "entitlements",
        {"database_url": _url(suite.settings, "benefits"), "pool": RAW_POOL},
    )
    async with raw_processes(ctx, [role]) as (ports, groups):
        measured = await _grpc_load(
            ctx,
            groups,
            {
                "kind": "entitlements",
                "target": f"127.0.0.1:{ports['raw-benefits']}",
                "members": suite.members,
            },
        )
    return _measurement(ctx, measured, "calls", statements_per_call=3)


@scenario("deployed-entitlements", ceiling="raw-deployed-entitlements", explicit=True)
async def deployed_entitlements(ctx: BenchContext) -> Measurement:
    """ListEntitlements of the deployed benefits service at the mall as a mall client, a random
    registered member, from a load process (grpc.aio, several connections); every answer must
    name the member's tier."""
    return await drive_service(ctx, await start_suite(ctx), "benefits", "entitlements", "calls")


@scenario("deployed-coupon-issuance", explicit=True)
async def deployed_coupon_issuance(ctx: BenchContext) -> Measurement:
    """IssueCoupons of the deployed benefits service as the mall's marketing: one coupon of the
    demo's `mall-voucher-100` to a random registered member, a new request id each, from a
    load process; every answer must hold that member's coupon of that template. Its
    CouponIssued events are consumed by the other services, whose CPU counts too. No raw
    ceiling yet: the service's issuing statements (idempotency, template, coupon, outbox) on
    bare asyncpg are still to write."""
    suite = await start_suite(ctx)
    return await drive_service(ctx, suite, "benefits", "issue", "coupons", template=TEMPLATE)
