"""`check`: loyalty-check over `--members` members (default 1,000,000) of consistent data.

The data is made in the databases themselves with `generate_series` (no services involved but
the points service, which answers GetSettlement), migrated as the services' own: per member an
account, an earn and a redemption (every tenth a reward bought with points, with its coupon),
their lot and lot movements, the order, tiers' activity for the earn; every fourth member a
benefit consumed, every fifth a completed checkout; published outbox rows. Then `check()` is
timed over every rule and must be clean; afterwards one balance is changed and the balance rule
must name exactly that member.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime

import asyncpg
import grpc
from loyalty.points.v1 import points_service_pb2 as pb
from loyalty.points.v1 import points_service_pb2_grpc
from loyalty_benefits.app import SPEC as BENEFITS
from loyalty_check.checker import Options, check
from loyalty_devstack.demo import huayue_programme
from loyalty_gateway.app import SPEC as GATEWAY
from loyalty_identity.app import SPEC as IDENTITY
from loyalty_kit.db import asyncpg_params
from loyalty_kit.migrations import upgrade_database
from loyalty_kit.server import ServiceSpec, start_service
from loyalty_kit.settings import Settings
from loyalty_points.app import SPEC as POINTS
from loyalty_tiers.app import SPEC as TIERS

from bench.context import BenchContext
from bench.registry import Measurement, scenario
from bench.scenarios.points import ADMIN, ActiveMembers

MEMBERS = 1_000_000
BATCH = 250_000  # members per statement

# $1..$2: the members' numbers; $3 (AT): when it all happened. Ids are derived from the number,
# so every database agrees on them without being told.
M = "md5('m' || i)::uuid"
AT = "$3::timestamptz"
POINTS_LOAD = (
    f"""
    INSERT INTO accounts (member_id, state, tier, available, pending, lifetime_earned, updated_at)
    SELECT {M}, 'active', '', 300, 0, 500, {AT} FROM generate_series($1::int, $2::int) i
    """,
    f"""
    INSERT INTO postings (member_id, posting_id, kind, points, unit, channel, order_id,
                          occurred_at, posted_at)
    SELECT {M}, md5('e' || i)::uuid, 'earn', 500, 'mall', 'CHANNEL_POS', 'o' || i, {AT}, {AT}
    FROM generate_series($1::int, $2::int) i
    UNION ALL
    SELECT {M}, md5('r' || i)::uuid, 'redeem', -200, 'cinema', 'CHANNEL_APP',
           CASE WHEN i % 10 = 0 THEN 'reward:' || md5('w' || i)::uuid ELSE 'c' || i END, {AT}, {AT}
    FROM generate_series($1::int, $2::int) i
    """,
    f"""
    INSERT INTO lots (member_id, lot_id, posting_id, earned_unit, points, remaining, status,
                      earned_at)
    SELECT {M}, md5('l' || i)::uuid, md5('e' || i)::uuid, 'mall', 500, 300, 'open', {AT}
    FROM generate_series($1::int, $2::int) i
    """,
    f"""
    INSERT INTO lot_movements (member_id, posting_id, lot_id, points, earned_unit, unit,
                               posted_at)
    SELECT {M}, md5('e' || i)::uuid, md5('l' || i)::uuid, 500, 'mall', 'mall', {AT}
    FROM generate_series($1::int, $2::int) i
    UNION ALL
    SELECT {M}, md5('r' || i)::uuid, md5('l' || i)::uuid, -200, 'mall', 'cinema', {AT}
    FROM generate_series($1::int, $2::int) i
    """,
    f"""
    INSERT INTO orders (unit, order_id, member_id, posting_id, lot_id, currency, lines)
    SELECT 'mall', 'o' || i, {M}, md5('e' || i)::uuid, md5('l' || i)::uuid, 'CNY', '{{}}'
    FROM generate_series($1::int, $2::int) i WHERE {AT} IS NOT NULL
    """,
    f"""
    INSERT INTO kit_outbox (event_id, subject, event_type, payload, created_at, published_at)
    SELECT md5('x' || i)::uuid, 'bench', 'loyalty.points.v1.PointsEarned', '', {AT}, {AT}
    FROM generate_series($1::int, $2::int) i WHERE i % 10 = 0
    """,
)
TIERS_LOAD = (
    f"""
    INSERT INTO activity (member_id, event_id, occurred_at, unit, spend, points, visits)
    SELECT {M}, md5('e' || i)::uuid::text, {AT}, 'mall', 500, 500, 1
    FROM generate_series($1::int, $2::int) i
    """,
)
BENEFITS_LOAD = (
    f"""
    INSERT INTO quota_usage (member_id, benefit_code, period_key, used)
    SELECT {M}, 'hotel-welcome-drink', '2026', 1
    FROM generate_series($1::int, $2::int) i WHERE i % 4 = 0 AND {AT} IS NOT NULL
    """,
    f"""
    INSERT INTO consumptions (member_id, consumption_id, benefit_code, unit, order_id,
                              period_key, counted, catalogue_version, consumed_at)
    SELECT {M}, md5('k' || i)::uuid, 'hotel-welcome-drink', 'hotel', 'h' || i, '2026', true,
           1, {AT}
    FROM generate_series($1::int, $2::int) i WHERE i % 4 = 0
    """,
    f"""
    INSERT INTO reward_redemptions (redemption_id, scope, request_id, fingerprint, member_id,
                                    reward_code, unit, points, state, posting_id, coupon_code,
                                    created_at, updated_at)
    SELECT md5('w' || i)::uuid, 'bench', 'w' || i, '', {M}, 'cinema-ticket', 'cinema', 200,
           'completed', md5('r' || i)::uuid::text, 'C' || i, {AT}, {AT}
    FROM generate_series($1::int, $2::int) i WHERE i % 10 = 0
    """,
    f"""
    INSERT INTO coupons (member_id, code, template_code, name_zh, name_en, kind, currency,
                         amount, unit, valid_from, valid_until, source, issued_at, state,
                         redeemed_at, redeemed_unit, redeemed_order_id, discount,
                         discount_currency)
    SELECT {M}, 'C' || i, 'cinema-ticket', '', '', 'amount_off', 'CNY', 60, 'cinema', {AT},
           {AT} + interval '1 year', 'reward:' || md5('w' || i)::uuid, {AT},
           CASE WHEN i % 20 = 0 THEN 'redeemed' ELSE 'issued' END,
           CASE WHEN i % 20 = 0 THEN {AT} END,
           CASE WHEN i % 20 = 0 THEN 'cinema' ELSE '' END,
           CASE WHEN i % 20 = 0 THEN 't' || i ELSE '' END,
           CASE WHEN i % 20 = 0 THEN 60 END,
           CASE WHEN i % 20 = 0 THEN 'CNY' ELSE '' END
    FROM generate_series($1::int, $2::int) i WHERE i % 10 = 0
    """,
)
GATEWAY_LOAD = (
    f"""
    INSERT INTO checkouts (checkout_id, scope, request_id, fingerprint, client_id, unit,
                           order_id, member_id, request, state, created_at, updated_at)
    SELECT md5('q' || i)::uuid, 'bench', 'q' || i, '', 'bench-pos', 'mall', 'p' || i,
           {M}::text, '', 'completed', {AT}, {AT}
    FROM generate_series($1::int, $2::int) i WHERE i % 5 = 0
    """,
)


def _progress(text: str) -> None:
    print(f"bench: check: {text}", file=sys.stderr, flush=True)


async def _migrated(ctx: BenchContext, spec: ServiceSpec) -> None:
    assert spec.migrations is not None
    await upgrade_database(await ctx.database(spec.name), spec.migrations)


async def _load(settings: Settings, service: str, statements: tuple[str, ...], n: int) -> None:
    conn = await asyncpg.connect(**asyncpg_params(settings.service_database_url(service)))
    try:
        at = datetime.now(UTC).replace(microsecond=0)
        for start in range(1, n + 1, BATCH):
            async with conn.transaction():
                for statement in statements:
                    await conn.execute(statement, start, min(start + BATCH - 1, n), at)
        await conn.execute("VACUUM (ANALYZE)")
    finally:
        await conn.close()


@scenario("check")
async def check_members(ctx: BenchContext) -> Measurement:
    """loyalty-check over --members members of consistent data in every service's database
    (default 1,000,000; bulk-loaded with generate_series), every rule, clean (members/s)."""
    members = ctx.members or MEMBERS
    settings = ctx.settings()
    for spec in (IDENTITY, TIERS, BENEFITS, GATEWAY):
        await _migrated(ctx, spec)
    service = await start_service(POINTS, settings, port=0, directory=ActiveMembers())
    try:
        await service.wait_until_serving()
        async with grpc.aio.insecure_channel(service.target) as channel:
            await points_service_pb2_grpc.PointsServiceStub(channel).UpdateProgramme(
                pb.UpdateProgrammeRequest(
                    programme=huayue_programme(), reason="bench", request_id="bench-check"
                ),
                metadata=ADMIN.metadata(),
                timeout=30,
            )
        _progress(f"loading {members:,} members into points, tiers, benefits, gateway")
        begun = time.perf_counter()
        for name, statements in (
            ("points", POINTS_LOAD),
            ("tiers", TIERS_LOAD),
            ("benefits", BENEFITS_LOAD),
            ("gateway", GATEWAY_LOAD),
        ):
            await _load(settings, name, statements, members)
        loaded = time.perf_counter() - begun
        _progress(f"loaded in {loaded:.0f} s; checking")
        checking = settings.model_copy(update={"points_target": service.target})
        report = await check(checking)
        if not report.clean:
            raise AssertionError(f"consistent data reported as not:\n{report.text()}")
        found = await _one_balance_changed(checking, members)
    finally:
        await service.stop(grace=0.5)
    return Measurement(
        count=members,
        seconds=report.seconds,
        concurrency=Options().parallel,
        unit="members",
        extra={
            "rules_seconds": {r.rule: round(r.seconds, 2) for r in report.results},
            "load_seconds": round(loaded, 1),
            "postings": 2 * members,
            "tampered_balance_found_seconds": round(found, 2),
        },
    )


async def _one_balance_changed(settings: Settings, members: int) -> float:
    """Change the middle member's balance: the balance rule names exactly that member."""
    conn = await asyncpg.connect(**asyncpg_params(settings.service_database_url("points")))
    try:
        member = await conn.fetchval(
            "UPDATE accounts SET available = available + 1 WHERE member_id = md5('m' || $1)::uuid "
            "RETURNING member_id::text",
            str(members // 2 or 1),
        )
    finally:
        await conn.close()
    report = await check(settings, Options(only=("balance-postings",)))
    [result] = report.results
    if (result.total, [f.member_id for f in result.findings]) != (1, [member]):
        raise AssertionError(f"the changed balance of {member} was not named:\n{report.text()}")
    return result.seconds
