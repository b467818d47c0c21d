"""Member codes (会员码) resolved at the till: the identity service against bare grpc.aio + asyncpg.

Both scenarios use the run's identity population (bench/scenarios/identity.py) and give the
first `CODED` of its members a code secret and a handle, sealed with each member's own data
key exactly as the service stores them (`member_codes`). The client holds the secrets, so it
makes each call's code itself (the TOTP of now) for the next member in turn: a code resolves
once, and a member comes round again only after all the others (50,000 calls: steps later at
the rates these scenarios reach; a code scanned twice in its step would fail the scenario).
Each call is a `ResolveMember` with identity type `member_code`, as an anonymous till (masked
answer), the member id checked.

Measured: a closed loop (`--concurrency` in flight, `--seconds`: throughput and the ratio to
the ceiling), then a steady load of `BENCH_MEMBER_CODE_RATE` calls a second (default 200) for
`--seconds` (open loop: `extra.steady_p50_ms` / `steady_p99_ms`, against the 20 ms p99 goal).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import grpc
from loyalty.identity.v1 import identity_service_pb2 as pb
from loyalty.identity.v1 import identity_service_pb2_grpc, member_pb2
from loyalty_identity.adapters.crypto import seal, unseal
from loyalty_identity.app import SPEC
from loyalty_identity.domain.member_code import (
    ACCEPTED_STEPS,
    MemberCodeSecret,
    parse,
    step_of,
)
from loyalty_kit.db import asyncpg_params
from loyalty_kit.server import start_service

from bench.context import BenchContext
from bench.counters import round_trips
from bench.echo import unary_handler
from bench.load import Op, beside_ceiling, latency_p99s, latency_phases
from bench.registry import Measurement, scenario
from bench.scenarios.identity import SERVICE, Loaded, _environment, _population

CODED = 50_000  # members given a code (at most the population)
HANDLE_STRIDE = 7_919  # coprime with 10**10: i -> (i * stride + offset) mod 10**10 is one-to-one
GOAL_P99_MS = 20.0
CALL_TIMEOUT = 30.0
SHARED_KEY = "member-codes"
CEILING_KEY = "member-codes-ceiling"  # the raw scenario's (closed p99, steady p99)


@dataclass
class Coded:
    secrets: list[MemberCodeSecret]  # member i's, for the first len(secrets) members
    seconds: float  # to make and store them
    turn: itertools.count[int]  # the next member to show a code (shared by both scenarios)


def _secret(loaded: Loaded, i: int) -> MemberCodeSecret:
    population = loaded.population
    digest = hashlib.blake2b(i.to_bytes(8, "big"), key=population.salt, digest_size=20).digest()
    handle = f"{(i * HANDLE_STRIDE + population.offset) % 10**10:010d}"
    return MemberCodeSecret(population.member_id(i), handle, base64.b32encode(digest).decode())


async def _coded(ctx: BenchContext, loaded: Loaded) -> Coded:
    """The code secrets of the population's first members, stored once per run."""
    found = ctx.shared.get(SHARED_KEY)
    if isinstance(found, Coded):
        return found
    started = time.perf_counter()
    count = min(CODED, loaded.population.count)
    secrets = [_secret(loaded, i) for i in range(count)]
    keyring = loaded.population.keyring()
    url = ctx.settings().service_database_url(SPEC.name)
    conn = await asyncpg.connect(**asyncpg_params(url))
    try:
        keys = {
            str(r["member_id"]): (r["key_id"], r["wrapped_key"])
            for r in await conn.fetch(
                "SELECT member_id, key_id, wrapped_key FROM member_keys "
                "WHERE member_id = ANY($1::uuid[])",
                [s.member_id for s in secrets],
            )
        }
        now = datetime.now(UTC)
        rows = []
        for secret in secrets:
            data_key = keyring.unwrap(secret.member_id, *keys[secret.member_id])
            sealed = seal(data_key, secret.secret, f"{secret.member_id}/member_code_secret")
            rows.append((secret.member_id, secret.handle, sealed, now))
        await conn.copy_records_to_table(
            "member_codes",
            records=rows,
            columns=("member_id", "handle", "secret_sealed", "created_at"),
        )
        await conn.execute("ANALYZE member_codes")
    finally:
        await conn.close()
    coded = Coded(secrets, time.perf_counter() - started, itertools.count())
    ctx.shared[SHARED_KEY] = coded
    return coded


def _scanner(channel: grpc.aio.Channel, coded: Coded) -> Op:
    """One ResolveMember of the next member's code of now, its answer checked."""
    stub = identity_service_pb2_grpc.IdentityServiceStub(channel)

    async def once() -> None:
        secret = coded.secrets[next(coded.turn) % len(coded.secrets)]
        code = secret.code_for(step_of(datetime.now(UTC)))
        identity = member_pb2.Identity(type="member_code", value=code)
        request = pb.ResolveMemberRequest(identity=identity)
        reply = await stub.ResolveMember(request, timeout=CALL_TIMEOUT)
        if reply.member.member_id != secret.member_id:
            raise AssertionError(f"a code of {secret.member_id} resolved to {reply.member}")

    return once


def _rate() -> float:
    return float(os.environ.get("BENCH_MEMBER_CODE_RATE", "200"))


