"""A member's sign-in code checked: VerifySmsSignIn of the identity service against bare
grpc.aio + asyncpg doing the same database round trips.

Both scenarios use the run's identity population (bench/scenarios/identity.py). Before each,
`CHALLENGES` sign-in challenges are written straight into `sign_in_challenges` as StartSmsSignIn
keeps them (the phone sealed, the code's keyed hash bound to the challenge, the address
hashed), one for each of the population's first members in turn, all with the code `CODE`
(no SMS is sent: engagement is not needed). Each call checks the next challenge's code, so it
signs in an existing member: the challenge locked and used up, the member found by the phone's
blind index, a session and its refresh token stored, a member access token signed.

Measured: a closed loop (`--concurrency` in flight, `--seconds`: throughput and the ratio to
the ceiling), then a steady load of `BENCH_SIGN_IN_RATE` calls a second (default 50) for
`--seconds` (open loop: `extra.steady_p50_ms` / `steady_p99_ms`, against the 50 ms p99 goal).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from loyalty.identity.v1 import member_pb2, member_sign_in_pb2_grpc
from loyalty.identity.v1 import member_sign_in_pb2 as pb
from loyalty_identity.adapters.crypto import Keyring
from loyalty_identity.app import SPEC
from loyalty_identity.domain.identities import ChannelIdentity
from loyalty_identity.domain.sign_in import CODE_LIFETIME, code_digest
from loyalty_kit.auth import SigningKey
from loyalty_kit.caller import Caller
from loyalty_kit.db import asyncpg_params
from loyalty_kit.scopes import MEMBER_SCOPES
from loyalty_kit.server import start_service

from bench.context import BenchContext
from bench.counters import round_trips
from bench.echo import unary_handler
from bench.load import Op, beside_ceiling, latency_p99s, latency_phases
from bench.registry import Measurement, scenario
from bench.scenarios.identity import Loaded, _environment, _population

CHALLENGES = 6_000  # written before each scenario; every call uses one up
CODE = "246810"
GOAL_P99_MS = 50.0
CALL_TIMEOUT = 30.0
SERVICE = "loyalty.identity.v1.MemberSignInService"
ADDRESS = "198.51.100.7"
CEILING_KEY = "sign-in-ceiling"  # the raw scenario's (closed p99, steady p99)
SIGNING_KEY = "sign-in-signing-key"
# The member app's backend, which asks for codes and checks them (caller headers: trusted here).
APP = Caller(unit="mall", client_id="member-app", scopes=frozenset({"members:sign_in"})).metadata()


@dataclass
class Challenges:
    ids: list[tuple[str, int]]  # (challenge id, the member's index in the population)
    turn: itertools.count[int]


def _signing_key(ctx: BenchContext) -> str:
    """An Ed25519 key for member tokens, `<kid>:<base64url private>`, one per run."""
    found = ctx.shared.get(SIGNING_KEY)
    if isinstance(found, str):
        return found
    raw = Ed25519PrivateKey.generate().private_bytes(
        Encoding.Raw, PrivateFormat.Raw, NoEncryption()
    )
    text = "bench:" + base64.urlsafe_b64encode(raw).decode().rstrip("=")
    ctx.shared[SIGNING_KEY] = text
    return text


async def _challenges(ctx: BenchContext, loaded: Loaded) -> Challenges:
    """`CHALLENGES` pending challenges of the population's first members, written now."""
    keyring = loaded.population.keyring()
    code_key = keyring.derived_key("sign-in-code")
    address = hmac.digest(keyring.derived_key("sign-in-address"), ADDRESS.encode(), "sha256")
    now = datetime.now(UTC)
    rows, ids = [], []
    start = int(ctx.shared.get("sign-in-next", 0))
    for n in range(CHALLENGES):
        i = (start + n) % loaded.population.count
        challenge_id = str(uuid.uuid4())
        phone = ChannelIdentity("phone", loaded.population.e164(i))
        key_id, sealed = keyring.seal_short_lived(phone.value, challenge_id)
        rows.append(
            (
                uuid.UUID(challenge_id),
                keyring.blind_index(phone),
                address,
                key_id,
                sealed,
                code_digest(code_key, challenge_id, CODE),
                0,
                "pending",
                now,
                now + CODE_LIFETIME,
            )
        )
        ids.append((challenge_id, i))
    ctx.shared["sign-in-next"] = start + CHALLENGES
    url = ctx.settings().service_database_url(SPEC.name)
    conn = await asyncpg.connect(**asyncpg_params(url))
    try:
        await conn.copy_records_to_table(
            "sign_in_challenges",
            records=rows,
            columns=(
                "challenge_id",
                "phone_index",
                "address_index",
                "key_id",
                "phone_sealed",
                "code_hash",
                "attempts",
                "state",
                "created_at",
                "expires_at",
            ),
        )
        await conn.execute("ANALYZE sign_in_challenges")
    finally:
        await conn.close()
    return Challenges(ids, itertools.count())


