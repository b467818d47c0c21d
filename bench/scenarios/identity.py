"""ResolveMember with many members: the identity service against bare grpc.aio + asyncpg.

Both scenarios share one population (`--members`, see `member_count`), bulk-loaded once per run
into the identity service's database `<run>_identity` (bench/members.py: COPY from worker
processes, constraints rebuilt, ANALYZE). Each call resolves a random loaded member by phone,
spelt one of three ways (13912345678, +8613912345678, +86 139 1234 5678), as an anonymous
caller (no metadata, so no personal-data scope: the service masks), and checks the member id.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import random
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import grpc
from loyalty.identity.v1 import identity_service_pb2 as pb
from loyalty.identity.v1 import identity_service_pb2_grpc, member_pb2
from loyalty_identity.app import SPEC
from loyalty_kit import db
from loyalty_kit.db import asyncpg_params
from loyalty_kit.migrations import upgrade_database
from loyalty_kit.server import start_service

from bench.context import BenchContext
from bench.counters import EngineCounter
from bench.echo import unary_handler
from bench.load import Op, closed_loop, percentile
from bench.members import LoadStats, Population, load
from bench.registry import Measurement, scenario

FULL_MEMBERS = 1_000_000  # when an identity scenario is named with --only
DEFAULT_MEMBERS = 100_000  # in a run of every scenario (make bench), to keep it short
SCENARIO_NAMES = ("identity-resolve", "raw-identity-resolve")
SERVICE = "loyalty.identity.v1.IdentityService"
CALL_TIMEOUT = 30.0
UNLOADED_SECONDS = 1.0  # one call at a time, for the latency without queueing (extra)
SHARED_KEY = "identity-population"


def member_count(ctx: BenchContext) -> int:
    """--members, else 1,000,000 when an identity scenario was asked for by name, else 100,000."""
    if ctx.members is not None:
        return ctx.members
    return FULL_MEMBERS if any(name in ctx.only for name in SCENARIO_NAMES) else DEFAULT_MEMBERS


def _progress(text: str) -> None:
    print(f"bench: identity: {text}", file=sys.stderr, flush=True)


@dataclass
class Loaded:
    population: Population
    stats: LoadStats


async def _population(ctx: BenchContext) -> Loaded:
    """The run's members, loaded into `<run>_identity` (migrated) by the first scenario asking."""
    loaded = ctx.shared.get(SHARED_KEY)
    if isinstance(loaded, Loaded):
        return loaded
    settings = ctx.settings()
    await db.ensure_database(settings.server_url, settings.database_for(SPEC.name))
    url = settings.service_database_url(SPEC.name)
    assert SPEC.migrations is not None
    await upgrade_database(url, SPEC.migrations)
    population = Population.new(member_count(ctx))
    _progress(f"loading {population.count:,} members into {settings.database_for(SPEC.name)}")
    stats = await load(asyncpg_params(url), population, progress=_progress)
    loaded = Loaded(population, stats)
    ctx.shared[SHARED_KEY] = loaded
    return loaded


def _resolver(channel: grpc.aio.Channel, population: Population) -> Op:
    """One ResolveMember of a random member through the generated stub, its answer checked."""
    stub = identity_service_pb2_grpc.IdentityServiceStub(channel)
    rng = random.Random()

    async def once() -> None:
        i = rng.randrange(population.count)
        value = population.spelling(i, rng.randrange(3))
        request = pb.ResolveMemberRequest(identity=member_pb2.Identity(type="phone", value=value))
        reply = await stub.ResolveMember(request, timeout=CALL_TIMEOUT)
        if reply.member.member_id != population.member_id(i):
            raise AssertionError(f"{value!r} resolved to {reply.member.member_id!r}")

    return once


async def _drive(
    ctx: BenchContext, channel: grpc.aio.Channel, loaded: Loaded, unit: str = "calls"
) -> Measurement:
    await channel.channel_ready()
    once = _resolver(channel, loaded.population)
    load_average = os.getloadavg()[0]
    unloaded = await closed_loop(
        once, concurrency=1, seconds=UNLOADED_SECONDS, warmup=0.2, unit=unit
    )
    measured = await ctx.closed_loop(once, unit=unit)
    latencies = unloaded.latencies_ms or []
    measured.extra.update(
        loaded.stats.extra(),
        unloaded_p50_ms=round(percentile(latencies, 50), 3),
        unloaded_p99_ms=round(percentile(latencies, 99), 3),
        load_average_1m=round(load_average, 2),
    )
    return measured