async def _drive(ctx: BenchContext, channel: grpc.aio.Channel, coded: Coded) -> Measurement:
    await channel.channel_ready()
    measured = await latency_phases(
        _scanner(channel, coded),
        unit="codes",
        concurrency=ctx.concurrency,
        seconds=ctx.seconds,
        warmup=ctx.warmup,
        rate=_rate(),
        goal_p99_ms=GOAL_P99_MS,
    )
    measured.extra.update(
        coded_members=len(coded.secrets), code_load_seconds=round(coded.seconds, 1)
    )
    return measured


# --- the ceiling: bare grpc.aio + asyncpg ----------------------------------------------------
_SECRET = (
    "SELECT c.member_id, c.secret_sealed, k.key_id, k.wrapped_key FROM member_codes c "
    "JOIN member_keys k ON k.member_id = c.member_id WHERE c.handle = $1"
)
_CLAIM = (
    "INSERT INTO member_code_uses (handle, step, used_at) VALUES ($1, $2, now()) "
    "ON CONFLICT DO NOTHING RETURNING step"
)


class RawCodeResolver:
    """ResolveMember of a member code only, on plain asyncpg: the secret by handle (with the
    wrapped data key), unwrapped and unsealed, the TOTP of the accepted steps compared, the use
    claimed and the member row read in one durable transaction."""

    def __init__(self, pool: asyncpg.Pool, loaded: Loaded) -> None:
        self.pool = pool
        self.keyring = loaded.population.keyring()

    async def ResolveMember(
        self,
        request: pb.ResolveMemberRequest,
        context: grpc.aio.ServicerContext[pb.ResolveMemberRequest, pb.ResolveMemberResponse],
    ) -> pb.ResolveMemberResponse:
        scanned = parse(request.identity.value, "identity.value")
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(_SECRET, scanned.handle)
            if row is None:
                await context.abort(grpc.StatusCode.NOT_FOUND, "unknown code")
                raise AssertionError("abort returned")
            member_id = str(row["member_id"])
            data_key = self.keyring.unwrap(member_id, row["key_id"], row["wrapped_key"])
            secret = MemberCodeSecret(
                member_id,
                scanned.handle,
                unseal(data_key, row["secret_sealed"], f"{member_id}/member_code_secret"),
            )
            current = step_of(datetime.now(UTC))
            steps = [
                s
                for s in range(current, current - ACCEPTED_STEPS, -1)
                if secret.code_for(s)[-6:] == scanned.otp
            ]
            if not steps:
                await context.abort(grpc.StatusCode.NOT_FOUND, "unknown code")
                raise AssertionError("abort returned")
            async with conn.transaction():
                claimed = await conn.fetchval(_CLAIM, scanned.handle, steps[0])
                member = await conn.fetchrow(
                    "SELECT member_id, state FROM members WHERE member_id = $1", member_id
                )
        if claimed is None or member is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "used")
            raise AssertionError("abort returned")
        return pb.ResolveMemberResponse(member=member_pb2.Member(member_id=member_id))

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        return unary_handler(
            SERVICE,
            "ResolveMember",
            self.ResolveMember,
            pb.ResolveMemberRequest,
            pb.ResolveMemberResponse,
        )


@scenario("raw-member-code-resolve")
async def raw_member_code_resolve(ctx: BenchContext) -> Measurement:
    """Ceiling: bare grpc.aio; asyncpg reads the secret by handle, claims the use, reads the
    member.

    Same population, codes, client and checks as member-code-resolve; sealing and TOTP are the
    service's own functions, the answer just the member id. Pool of 20 (as the service's
    engine may open).
    """
    loaded = await _population(ctx)
    coded = await _coded(ctx, loaded)
    settings = ctx.settings()
    size = 2 * settings.database_pool_size
    url = settings.service_database_url(SPEC.name)
    pool = await asyncpg.create_pool(**asyncpg_params(url), min_size=size, max_size=size)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((RawCodeResolver(pool, loaded).handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            measured = await _drive(ctx, channel, coded)
        measured.extra["pool_size"] = size
        ctx.shared[CEILING_KEY] = latency_p99s(measured)
        return measured
    finally:
        await server.stop(0)
        await pool.close()


@scenario("member-code-resolve", ceiling="raw-member-code-resolve")
async def member_code_resolve(ctx: BenchContext) -> Measurement:
    """ResolveMember of member codes by the identity service (start_service, migrations on).

    The service gets the population's keys; callers are anonymous tills (masked answers).
    `extra`: the steady load's p50/p99 against the 20 ms goal, and both p99s against the
    ceiling's (`p99_vs_ceiling`, `steady_p99_vs_ceiling`).
    """
    loaded = await _population(ctx)
    coded = await _coded(ctx, loaded)
    with _environment(loaded.population.env()):
        service = await start_service(SPEC, ctx.settings(), port=0)
    try:
        await service.wait_until_serving()
        engine = service.context.engine
        assert engine is not None
        async with grpc.aio.insecure_channel(service.target) as channel:
            measured = await _drive(ctx, channel, coded)
            once = _scanner(channel, coded)
            measured.extra.update(await round_trips(engine, once, 200, 8))
        beside_ceiling(measured, ctx.shared.get(CEILING_KEY))
        return measured
    finally:
        await service.stop(grace=0.5)
