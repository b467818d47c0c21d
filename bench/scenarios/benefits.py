"""The benefits service: entitlement queries, and coupons issued in bulk to a segment.

`benefits-entitlements` asks ListEntitlements of the service for a random one of `MEMBERS`
members (tiers `COPY`ed: every tier of the Huayue ladder, quota already used on some benefits)
at the hotel, `--concurrency` calls in flight (closed loop, as identity-resolve), and checks the
tier answered; `raw-benefits-entitlements` answers the same calls with bare grpc.aio + asyncpg.

`coupon-issuance` issues a coupon to every member of a tag at the identity service
(`--members`, default 100,000: the identity population of bench/members.py, every member
tagged) through one CreateCouponIssuance (chunks of `ISSUANCE_CHUNK`), polled with
GetCouponIssuance to the end; `raw-coupon-issuance` writes the same rows with plain asyncpg.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import grpc
from loyalty.benefits.v1 import benefits_service_pb2 as pb
from loyalty.benefits.v1 import benefits_service_pb2_grpc, events_pb2
from loyalty_benefits.adapters.events import to_message
from loyalty_benefits.adapters.segments import GrpcSegments
from loyalty_benefits.app import SPEC
from loyalty_benefits.domain.catalogue import Catalogue, catalogue_from_json, catalogue_to_json
from loyalty_benefits.domain.coupons import Coupon, issue
from loyalty_benefits.domain.entitlements import Entitlement, MemberTier, tier_of, usable
from loyalty_benefits.domain.issuances import grant_key
from loyalty_benefits.entrypoints import convert
from loyalty_benefits.service_layer.ports import SegmentPage
from loyalty_devstack.demo import huayue_catalogue
from loyalty_identity.app import SPEC as IDENTITY_SPEC
from loyalty_kit.caller import Caller
from loyalty_kit.db import asyncpg_params
from loyalty_kit.events import event_subject
from loyalty_kit.migrations import upgrade_database
from loyalty_kit.server import start_service
from sqlalchemy.engine import URL

from bench.context import BenchContext
from bench.counters import HEALTH_STATEMENT, DriverCounter
from bench.echo import unary_handler
from bench.load import Op, closed_loop, percentile
from bench.registry import Measurement, scenario
from bench.scenarios.identity import _environment, _population

MEMBERS = 10_000  # of the entitlement scenarios
TIERS = ("basic", "silver", "gold", "platinum", "diamond")
SERVICE = "loyalty.benefits.v1.BenefitsService"
CALL_TIMEOUT = 30.0
UNLOADED_SECONDS = 1.0
HOTEL = Caller(unit="hotel", client_id="bench-pms")
ADMIN = Caller(unit="group", client_id="bench-admin", scopes=frozenset({"admin"}))
MARKETING = Caller(unit="group", client_id="bench-crm", scopes=frozenset({"coupons:issue"}))
TAG = "segment:bench-issuance"
TEMPLATE = "welcome-silver"
ISSUANCE_CHUNK = 1000
ISSUANCE_TIMEOUT = 1800.0


def _progress(text: str) -> None:
    print(f"bench: benefits: {text}", file=sys.stderr, flush=True)


def _catalogue() -> Catalogue:
    return convert.catalogue_from(huayue_catalogue())


async def _migrated(url: URL) -> None:
    assert SPEC.migrations is not None
    await upgrade_database(url, SPEC.migrations)


# --- entitlements -----------------------------------------------------------------------------
@dataclass
class Members:
    ids: list[str]
    tiers: dict[str, str]


def _members() -> Members:
    rng = random.Random()
    ids = [str(uuid.uuid4()) for _ in range(MEMBERS)]
    return Members(ids, {m: rng.choice(TIERS) for m in ids})


async def _seed(url: URL, members: Members, with_catalogue: bool) -> dict[str, int]:
    """The members' tiers (a tier year ending in 300 days) and one use of every quota'd hotel
    benefit for half of them, in the periods the service computes; the catalogue too for the
    ceiling (the service gets it through UpdateCatalogue)."""
    rules = _catalogue()
    now = datetime.now(UTC)
    conn = await asyncpg.connect(**asyncpg_params(url))
    try:
        if with_catalogue:
            await conn.execute(
                "INSERT INTO catalogue_versions (version, document) VALUES (1, $1::jsonb)",
                json.dumps(catalogue_to_json(rules)),
            )
        tiers, usage = [], []
        for i, member_id in enumerate(members.ids):
            tier = members.tiers[member_id]
            end = None if tier == "basic" else now + timedelta(days=300)
            tiers.append((uuid.UUID(member_id), tier, now - timedelta(days=65), end))
            if i % 2:
                for benefit in usable(rules, tier, "hotel", now):
                    if benefit.quota:
                        key = rules.period_of(benefit, now, end).key
                        usage.append((uuid.UUID(member_id), benefit.code, key, 1))
        await conn.copy_records_to_table(
            "member_tiers",
            columns=("member_id", "tier", "effective_at", "tier_year_end"),
            records=tiers,
        )
        await conn.copy_records_to_table(
            "quota_usage",
            columns=("member_id", "benefit_code", "period_key", "used"),
            records=usage,
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return {"members": len(tiers), "quota_usage_rows": len(usage)}


def _asker(channel: grpc.aio.Channel, members: Members) -> Op:
    stub = benefits_service_pb2_grpc.BenefitsServiceStub(channel)
    names = [f"members/{m}" for m in members.ids]
    metadata = HOTEL.metadata()
    rng = random.Random()

    async def once() -> None:
        i = rng.randrange(len(names))
        reply = await stub.ListEntitlements(
            pb.ListEntitlementsRequest(member=names[i], unit="hotel"),
            metadata=metadata,
            timeout=CALL_TIMEOUT,
        )
        if reply.tier != members.tiers[members.ids[i]]:
            raise AssertionError(f"{names[i]} is {reply.tier!r}")

    return once


async def _drive_entitlements(
    ctx: BenchContext, channel: grpc.aio.Channel, members: Members
) -> Measurement:
    await channel.channel_ready()
    once = _asker(channel, members)
    load_average = os.getloadavg()[0]
    unloaded = await closed_loop(
        once, concurrency=1, seconds=UNLOADED_SECONDS, warmup=0.2, unit="queries"
    )
    measured = await ctx.closed_loop(once, unit="queries")
    latencies = unloaded.latencies_ms or []
    measured.extra.update(
        members=len(members.ids),
        unloaded_p50_ms=round(percentile(latencies, 50), 3),
        unloaded_p99_ms=round(percentile(latencies, 99), 3),
        load_average_1m=round(load_average, 2),
    )
    return measured


# The service's statements for a query (its repositories): the latest catalogue (its document
# only when not the version cached), the member's tier, the quota used in the benefits' current
# periods (only when some benefit counts).
LATEST = (
    "SELECT version, created_at, CASE WHEN version = $1 THEN NULL ELSE document END "
    "AS document FROM catalogue_versions ORDER BY version DESC LIMIT 1"
)
MEMBER = "SELECT tier, effective_at, tier_year_end FROM member_tiers WHERE member_id = $1"
USAGE = (
    "SELECT benefit_code, period_key, used FROM quota_usage "
    "WHERE member_id = $1 AND (benefit_code, period_key) IN "
    "(SELECT * FROM unnest($2::text[], $3::text[]))"
)


class RawEntitlements:
    """ListEntitlements only, on plain asyncpg, the service's two or three statements per call
    on one pooled connection (no transaction); the catalogue parsed once per version."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.rules: Catalogue | None = None

    async def ListEntitlements(
        self, request: pb.ListEntitlementsRequest, context: Any
    ) -> pb.ListEntitlementsResponse:
        member_id = request.member.removeprefix("members/")
        now = datetime.now(UTC)
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(LATEST, self.rules.version if self.rules else None)
            assert row is not None
            if row["document"] is not None:
                document = row["document"]
                if isinstance(document, str):
                    document = json.loads(document)
                self.rules = catalogue_from_json(row["version"], row["created_at"], document)
            rules = self.rules
            assert rules is not None
            row = await conn.fetchrow(MEMBER, uuid.UUID(member_id))
            member = (
                None
                if row is None
                else MemberTier(member_id, row["tier"], row["effective_at"], row["tier_year_end"])
            )
            tier = tier_of(rules, member)
            end = member.tier_year_end if member else None
            benefits = usable(rules, tier, request.unit, now)
            periods = {b.code: rules.period_of(b, now, end) for b in benefits}
            counted = [b for b in benefits if b.quota]
            rows = []
            if counted:
                rows = await conn.fetch(
                    USAGE,
                    uuid.UUID(member_id),
                    [b.code for b in counted],
                    [periods[b.code].key for b in counted],
                )
        used = {(r["benefit_code"], r["period_key"]): r["used"] for r in rows}
        return pb.ListEntitlementsResponse(
            tier=tier,
            entitlements=[
                convert.entitlement_message(
                    Entitlement(b, periods[b.code], used.get((b.code, periods[b.code].key), 0))
                )
                for b in benefits
            ],
        )

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        return unary_handler(
            SERVICE,
            "ListEntitlements",
            self.ListEntitlements,
            pb.ListEntitlementsRequest,
            pb.ListEntitlementsResponse,
        )


