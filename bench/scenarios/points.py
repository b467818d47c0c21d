"""EarnPoints: the points service against bare grpc.aio + asyncpg running the same SQL.

Both scenarios get the same client: the generated stub over one channel, calling as a mall POS
(`x-loyalty-client: bench-pos`), `--concurrency` calls in flight. Each call earns for a random
one of `MEMBERS` members (v4 ids made per scenario) with a fresh request_id and order_id,
unit `mall`, channel POS, 1-3 lines of CNY 10.00-2,000.00, and checks that points were earned.
The members' accounts are written before the clock starts (`COPY`, exactly the row
`Ledger.create_account` writes on first touch), so every measured earn is steady state:
account locked, posting, lot, movement, order, account update, outbox event, stored response.
Both databases are migrated with `loyalty_points:migrations` and hold the Huayue programme
(`loyalty_devstack.demo.huayue_programme`); commits are durable (server defaults, untouched).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NoReturn

import asyncpg
import grpc
from loyalty.common.v1 import channel_pb2, money_pb2
from loyalty.points.v1 import events_pb2, points_service_pb2_grpc
from loyalty.points.v1 import points_service_pb2 as pb
from loyalty_devstack.demo import huayue_programme
from loyalty_kit.caller import Caller
from loyalty_kit.db import asyncpg_params
from loyalty_kit.events import event_subject
from loyalty_kit.kernel.members import MemberState
from loyalty_kit.migrations import upgrade_database
from loyalty_kit.server import start_service
from loyalty_points.app import SPEC
from loyalty_points.domain.programme import programme_to_json
from loyalty_points.entrypoints import convert
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.context import BenchContext
from bench.counters import HEALTH_STATEMENT, RELAY_STATEMENTS, EngineCounter
from bench.echo import unary_handler
from bench.load import Op, closed_loop, percentile
from bench.registry import Measurement, scenario

MEMBERS = 10_000
SERVICE = "loyalty.points.v1.PointsService"
CALL_TIMEOUT = 30.0
UNLOADED_SECONDS = 1.0  # one call at a time, for the latency without queueing (extra)
COUNTED_CALLS = 200  # sequential earns after the measurement, to count SQL per call
POS = Caller(unit="mall", client_id="bench-pos", scopes=frozenset({"earn"}))
ADMIN = Caller(unit="group", client_id="bench-admin", scopes=frozenset({"admin"}))


def _members() -> list[str]:
    return [str(uuid.uuid4()) for _ in range(MEMBERS)]


async def seed_accounts(conn: asyncpg.Connection, member_ids: Sequence[str]) -> None:
    """The accounts first touch would open (`Ledger.create_account`), then ANALYZE."""
    now = datetime.now(UTC)
    await conn.copy_records_to_table(
        "accounts",
        columns=(
            "member_id",
            "state",
            "tier",
            "available",
            "pending",
            "lifetime_earned",
            "updated_at",
            "referral_pending",
        ),
        records=[(uuid.UUID(m), "active", "", 0, 0, 0, now, False) for m in member_ids],
    )
    await conn.execute("ANALYZE")


def _earner(channel: grpc.aio.Channel, member_ids: Sequence[str]) -> Op:
    """One EarnPoints for a random member, a new order of 1-3 CNY lines; points checked."""
    stub = points_service_pb2_grpc.PointsServiceStub(channel)
    names = [f"members/{m}" for m in member_ids]
    metadata = POS.metadata()
    rng = random.Random()

    async def once() -> None:
        lines = []
        for i in range(rng.randint(1, 3)):
            cents = rng.randrange(1_000, 200_001)
            amount = money_pb2.Money(
                currency_code="CNY", amount=f"{cents // 100}.{cents % 100:02d}"
            )
            lines.append(pb.OrderLine(line_id=str(i + 1), amount=amount, quantity=1))
        request = pb.EarnPointsRequest(
            member=names[rng.randrange(len(names))],
            request_id=uuid.uuid4().hex,
            unit="mall",
            channel=channel_pb2.CHANNEL_POS,
            order_id=f"bench-{uuid.uuid4().hex}",
            lines=lines,
        )
        reply = await stub.EarnPoints(request, metadata=metadata, timeout=CALL_TIMEOUT)
        if reply.posting.points < 10:
            raise AssertionError(f"earned {reply.posting.points} points for {request.lines}")

    return once


async def _drive(
    ctx: BenchContext, channel: grpc.aio.Channel, member_ids: list[str]
) -> Measurement:
    await channel.channel_ready()
    once = _earner(channel, member_ids)
    load_average = os.getloadavg()[0]
    unloaded = await closed_loop(
        once, concurrency=1, seconds=UNLOADED_SECONDS, warmup=0.2, unit="earns"
    )
    wall, cpu = time.perf_counter(), time.process_time()
    measured = await ctx.closed_loop(once, unit="earns")
    cpu_share = (time.process_time() - cpu) / (time.perf_counter() - wall)
    latencies = unloaded.latencies_ms or []
    measured.extra.update(
        members=len(member_ids),
        unloaded_p50_ms=round(percentile(latencies, 50), 3),
        unloaded_p99_ms=round(percentile(latencies, 99), 3),
        load_average_1m=round(load_average, 2),
        # This process's CPU (client, server, driver; not PostgreSQL) per wall second over
        # warm-up and measurement (1.0: one core busy), and per earn at the measured rate.
        process_cpu_share=round(cpu_share, 2),
        process_cpu_ms_per_call=round(cpu_share * 1000 / measured.throughput, 2),
    )
    return measured


# --- the ceiling: bare grpc.aio + asyncpg --------------------------------------------------------
# The statements the service runs for an earn of a member whose account exists and who has no
# pending referral, in its order (captured from its engine; the programme comes from its
# in-process cache): columns and clauses as the service sends them, less SQLAlchemy's casts.
CLAIM = (
    "INSERT INTO kit_idempotency_keys (scope, request_id, fingerprint) VALUES ($1, $2, $3) "
    "ON CONFLICT DO NOTHING RETURNING kit_idempotency_keys.request_id"
)
ACCOUNT = (
    "SELECT member_id, state, merged_into, tier, tier_effective_at, available, pending, "
    "lifetime_earned, updated_at, referral_pending FROM accounts WHERE member_id = $1 FOR UPDATE"
)
CLAIM_ORDER = (
    "INSERT INTO orders (unit, order_id, member_id, posting_id, lot_id, currency, lines, "
    "bonus_points, bonus_reversed) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
    "ON CONFLICT DO NOTHING RETURNING orders.order_id"
)
# $1 member_id, $2 posting_id, $3 points, $4 pending, $5 available_at, $6 unit, $7 channel,
# $8 order_id, $9 occurred_at, $10 posted_at, $11 programme_version, $12 breakdown, $13 lot_id,
# $14 status, $15 expires_at
ADD_EARN = """
WITH posting AS (
    INSERT INTO postings (member_id, posting_id, kind, points, pending, available_at, unit,
                          channel, order_id, occurred_at, posted_at, programme_version,
                          breakdown)
    VALUES ($1::uuid, $2::uuid, 'earn', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb)
), lot AS (
    INSERT INTO lots (member_id, lot_id, posting_id, earned_unit, points, remaining, status,
                      earned_at, available_at, expires_at)
    SELECT $1::uuid, $13::uuid, $2::uuid, $6, $3, $3, $14, $9, $5, $15
    WHERE $3 > 0
)
INSERT INTO lot_movements (member_id, posting_id, lot_id, points, earned_unit, unit, posted_at)
SELECT $1::uuid, $2::uuid, $13::uuid, $3, $6, $6, $10
WHERE $3 > 0
"""
SAVE_ACCOUNT = (
    "UPDATE accounts SET state = $1, merged_into = $2, tier = $3, tier_effective_at = $4, "
    "available = $5, pending = $6, lifetime_earned = $7, updated_at = $8, "
    "referral_pending = $9 WHERE member_id = $10"
)
OUTBOX = (
    "INSERT INTO kit_outbox (event_id, subject, event_type, payload, headers) "
    "VALUES ($1, $2, $3, $4, $5) RETURNING seq"
)
EXPIRING = (
    "SELECT coalesce(sum(remaining), $1) FROM lots "
    "WHERE member_id = $2 AND status = $3 AND expires_at < $4"
)
STORE = "UPDATE kit_idempotency_keys SET response = $1 WHERE scope = $2 AND request_id = $3"
EARN_STATEMENTS = 8  # the above, each once per earn (plus BEGIN and COMMIT)
PROGRAMME = "SELECT version FROM programme_versions ORDER BY effective_from DESC, version DESC"


def _fingerprint(request: pb.EarnPointsRequest) -> str:
    copy = pb.EarnPointsRequest()
    copy.CopyFrom(request)
    copy.ClearField("request_id")
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()


class RawEarner:
    """EarnPoints only, on plain asyncpg, one transaction per call (a generic handler).

    Points are the spend's whole CNY (mall x1, base rate 1, no tier, no campaign), the lot
    expires 730 days on; the answer has the posting and the balance, nothing else.
    """

    def __init__(self, pool: asyncpg.Pool, namespace: str, programme_version: int) -> None:
        self.pool = pool
        self.programme_version = programme_version  # read once, as the service caches it
        self.scope = f"{SERVICE}/EarnPoints:{POS.client_id}"
        self.subject = event_subject(events_pb2.PointsEarned(), namespace)
        self.event_type = events_pb2.PointsEarned.DESCRIPTOR.full_name

    async def _abort(
        self, context: grpc.aio.ServicerContext[Any, Any], code: grpc.StatusCode, text: str
    ) -> NoReturn:
        await context.abort(code, text)
        raise AssertionError("abort returned")

    async def EarnPoints(
        self,
        request: pb.EarnPointsRequest,
        context: grpc.aio.ServicerContext[pb.EarnPointsRequest, pb.EarnPointsResponse],
    ) -> pb.EarnPointsResponse:
        now = datetime.now(UTC)
        member_id = uuid.UUID(request.member.removeprefix("members/"))
        order_id = request.order_id.strip()
        amounts = {line.line_id: Decimal(line.amount.amount) for line in request.lines}
        spend = sum(amounts.values(), Decimal(0))
        points = int(spend)
        line_points = {line_id: int(amount) for line_id, amount in amounts.items()}
        posting_id, lot_id = uuid.uuid4(), uuid.uuid4()
        breakdown = json.dumps(
            {
                "spend": {"currency": "CNY", "amount": str(spend)},
                "base_rate": "1",
                "factors": [{"source": "unit:mall", "multiplier": "1"}],
                "bonuses": [],
                "exact": str(spend),
                "points": points,
                "lines": line_points,
            }
        )
        lines = json.dumps(
            {
                line_id: {
                    "points": line_points[line_id],
                    "reversed": 0,
                    "amount": str(amount),
                    "refunded": False,
                }
                for line_id, amount in amounts.items()
            }
        )
        earned = events_pb2.PointsEarned(
            member_id=str(member_id),
            posting_id=str(posting_id),
            unit="mall",
            order_id=order_id,
            points=points,
        )
        expires_at = now + timedelta(days=730)
        async with self.pool.acquire() as conn, conn.transaction():
            claimed = await conn.fetchval(
                CLAIM, self.scope, request.request_id, _fingerprint(request)
            )
            if claimed is None:
                await self._abort(context, grpc.StatusCode.ALREADY_EXISTS, "request_id used")
            account = await conn.fetchrow(ACCOUNT, member_id)
            if account is None:
                await self._abort(context, grpc.StatusCode.NOT_FOUND, "no account")
            order = await conn.fetchval(
                CLAIM_ORDER, "mall", order_id, member_id, posting_id, lot_id, "CNY", lines, 0, False
            )
            if order is None:
                await self._abort(context, grpc.StatusCode.ALREADY_EXISTS, "order earned")
            await conn.execute(
                ADD_EARN,
                member_id,
                posting_id,
                points,
                False,
                None,
                "mall",
                "CHANNEL_POS",
                order_id,
                now,
                now,
                self.programme_version,
                breakdown,
                lot_id,
                "open",
                expires_at,
            )
            available = account["available"] + points
            lifetime = account["lifetime_earned"] + points
            await conn.execute(
                SAVE_ACCOUNT,
                account["state"],
                account["merged_into"],
                account["tier"],
                account["tier_effective_at"],
                available,
                account["pending"],
                lifetime,
                now,
                account["referral_pending"],
                member_id,
            )
            await conn.fetchval(
                OUTBOX,
                uuid.uuid4(),
                self.subject,
                self.event_type,
                earned.SerializeToString(deterministic=True),
                "{}",
            )
            until = now + timedelta(days=30)
            expiring = int(await conn.fetchval(EXPIRING, 0, member_id, "open", until))
            response = pb.EarnPointsResponse(
                posting=pb.Posting(
                    posting_id=str(posting_id), member_id=str(member_id), points=points
                ),
                balance=pb.Balance(
                    available=available, expiring_soon=expiring, lifetime_earned=lifetime
                ),
            )
            await conn.execute(
                STORE,
                response.SerializeToString(deterministic=True),
                self.scope,
                request.request_id,
            )
        return response

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        return unary_handler(
            SERVICE, "EarnPoints", self.EarnPoints, pb.EarnPointsRequest, pb.EarnPointsResponse
        )


async def _raw_database(ctx: BenchContext, member_ids: Sequence[str]) -> URL:
    """`<run>_raw_points`, migrated as the service's, with the programme and the accounts."""
    url = await ctx.database("raw_points")
    assert SPEC.migrations is not None
    await upgrade_database(url, SPEC.migrations)
    now = datetime.now(UTC)
    programme = convert.programme_from(huayue_programme(), now)
    conn = await asyncpg.connect(**asyncpg_params(url))
    try:
        await conn.execute(
            "INSERT INTO programme_versions (version, effective_from, rules, reason) "
            "VALUES (1, $1, $2, 'bench')",
            programme.effective_from,
            json.dumps(programme_to_json(programme)),
        )
        await seed_accounts(conn, member_ids)
    finally:
        await conn.close()
    return url