def _verifier(channel: grpc.aio.Channel, loaded: Loaded, challenges: Challenges) -> Op:
    """One VerifySmsSignIn of the next challenge with its right code, the member checked."""
    stub = member_sign_in_pb2_grpc.MemberSignInServiceStub(channel)

    async def once() -> None:
        n = next(challenges.turn)
        if n >= len(challenges.ids):
            raise AssertionError(f"all {len(challenges.ids)} challenges used: raise CHALLENGES")
        challenge_id, i = challenges.ids[n]
        request = pb.VerifySmsSignInRequest(
            challenge=f"signInChallenges/{challenge_id}", code=CODE, unit="mall"
        )
        reply = await stub.VerifySmsSignIn(request, timeout=CALL_TIMEOUT, metadata=APP)
        if reply.member.member_id != loaded.population.member_id(i) or reply.registered:
            raise AssertionError(f"challenge {challenge_id} signed in {reply.member.member_id}")
        if not reply.tokens.access_token or not reply.tokens.refresh_token:
            raise AssertionError("no tokens")

    return once


def _rate() -> float:
    return float(os.environ.get("BENCH_SIGN_IN_RATE", "50"))


async def _drive(
    ctx: BenchContext, channel: grpc.aio.Channel, loaded: Loaded, challenges: Challenges
) -> Measurement:
    await channel.channel_ready()
    return await latency_phases(
        _verifier(channel, loaded, challenges),
        unit="sign-ins",
        concurrency=ctx.concurrency,
        seconds=ctx.seconds,
        warmup=ctx.warmup,
        rate=_rate(),
        goal_p99_ms=GOAL_P99_MS,
    )


# --- the ceiling: bare grpc.aio + asyncpg ----------------------------------------------------
_CHALLENGE = (
    "SELECT challenge_id, key_id, phone_sealed, code_hash, attempts, state, expires_at "
    "FROM sign_in_challenges WHERE challenge_id = $1 FOR UPDATE"
)
_USE = (
    "UPDATE sign_in_challenges SET attempts = attempts + 1, state = 'used' WHERE challenge_id = $1"
)
_OWNER = "SELECT member_id FROM identities WHERE identity_type = 'phone' AND blind_index = $1"
_MEMBER = "SELECT member_id, state FROM members WHERE member_id = $1"
_SESSION = (
    "INSERT INTO member_sessions (member_id, session_id, method, created_at) "
    "VALUES ($1, $2, 'CHANNEL_APP', $3)"
)
_REFRESH = (
    "INSERT INTO member_refresh_tokens (token_hash, session_id, member_id, issued_at, expires_at) "
    "VALUES ($1, $2, $3, $4, $5)"
)