@scenario("raw-benefits-entitlements")
async def raw_benefits_entitlements(ctx: BenchContext) -> Measurement:
    """Ceiling: bare grpc.aio; asyncpg runs the service's reads (catalogue, tier, usage).

    Same members, client and check as benefits-entitlements; the entitlements are worked out by
    the service's pure domain functions and answered with the same message. Pool of 20.
    """
    members = _members()
    url = await ctx.database("ent_raw_benefits")
    await _migrated(url)
    seeded = await _seed(url, members, with_catalogue=True)
    size = 2 * ctx.settings().database_pool_size
    pool = await asyncpg.create_pool(**asyncpg_params(url), min_size=size, max_size=size)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((RawEntitlements(pool).handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            measured = await _drive_entitlements(ctx, channel, members)
        measured.extra.update(seeded, pool_size=size)
        return measured
    finally:
        await server.stop(0)
        await pool.close()


@scenario("benefits-entitlements", ceiling="raw-benefits-entitlements")
async def benefits_entitlements(ctx: BenchContext) -> Measurement:
    """ListEntitlements of the benefits service (start_service, migrations on, no NATS: no
    events are involved) for random members at the hotel, `--concurrency` in flight.

    The Huayue catalogue is published with UpdateCatalogue; `extra` has SQL statements (on the
    driver, as tiers-year-end counts them) and pool check-outs per call (200 sequential calls
    after the measurement).
    """
    members = _members()
    settings = ctx.settings(database_prefix=f"{ctx.run_id}_ent_", nats_url="")
    service = await start_service(SPEC, settings, port=0)
    try:
        await service.wait_until_serving()
        engine = service.context.engine
        assert engine is not None
        seeded = await _seed(settings.service_database_url(SPEC.name), members, False)
        async with grpc.aio.insecure_channel(service.target) as channel:
            stub = benefits_service_pb2_grpc.BenefitsServiceStub(channel)
            await stub.UpdateCatalogue(
                pb.UpdateCatalogueRequest(catalogue=huayue_catalogue(), request_id="bench"),
                metadata=ADMIN.metadata(),
                timeout=CALL_TIMEOUT,
            )
            measured = await _drive_entitlements(ctx, channel, members)
            once = _asker(channel, members)
            counter = DriverCounter(engine)
            calls = 200
            try:
                for _ in range(calls):
                    await once()
                await asyncio.sleep(0.05)  # the query logger reports on the next loop turns
            finally:
                counter.remove()
        measured.extra.update(
            seeded,
            statements_per_call=round(counter.count(excluding=(HEALTH_STATEMENT,)) / calls, 2),
            statements=counter.top(6, excluding=(HEALTH_STATEMENT,)),
            checkouts_per_call=round(counter.checkouts / calls, 2),
            pool_size=2 * settings.database_pool_size,
        )
        return measured
    finally:
        await service.stop(grace=0.5)


# --- coupon issuance to a segment ----------------------------------------------------------------
TAGGED_KEY = "benefits-tagged"


async def _tagged(ctx: BenchContext) -> Any:
    """The identity population, every member tagged `TAG` (once per run)."""
    loaded = await _population(ctx)
    if not ctx.shared.get(TAGGED_KEY):
        url = ctx.settings().service_database_url(IDENTITY_SPEC.name)
        conn = await asyncpg.connect(**asyncpg_params(url))
        try:
            await conn.execute(
                "INSERT INTO member_tags (member_id, tag, added_at) "
                "SELECT member_id, $1, now() FROM members ON CONFLICT DO NOTHING",
                TAG,
            )
            await conn.execute("ANALYZE member_tags")
        finally:
            await conn.close()
        ctx.shared[TAGGED_KEY] = True
    return loaded


COUPON_COLUMNS = (
    "member_id",
    "code",
    "template_code",
    "name_zh",
    "name_en",
    "kind",
    "currency",
    "amount",
    "percentage",
    "minimum_spend",
    "unit",
    "valid_from",
    "valid_until",
    "source",
    "grant_key",
    "issued_at",
    "state",
)


def _coupon_row(c: Coupon, key: str) -> tuple[Any, ...]:
    terms = c.amount or c.minimum_spend
    return (
        uuid.UUID(c.member_id),
        c.code,
        c.template_code,
        c.name_zh,
        c.name_en,
        c.kind.value,
        terms.currency if terms else "",
        c.amount.value if c.amount else None,
        c.percentage,
        c.minimum_spend.value if c.minimum_spend else None,
        c.unit,
        c.valid_from,
        c.valid_until,
        c.source,
        key,
        c.issued_at,
        c.state.value,
    )


async def _counted(url: URL, key: str) -> dict[str, int]:
    conn = await asyncpg.connect(**asyncpg_params(url))
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS coupons, count(DISTINCT member_id) AS members "
            "FROM coupons WHERE grant_key = $1",
            key,
        )
        events = await conn.fetchval("SELECT count(*) FROM kit_outbox")
    finally:
        await conn.close()
    assert row is not None
    return {"coupons": row["coupons"], "members": row["members"], "outbox_rows": events}


def _check(counted: dict[str, int], members: int) -> None:
    if counted["coupons"] != members or counted["members"] != members:
        raise AssertionError(f"{counted} for {members} tagged members")


@scenario("raw-coupon-issuance")
async def raw_coupon_issuance(ctx: BenchContext) -> Measurement:
    """Ceiling: plain asyncpg; per chunk of 1,000 the segment's next member ids (keyset SELECT on
    the identity database), then one transaction COPYing the coupon rows and their CouponIssued
    outbox rows into a benefits database.

    The coupons and events are made by the service's own `issue` and `to_message` (same
    codes, terms, grant key, payloads); the outbox rows are written, not published (as in
    coupon-issuance, which runs without NATS).
    """
    loaded = await _tagged(ctx)
    url = await ctx.database("issue_raw_benefits")
    await _migrated(url)
    template = _catalogue().template(TEMPLATE)
    assert template is not None
    key = grant_key(str(uuid.uuid4()))
    subject = event_subject(events_pb2.CouponIssued(), ctx.namespace)
    event_type = events_pb2.CouponIssued.DESCRIPTOR.full_name
    identity_url = ctx.settings().service_database_url(IDENTITY_SPEC.name)
    segment = await asyncpg.connect(**asyncpg_params(identity_url))
    conn = await asyncpg.connect(**asyncpg_params(url))
    chunks, reading = 0, 0.0
    try:
        started = time.perf_counter()
        after = uuid.UUID(int=0)
        while True:
            asked = time.perf_counter()
            ids = await segment.fetch(
                "SELECT member_id FROM member_tags WHERE tag = $1 AND member_id > $2 "
                "ORDER BY member_id LIMIT $3",
                TAG,
                after,
                ISSUANCE_CHUNK,
            )
            reading += time.perf_counter() - asked
            if not ids:
                break
            after = ids[-1]["member_id"]
            now = datetime.now(UTC)
            coupons = [issue(template, str(r["member_id"]), key, now) for r in ids]
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "coupons",
                    columns=COUPON_COLUMNS,
                    records=[_coupon_row(c, key) for c in coupons],
                )
                await conn.copy_records_to_table(
                    "kit_outbox",
                    columns=("event_id", "subject", "event_type", "payload"),
                    records=[
                        (
                            uuid.uuid4(),
                            subject,
                            event_type,
                            to_message(c.issued(now)).SerializeToString(deterministic=True),
                        )
                        for c in coupons
                    ],
                )
            chunks += 1
        elapsed = time.perf_counter() - started
    finally:
        await segment.close()
        await conn.close()
    counted = await _counted(url, key)
    _check(counted, loaded.population.count)
    return Measurement(
        count=counted["coupons"],
        seconds=elapsed,
        concurrency=1,
        unit="coupons",
        extra={
            **counted,
            "chunks": chunks,
            "chunk": ISSUANCE_CHUNK,
            "segment_read_share": round(reading / elapsed, 3),
        },
    )


