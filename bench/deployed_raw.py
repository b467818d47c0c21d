"""The raw ceilings of `bench --deployed`, each a process of its own:
`python -m bench.deployed_raw ROLE CONFIG_JSON` prints `ready <port>` once serving, then serves
until SIGTERM.

Roles:
- `identity`: bare grpc.aio `ResolveMember` on asyncpg (`bench.scenarios.identity.RawResolver`:
  the blind index in Python, the identity and the member row by two SELECTs), over the suite's
  own identity database (read only).
- `points`: bare grpc.aio `EarnPoints` on asyncpg (`bench.scenarios.points.RawEarner`: the
  service's 8 statements in one transaction) in a database of its own.
- `reads`: bare grpc.aio `PreviewMemberTier`, `ListEntitlements` and `ListCoupons`, one indexed
  SELECT each (the member's account row): stand-ins for the composite's three parallel reads,
  the same round trips, not the tiers and benefits services' statements.
- `entitlements`: bare grpc.aio `ListEntitlements` on asyncpg
  (`bench.scenarios.benefits.RawEntitlements`: the service's two or three statements, its
  domain functions) over the suite's own benefits database (read only).
- `front`: uvicorn (as the gateway runs it) with a bare ASGI callable, no routing table, no
  token: `POST /v1/purchases:record` looks the request id up (one SELECT), calls `identity`,
  then `points`, then the three `reads` at once over grpc.aio, keeps the answer (one INSERT)
  and answers JSON: the composite's calls and its two statements.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import signal
import sys
import uuid
from typing import Any

import asyncpg
import grpc
import uvicorn
from loyalty.benefits.v1 import benefits_service_pb2 as benefits_pb
from loyalty.common.v1 import channel_pb2, money_pb2
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import member_pb2
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_pb
from loyalty_gateway.http.server import Server
from loyalty_identity.adapters.crypto import Keyring
from loyalty_kit.db import asyncpg_params
from sqlalchemy.engine import make_url

from bench.scenarios.benefits import RawEntitlements
from bench.scenarios.identity import RawResolver
from bench.scenarios.points import POS, PROGRAMME, RawEarner

TIERS = "loyalty.tiers.v1.TiersService"
BENEFITS = "loyalty.benefits.v1.BenefitsService"
IDENTITY = "loyalty.identity.v1.IdentityService"
POINTS = "loyalty.points.v1.PointsService"
TIMEOUT = 30.0
ACCOUNT_READ = "SELECT tier, available FROM accounts WHERE member_id = $1"
RECALL = (
    "SELECT fingerprint, response FROM kit_idempotency_keys "
    "WHERE scope = $1 AND request_id = $2 AND response IS NOT NULL"
)
REMEMBER = (
    "INSERT INTO kit_idempotency_keys (scope, request_id, fingerprint, response) "
    "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true"
)


async def _pool(url: str, size: int) -> asyncpg.Pool:
    return await asyncpg.create_pool(**asyncpg_params(make_url(url)), min_size=size, max_size=size)


def _handlers(service: str, methods: dict[str, tuple[Any, Any, Any]]) -> Any:
    return grpc.method_handlers_generic_handler(
        service,
        {
            name: grpc.unary_unary_rpc_method_handler(
                behaviour,
                request_deserializer=request.FromString,
                response_serializer=response.SerializeToString,
            )
            for name, (behaviour, request, response) in methods.items()
        },
    )


class Reads:
    """The composite's three reads, one SELECT of the member's account each."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def _account(self, member: str) -> Any:
        return await self.pool.fetchrow(ACCOUNT_READ, uuid.UUID(member.removeprefix("members/")))

    async def preview(self, request: Any, _context: Any) -> tiers_pb.PreviewMemberTierResponse:
        row = await self._account(request.member)
        return tiers_pb.PreviewMemberTierResponse(tier=(row["tier"] if row else "") or "basic")

    async def entitlements(self, request: Any, _context: Any) -> Any:
        row = await self._account(request.member)
        return benefits_pb.ListEntitlementsResponse(tier=(row["tier"] if row else "") or "basic")

    async def coupons(self, request: Any, _context: Any) -> Any:
        await self._account(request.member)
        return benefits_pb.ListCouponsResponse()

    def handlers(self) -> list[Any]:
        return [
            _handlers(
                TIERS,
                {
                    "PreviewMemberTier": (
                        self.preview,
                        tiers_pb.PreviewMemberTierRequest,
                        tiers_pb.PreviewMemberTierResponse,
                    )
                },
            ),
            _handlers(
                BENEFITS,
                {
                    "ListEntitlements": (
                        self.entitlements,
                        benefits_pb.ListEntitlementsRequest,
                        benefits_pb.ListEntitlementsResponse,
                    ),
                    "ListCoupons": (
                        self.coupons,
                        benefits_pb.ListCouponsRequest,
                        benefits_pb.ListCouponsResponse,
                    ),
                },
            ),
        ]


def _call(channel: grpc.aio.Channel, service: str, method: str, response: Any) -> Any:
    return channel.unary_unary(
        f"/{service}/{method}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response.FromString,
    )