@scenario("raw-points-earn")
async def raw_points_earn(ctx: BenchContext) -> Measurement:
    """Ceiling: bare grpc.aio server; asyncpg runs an earn's 8 statements in one transaction.

    The statements the points service runs for an earn of a member with an account: claim the
    request id, lock the account (FOR UPDATE), claim the order (ON CONFLICT DO NOTHING), posting
    + lot + lot movement in one CTE, update the account, add the outbox event, sum what expires
    soon, store the response; the programme version is read once (the service caches it). In
    its own database migrated with `loyalty_points:migrations`; no relay reads the outbox.
    Pool: as many connections as the service's engine may open (pool_size + max_overflow).
    """
    member_ids = _members()
    url = await _raw_database(ctx, member_ids)
    size = 2 * ctx.settings().database_pool_size
    pool = await asyncpg.create_pool(**asyncpg_params(url), min_size=size, max_size=size)
    earner = RawEarner(pool, ctx.namespace, await pool.fetchval(PROGRAMME))
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((earner.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            measured = await _drive(ctx, channel, member_ids)
        measured.extra.update(
            pool_size=size,
            statements_per_call=EARN_STATEMENTS,
            synchronous_commit=await pool.fetchval("SHOW synchronous_commit"),
        )
        return measured
    finally:
        await server.stop(0)
        await pool.close()


# --- the service ---------------------------------------------------------------------------------
class ActiveMembers:
    """The member directory of the benchmark: every member exists and is active."""

    async def state_of(self, member_id: str) -> tuple[MemberState, str] | None:
        return (MemberState.ACTIVE, "")


class EarnCounter(EngineCounter):
    """The earn's statements apart from the relay's and the health probes'."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.relay = 0
        self.background_checkouts = 0  # relay transactions and health probes
        super().__init__(engine)

    def _statement(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith(RELAY_STATEMENTS):
            self.relay += 1
            self.background_checkouts += statement.startswith(RELAY_STATEMENTS[0])
        elif statement == HEALTH_STATEMENT:
            self.background_checkouts += 1
        else:
            self.statements += 1


@scenario("points-earn", ceiling="raw-points-earn")
async def points_earn(ctx: BenchContext) -> Measurement:
    """EarnPoints of the points service (start_service, migrations on, NATS outbox relay running).

    The Huayue programme is published with UpdateProgramme as an admin. The member directory
    is an in-process stand-in answering "active" (no identity service): the service asks it
    only on a member's first touch, to open the account, never per earn, and the accounts
    exist before the measurement. `extra` has SQL statements and pool check-outs per earn
    (counted on the service's engine over sequential earns after the measurement, the relay's
    apart) and how many events the relay published to JetStream meanwhile.
    """
    member_ids = _members()
    settings = ctx.settings()
    service = await start_service(SPEC, settings, port=0, directory=ActiveMembers())
    try:
        await service.wait_until_serving()
        engine = service.context.engine
        assert engine is not None
        async with grpc.aio.insecure_channel(service.target) as channel:
            stub = points_service_pb2_grpc.PointsServiceStub(channel)
            await stub.UpdateProgramme(
                pb.UpdateProgrammeRequest(
                    programme=huayue_programme(), reason="bench", request_id="bench-programme-v1"
                ),
                metadata=ADMIN.metadata(),
                timeout=CALL_TIMEOUT,
            )
            url = settings.service_database_url(SPEC.name)
            conn = await asyncpg.connect(**asyncpg_params(url))
            try:
                await seed_accounts(conn, member_ids)
            finally:
                await conn.close()
            measured = await _drive(ctx, channel, member_ids)
            once = _earner(channel, member_ids)
            counter = EarnCounter(engine)
            try:
                for _ in range(COUNTED_CALLS):
                    await once()
            finally:
                counter.remove()
        relay = service.relay
        measured.extra.update(
            pool_size=2 * service.context.settings.database_pool_size,
            statements_per_call=round(counter.statements / COUNTED_CALLS, 2),
            checkouts_per_call=round(
                (counter.checkouts - counter.background_checkouts) / COUNTED_CALLS, 2
            ),
            relay_statements_per_call=round(counter.relay / COUNTED_CALLS, 2),
            relay_published=relay.published if relay is not None else None,
        )
        return measured
    finally:
        await service.stop(grace=0.5)