class TimedSegments:
    """The identity adapter, timing its calls (the segment's part of the issuance)."""

    def __init__(self, real: GrpcSegments) -> None:
        self.real = real
        self.seconds = 0.0
        self.calls = 0

    async def page(self, tag: str, page_token: str, size: int) -> SegmentPage:
        started = time.perf_counter()
        try:
            return await self.real.page(tag, page_token, size)
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1


@scenario("coupon-issuance", ceiling="raw-coupon-issuance")
async def coupon_issuance(ctx: BenchContext) -> Measurement:
    """One CreateCouponIssuance to every member of a tag (--members, default 100,000), polled
    with GetCouponIssuance every 0.2 s to SUCCEEDED; coupons/s, checked in the database.

    The identity service (the population's keys, NATS on) lists the segment; the benefits
    service (chunks of 1,000, no NATS: CouponIssued rows stay in its outbox, as in the ceiling)
    issues. `extra`: the share of the time spent waiting for identity's ListMembers pages.
    """
    loaded = await _tagged(ctx)
    with _environment(loaded.population.env()):
        identity = await start_service(IDENTITY_SPEC, ctx.settings(), port=0)
    settings = ctx.settings(
        database_prefix=f"{ctx.run_id}_issue_", nats_url="", identity_target=identity.target
    )
    segments = TimedSegments(GrpcSegments(settings))
    service = await start_service(SPEC, settings, port=0, segments=segments)
    try:
        await identity.wait_until_serving()
        await service.wait_until_serving()
        async with grpc.aio.insecure_channel(service.target) as channel:
            stub = benefits_service_pb2_grpc.BenefitsServiceStub(channel)
            await stub.UpdateCatalogue(
                pb.UpdateCatalogueRequest(catalogue=huayue_catalogue(), request_id="bench"),
                metadata=ADMIN.metadata(),
                timeout=CALL_TIMEOUT,
            )
            _progress(f"issuing to {loaded.population.count:,} tagged members ...")
            started = time.perf_counter()
            created = await stub.CreateCouponIssuance(
                pb.CreateCouponIssuanceRequest(
                    coupon_issuance=pb.CouponIssuance(template=TEMPLATE, tag=TAG),
                    request_id="bench-issuance",
                    chunk_size=ISSUANCE_CHUNK,
                ),
                metadata=MARKETING.metadata(),
                timeout=CALL_TIMEOUT,
            )
            name = created.coupon_issuance.name
            polls: list[int] = []
            while True:
                got = await stub.GetCouponIssuance(
                    pb.GetCouponIssuanceRequest(name=name),
                    metadata=MARKETING.metadata(),
                    timeout=CALL_TIMEOUT,
                )
                issuance = got.coupon_issuance
                polls.append(issuance.progress_percent)
                if issuance.state != pb.COUPON_ISSUANCE_STATE_RUNNING:
                    break
                if time.perf_counter() - started > ISSUANCE_TIMEOUT:
                    raise AssertionError(f"issuance still running: {issuance}")
                await asyncio.sleep(0.2)
            elapsed = time.perf_counter() - started
        if issuance.state != pb.COUPON_ISSUANCE_STATE_SUCCEEDED:
            raise AssertionError(f"issuance ended {issuance}")
        key = grant_key(name.split("/")[1])
        counted = await _counted(settings.service_database_url(SPEC.name), key)
        _check(counted, loaded.population.count)
        return Measurement(
            count=counted["coupons"],
            seconds=elapsed,
            concurrency=1,
            unit="coupons",
            extra={
                **counted,
                "total_members": issuance.total_members,
                "issued_coupons": issuance.issued_coupons,
                "chunk": ISSUANCE_CHUNK,
                "identity_pages": segments.calls,
                "segment_read_share": round(segments.seconds / elapsed, 3),
                "polls": len(polls),
                "progress_seen": _spread(polls),
            },
        )
    finally:
        await service.stop(grace=0.5)
        await identity.stop(grace=0.5)


def _spread(values: Sequence[int]) -> list[int]:
    """A few of the progress values seen, in order (at most 10)."""
    step = max(1, len(values) // 10)
    return list(values[::step])[:10] + ([values[-1]] if values else [])