class Front:
    """A bare ASGI callable: the purchase composite's calls and statements, nothing else."""

    SCOPE = "loyalty.gateway.v1.GatewayService/RecordPurchase:bench-raw"

    def __init__(self, pool: asyncpg.Pool, targets: dict[str, str]) -> None:
        self.pool = pool
        self.channels = {n: grpc.aio.insecure_channel(t) for n, t in targets.items()}
        self.resolve = _call(
            self.channels["identity"], IDENTITY, "ResolveMember", identity_pb.ResolveMemberResponse
        )
        self.earn = _call(
            self.channels["points"], POINTS, "EarnPoints", points_pb.EarnPointsResponse
        )
        self.preview = _call(
            self.channels["reads"],
            TIERS,
            "PreviewMemberTier",
            tiers_pb.PreviewMemberTierResponse,
        )
        self.entitlements = _call(
            self.channels["reads"],
            BENEFITS,
            "ListEntitlements",
            benefits_pb.ListEntitlementsResponse,
        )
        self.coupons = _call(
            self.channels["reads"], BENEFITS, "ListCoupons", benefits_pb.ListCouponsResponse
        )
        self.metadata = POS.metadata()

    async def purchase(self, body: dict[str, Any]) -> dict[str, Any]:
        request_id = body["requestId"]
        fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        if await self.pool.fetchrow(RECALL, self.SCOPE, request_id) is not None:
            raise ValueError("request id answered before")
        identity = member_pb2.Identity(
            type=body["identity"]["type"], value=body["identity"]["value"]
        )
        resolved = await self.resolve(
            identity_pb.ResolveMemberRequest(identity=identity), timeout=TIMEOUT
        )
        member = f"members/{resolved.member.member_id}"
        lines = [
            points_pb.OrderLine(
                line_id=line["lineId"],
                amount=money_pb2.Money(
                    currency_code=line["amount"]["currencyCode"], amount=line["amount"]["amount"]
                ),
                quantity=1,
            )
            for line in body["lines"]
        ]
        earned = await self.earn(
            points_pb.EarnPointsRequest(
                member=member,
                request_id=request_id,
                unit=body["unit"],
                channel=channel_pb2.CHANNEL_POS,
                order_id=body["orderId"],
                lines=lines,
            ),
            metadata=self.metadata,
            timeout=TIMEOUT,
        )
        tier, _entitlements, _coupons = await asyncio.gather(
            self.preview(tiers_pb.PreviewMemberTierRequest(member=member), timeout=TIMEOUT),
            self.entitlements(
                benefits_pb.ListEntitlementsRequest(member=member, unit=body["unit"]),
                timeout=TIMEOUT,
            ),
            self.coupons(benefits_pb.ListCouponsRequest(member=member), timeout=TIMEOUT),
        )
        answer = {
            "member": member,
            "posting": {"points": str(earned.posting.points)},
            "balance": {"available": str(earned.balance.available)},
            "tier": tier.tier,
            "unavailable": [],
        }
        text = json.dumps(answer).encode()
        await self.pool.fetchval(REMEMBER, self.SCOPE, request_id, fingerprint, text)
        return answer

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        status, text = 200, b""
        try:
            text = json.dumps(await self.purchase(json.loads(b"".join(chunks)))).encode()
        except Exception as error:  # the load counts non-200 answers
            status, text = 500, str(error).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": text})


async def _grpc(handlers: list[Any], stop: asyncio.Event) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(handlers)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"ready {port}", flush=True)
    await stop.wait()
    await server.stop(0.5)


async def serve(role: str, config: dict[str, Any]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    pool = await _pool(config["database_url"], config["pool"])
    try:
        if role == "identity":
            keyring = Keyring.parse(config["keys"], config["blind_index_key"])
            await _grpc([RawResolver(pool, keyring.index_key).handler()], stop)
        elif role == "points":
            version = await pool.fetchval(PROGRAMME)
            await _grpc([RawEarner(pool, config["namespace"], version).handler()], stop)
        elif role == "entitlements":
            await _grpc([RawEntitlements(pool).handler()], stop)
        elif role == "reads":
            await _grpc(Reads(pool).handlers(), stop)
        elif role == "front":
            front = Front(pool, config["targets"])
            server = Server(
                uvicorn.Config(
                    front,
                    host="127.0.0.1",
                    port=config["port"],
                    log_level="warning",
                    access_log=False,
                    lifespan="on",
                )
            )
            task = asyncio.create_task(server.serve())
            while not server.started and not task.done():
                await asyncio.sleep(0.01)
            print(f"ready {config['port']}", flush=True)
            await stop.wait()
            server.should_exit = True
            await task
            for channel in front.channels.values():
                await channel.close()
        else:
            raise SystemExit(f"unknown role {role!r}")
    finally:
        with contextlib.suppress(Exception):
            await pool.close()


def main() -> None:
    role, config = sys.argv[1], json.loads(sys.argv[2])
    asyncio.run(serve(role, config))


if __name__ == "__main__":
    main()