# --- the ceiling: bare grpc.aio + asyncpg ----------------------------------------------------
_NOT_DIGITS = re.compile(r"\D")


def _e164(value: str) -> str | None:
    """The minimal normalisation of the three spellings the client sends (no phonenumbers)."""
    digits = _NOT_DIGITS.sub("", value)
    if len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    return f"+86{digits}" if len(digits) == 11 and digits.startswith("1") else None


class RawResolver:
    """ResolveMember only, on plain asyncpg (served by a generic handler: no servicer class)."""

    def __init__(self, pool: asyncpg.Pool, index_key: bytes) -> None:
        self.pool = pool
        self.index_key = index_key

    async def ResolveMember(
        self,
        request: pb.ResolveMemberRequest,
        context: grpc.aio.ServicerContext[pb.ResolveMemberRequest, pb.ResolveMemberResponse],
    ) -> pb.ResolveMemberResponse:
        e164 = _e164(request.identity.value)
        if request.identity.type != "phone" or e164 is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "not a phone number")
            raise AssertionError("abort returned")
        message = f"phone\x00{e164}".encode()
        blind = hmac.new(self.index_key, message, hashlib.sha256).digest()
        async with self.pool.acquire() as conn:
            member_id = await conn.fetchval(
                "SELECT member_id FROM identities WHERE identity_type = $1 AND blind_index = $2",
                "phone",
                blind,
            )
            row = None
            if member_id is not None:
                row = await conn.fetchrow(
                    "SELECT member_id, state FROM members WHERE member_id = $1", member_id
                )
        if row is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no member with this phone")
            raise AssertionError("abort returned")
        return pb.ResolveMemberResponse(member=member_pb2.Member(member_id=str(row["member_id"])))

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        return unary_handler(
            SERVICE,
            "ResolveMember",
            self.ResolveMember,
            pb.ResolveMemberRequest,
            pb.ResolveMemberResponse,
        )


@scenario("raw-identity-resolve")
async def raw_identity_resolve(ctx: BenchContext) -> Measurement:
    """Ceiling: bare grpc.aio server; asyncpg SELECTs the identity by blind index, then the member.

    Same population, client and checks as identity-resolve; the blind index is an HMAC in
    Python, the phone normalised by stripping non-digits, the answer just the member id. The
    pool has as many connections as the service's engine may open (pool_size + max_overflow).
    """
    loaded = await _population(ctx)
    settings = ctx.settings()
    size = 2 * settings.database_pool_size
    url = settings.service_database_url(SPEC.name)
    pool = await asyncpg.create_pool(**asyncpg_params(url), min_size=size, max_size=size)
    server = grpc.aio.server()
    resolver = RawResolver(pool, loaded.population.keyring().index_key)
    server.add_generic_rpc_handlers((resolver.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            measured = await _drive(ctx, channel, loaded)
        measured.extra["pool_size"] = size
        return measured
    finally:
        await server.stop(0)
        await pool.close()


# --- the service ---------------------------------------------------------------------------------
@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@scenario("identity-resolve", ceiling="raw-identity-resolve")
async def identity_resolve(ctx: BenchContext) -> Measurement:
    """ResolveMember of the identity service (start_service, migrations on) over --members.

    The service gets the population's keys through LOYALTY_IDENTITY_KEYS and
    LOYALTY_IDENTITY_BLIND_INDEX_KEY; callers have no personal-data scope. `extra` has the
    load (members/s), the latency one call at a time, and SQL statements and pool check-outs
    per call (counted on the service's engine during a short extra phase, not the measured one).
    """
    loaded = await _population(ctx)
    with _environment(loaded.population.env()):
        service = await start_service(SPEC, ctx.settings(), port=0)
    try:
        await service.wait_until_serving()
        engine = service.context.engine
        assert engine is not None
        async with grpc.aio.insecure_channel(service.target) as channel:
            measured = await _drive(ctx, channel, loaded)
            once = _resolver(channel, loaded.population)
            counter = EngineCounter(engine)
            calls = 200
            try:
                for _ in range(calls):
                    await once()
            finally:
                counter.remove()
        measured.extra.update(
            statements_per_call=round(counter.statements / calls, 2),
            checkouts_per_call=round(counter.checkouts / calls, 2),
            pool_size=2 * service.context.settings.database_pool_size,
        )
        return measured
    finally:
        await service.stop(grace=0.5)
