"""The gRPC load of `bench --deployed`, a process of its own:
`python -m bench.deployed_load` with its configuration as JSON on stdin.

`connections` channels (each its own TCP connection: a local subchannel pool per channel),
`concurrency` workers calling back to back, worker k on channel k mod connections; `warmup`
seconds unmeasured, then `seconds` measured. Prints `measuring` when the measured phase
starts and `measured` when its last call has ended (the runner reads the servers' CPU time at
those two lines), then one JSON object: count, seconds, p50_ms, p99_ms, errors (by status
code; a call answered wrongly counts as `WRONG_ANSWER`) and this process's CPU seconds.

Kinds: `earn` (EarnPoints as a mall POS for a random one of `members`, a new order of 1-3 CNY
lines, points checked), `resolve` (ResolveMember of a random one of `phones` as an anonymous
caller, the member id checked), `entitlements` (ListEntitlements at the mall for a random one of
`members` as a mall client, answered with a tier), `issue` (IssueCoupons of `template` to a
random one of `members` with a new request id as the mall's marketing, one coupon of that
template for that member answered).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from loyalty.benefits.v1 import benefits_service_pb2 as benefits_pb
from loyalty.benefits.v1 import benefits_service_pb2_grpc
from loyalty.common.v1 import channel_pb2, money_pb2
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import identity_service_pb2_grpc, member_pb2
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.points.v1 import points_service_pb2_grpc

from bench.load import percentile

TIMEOUT = 30.0
POS_METADATA = (
    ("x-loyalty-unit", "mall"),
    ("x-loyalty-client", "bench-pos"),
    ("x-loyalty-scopes", "earn"),
)
ISSUER_METADATA = (
    ("x-loyalty-unit", "mall"),
    ("x-loyalty-client", "bench-marketing"),
    ("x-loyalty-scopes", "coupons:issue"),
)
Op = Callable[[], Awaitable[None]]


class WrongAnswer(Exception):
    pass


def earner(channel: grpc.aio.Channel, members: list[str], rng: random.Random) -> Op:
    stub = points_service_pb2_grpc.PointsServiceStub(channel)

    async def once() -> None:
        lines = []
        for i in range(rng.randint(1, 3)):
            cents = rng.randrange(1_000, 50_001)
            amount = money_pb2.Money(
                currency_code="CNY", amount=f"{cents // 100}.{cents % 100:02d}"
            )
            lines.append(points_pb.OrderLine(line_id=str(i + 1), amount=amount, quantity=1))
        request = points_pb.EarnPointsRequest(
            member=members[rng.randrange(len(members))],
            request_id=uuid.uuid4().hex,
            unit="mall",
            channel=channel_pb2.CHANNEL_POS,
            order_id=f"bench-{uuid.uuid4().hex}",
            lines=lines,
        )
        reply = await stub.EarnPoints(request, metadata=POS_METADATA, timeout=TIMEOUT)
        if reply.posting.points < 10:
            raise WrongAnswer(f"earned {reply.posting.points}")

    return once


def resolver(
    channel: grpc.aio.Channel, phones: list[str], members: list[str], rng: random.Random
) -> Op:
    stub = identity_service_pb2_grpc.IdentityServiceStub(channel)

    async def once() -> None:
        i = rng.randrange(len(phones))
        request = identity_pb.ResolveMemberRequest(
            identity=member_pb2.Identity(type="phone", value=phones[i])
        )
        reply = await stub.ResolveMember(request, timeout=TIMEOUT)
        if f"members/{reply.member.member_id}" != members[i]:
            raise WrongAnswer(f"{phones[i]} resolved to {reply.member.member_id}")

    return once


def entitlements(channel: grpc.aio.Channel, members: list[str], rng: random.Random) -> Op:
    stub = benefits_service_pb2_grpc.BenefitsServiceStub(channel)

    async def once() -> None:
        member = members[rng.randrange(len(members))]
        request = benefits_pb.ListEntitlementsRequest(member=member, unit="mall")
        reply = await stub.ListEntitlements(request, metadata=POS_METADATA, timeout=TIMEOUT)
        if not reply.tier:
            raise WrongAnswer(f"{member}: no tier")

    return once


def issuer(channel: grpc.aio.Channel, members: list[str], template: str, rng: random.Random) -> Op:
    stub = benefits_service_pb2_grpc.BenefitsServiceStub(channel)

    async def once() -> None:
        member = members[rng.randrange(len(members))]
        request = benefits_pb.IssueCouponsRequest(
            template=template, request_id=uuid.uuid4().hex, members=[member]
        )
        reply = await stub.IssueCoupons(request, metadata=ISSUER_METADATA, timeout=TIMEOUT)
        got = [(c.name.partition("/coupons/")[0], c.template_code) for c in reply.coupons]
        if got != [(member, template)]:
            raise WrongAnswer(f"{member}: {got}")

    return once


async def run(config: dict[str, Any]) -> dict[str, Any]:
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.insecure_channel(config["target"], options=options)
        for _ in range(config["connections"])
    ]
    for channel in channels:
        await channel.channel_ready()
    rng = random.Random()
    ops: list[Op] = []
    for k in range(config["concurrency"]):
        channel = channels[k % len(channels)]
        if config["kind"] == "earn":
            ops.append(earner(channel, config["members"], rng))
        elif config["kind"] == "entitlements":
            ops.append(entitlements(channel, config["members"], rng))
        elif config["kind"] == "issue":
            ops.append(issuer(channel, config["members"], config["template"], rng))
        else:
            ops.append(resolver(channel, config["phones"], config["members"], rng))
    errors: Counter[str] = Counter()
    clock = time.perf_counter

    async def phase(seconds: float, latencies: list[float] | None) -> float:
        started = clock()
        stop_at = started + seconds

        async def worker(op: Op) -> None:
            while clock() < stop_at:
                began = clock()
                try:
                    await op()
                except grpc.aio.AioRpcError as error:
                    errors[error.code().name] += 1
                    continue
                except WrongAnswer:
                    errors["WRONG_ANSWER"] += 1
                    continue
                if latencies is not None:
                    latencies.append((clock() - began) * 1000.0)

        await asyncio.gather(*(worker(op) for op in ops))
        return clock() - started

    if config["warmup"] > 0:
        await phase(config["warmup"], None)
    errors.clear()
    latencies: list[float] = []
    cpu = time.process_time()
    print("measuring", flush=True)
    elapsed = await phase(config["seconds"], latencies)
    print("measured", flush=True)
    cpu = time.process_time() - cpu
    for channel in channels:
        await channel.close()
    return {
        "count": len(latencies),
        "seconds": elapsed,
        "p50_ms": round(percentile(latencies, 50), 3) if latencies else None,
        "p99_ms": round(percentile(latencies, 99), 3) if latencies else None,
        "latencies_ms": latencies,
        "errors": dict(errors),
        "load_cpu_s": round(cpu, 3),
    }


def main() -> None:
    config = json.loads(sys.stdin.read())
    print(json.dumps(asyncio.run(run(config))), flush=True)


if __name__ == "__main__":
    main()