class RawVerifier:
    """VerifySmsSignIn only, on plain asyncpg: in one durable transaction the challenge locked,
    its code compared and the challenge used up, the member found by the phone's blind index
    and read, a session and its refresh token inserted; then the access token signed."""

    def __init__(self, pool: asyncpg.Pool, keyring: Keyring, signing: SigningKey) -> None:
        self.pool = pool
        self.keyring = keyring
        self.code_key = keyring.derived_key("sign-in-code")
        self.signing = signing

    async def VerifySmsSignIn(
        self,
        request: pb.VerifySmsSignInRequest,
        context: grpc.aio.ServicerContext[pb.VerifySmsSignInRequest, pb.VerifySmsSignInResponse],
    ) -> pb.VerifySmsSignInResponse:
        challenge_id = request.challenge.removeprefix("signInChallenges/")
        now = datetime.now(UTC)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(_CHALLENGE, uuid.UUID(challenge_id))
            digest = code_digest(self.code_key, challenge_id, request.code)
            if (
                row is None
                or row["state"] != "pending"
                or now >= row["expires_at"]
                or not hmac.compare_digest(digest, row["code_hash"])
            ):
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "refused")
                raise AssertionError("abort returned")
            phone = self.keyring.open_short_lived(row["key_id"], row["phone_sealed"], challenge_id)
            await conn.execute(_USE, row["challenge_id"])
            owner = await conn.fetchval(
                _OWNER, self.keyring.blind_index(ChannelIdentity("phone", phone))
            )
            member = await conn.fetchrow(_MEMBER, owner)
            assert member is not None, "every challenge's phone is a member's"
            session_id = uuid.uuid4()
            await conn.execute(_SESSION, member["member_id"], session_id, now)
            refresh = base64.urlsafe_b64encode(os.urandom(32)).decode()
            await conn.execute(
                _REFRESH,
                hashlib.sha256(refresh.encode()).digest(),
                session_id,
                member["member_id"],
                now,
                now + timedelta(days=30),
            )
        member_id = str(member["member_id"])
        caller = Caller(client_id=f"member:{member_id}", scopes=MEMBER_SCOPES, member=member_id)
        access, _ = self.signing.issue(caller, 600, time.time(), {"sid": str(session_id)})
        return pb.VerifySmsSignInResponse(
            member=member_pb2.Member(member_id=member_id),
            tokens=pb.MemberTokens(access_token=access, refresh_token=refresh),
        )

    def handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        return unary_handler(
            SERVICE,
            "VerifySmsSignIn",
            self.VerifySmsSignIn,
            pb.VerifySmsSignInRequest,
            pb.VerifySmsSignInResponse,
        )


@scenario("raw-sign-in-verify")
async def raw_sign_in_verify(ctx: BenchContext) -> Measurement:
    """Ceiling: bare grpc.aio; asyncpg locks and uses the challenge, finds and reads the member,
    stores a session and its refresh token in one transaction; the access token signed.

    Same population, challenges, client and checks as sign-in-verify. Pool of 20 (as the
    service's engine may open).
    """
    loaded = await _population(ctx)
    challenges = await _challenges(ctx, loaded)
    settings = ctx.settings()
    size = 2 * settings.database_pool_size
    url = settings.service_database_url(SPEC.name)
    pool = await asyncpg.create_pool(**asyncpg_params(url), min_size=size, max_size=size)
    server = grpc.aio.server()
    signing = SigningKey.parse(_signing_key(ctx))
    server.add_generic_rpc_handlers(
        (RawVerifier(pool, loaded.population.keyring(), signing).handler(),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            measured = await _drive(ctx, channel, loaded, challenges)
        measured.extra["pool_size"] = size
        ctx.shared[CEILING_KEY] = latency_p99s(measured)
        return measured
    finally:
        await server.stop(0)
        await pool.close()


@scenario("sign-in-verify", ceiling="raw-sign-in-verify")
async def sign_in_verify(ctx: BenchContext) -> Measurement:
    """VerifySmsSignIn of the identity service (start_service, migrations on) for challenges
    of existing members, as the member app's backend (caller headers, trusted here).

    `extra`: the steady load's p50/p99 against the 50 ms goal, both p99s against the
    ceiling's, and statements per call.
    """
    loaded = await _population(ctx)
    challenges = await _challenges(ctx, loaded)
    env = {**loaded.population.env(), "LOYALTY_AUTH_SERVICE_KEY": _signing_key(ctx)}
    with _environment(env):
        service = await start_service(SPEC, ctx.settings(), port=0)
    try:
        await service.wait_until_serving()
        engine = service.context.engine
        assert engine is not None
        async with grpc.aio.insecure_channel(service.target) as channel:
            measured = await _drive(ctx, channel, loaded, challenges)
            once = _verifier(channel, loaded, challenges)
            measured.extra.update(await round_trips(engine, once, 100, 10))
        beside_ceiling(measured, ctx.shared.get(CEILING_KEY))
        return measured
    finally:
        await service.stop(grace=0.5)
