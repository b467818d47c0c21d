"""Soak: does any service's memory grow under a long mixed load?

`soak-memory` starts the five services as separate processes, as `loyalty-dev run` does
(`python -m loyalty_<name>`, caller headers trusted, development keys in a data folder of the
run, databases `<run>_soak_*`, event namespace `<run>soak`), loads the Huayue demo, and then
for `--soak-seconds` keeps `--concurrency` calls in flight: a quarter of them valid (resolve a
demo member, their tier, balance, entitlements and overview, earn at the mall, register a new
member, preview a tier), the rest random requests to every unary method of every service
(`bench.mixed`: random strings, ids, identity types, ladder and tier names, extreme numbers),
most as an admin. Every service's resident memory (VmRSS) is sampled every few seconds; the
result holds, per service, the RSS after the warm-up (the first fifth of the run, at least
`--warmup`) and at the end, and the growth between them (MB and %): flat is below 10 %.

The admin part suspends, merges, erases and unlinks the members the valid calls use, so some
valid calls are refused rightly: `valid_refused` counts those (`expected`, checked as
`bench.refusals` says) apart from refusals nothing in the soak explains (`unexpected`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import string
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from loyalty.benefits.v1 import benefits_service_pb2 as benefits_pb
from loyalty.common.v1 import channel_pb2, money_pb2
from loyalty.gateway.v1 import gateway_service_pb2 as gateway_pb
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import member_pb2
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_pb
from loyalty_devstack import demo
from loyalty_devstack.cli import wait_serving
from loyalty_devstack.demo_history import NO_HISTORY
from loyalty_devstack.embedded import free_port
from loyalty_kit.settings import Settings

from bench.context import BenchContext
from bench.mixed import UnaryMethod, Vocabulary, random_message, unary_methods
from bench.refusals import Refusals, Subject
from bench.registry import Measurement, scenario

SERVICES = ("identity", "points", "tiers", "benefits", "gateway")
DESCRIPTORS = {
    "identity": identity_pb.DESCRIPTOR,
    "points": points_pb.DESCRIPTOR,
    "tiers": tiers_pb.DESCRIPTOR,
    "benefits": benefits_pb.DESCRIPTOR,
    "gateway": gateway_pb.DESCRIPTOR,
}
ADMIN = (
    ("x-loyalty-unit", "group"),
    ("x-loyalty-client", "soak"),
    ("x-loyalty-scopes", "admin personal_data:read"),
)
VALID_SHARE = 0.25
ADMIN_SHARE = 0.8  # of the random calls; the others as a unit with few scopes (or odd headers)
SAMPLE_SECONDS = 2.0
WARMUP_SHARE = 0.2  # the first fifth of the run is warm-up (caches fill, pools open)
FLAT_PCT = 10.0
CALL_TIMEOUT = 30.0
STARTUP_SECONDS = 120.0
SOAK_CONCURRENCY = 16  # the most calls in flight, whatever --concurrency says: the point is
# the variety and the length of the load, not its pressure (the services share two cores)


def rss_kb(pid: int) -> int | None:
    """Resident memory of a process (kB), from /proc: None once it has gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


@dataclass
class Suite:
    settings: Settings
    env: dict[str, str]
    targets: dict[str, str]
    processes: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)


def _suite(ctx: BenchContext, data_dir: Path) -> Suite:
    ports = {name: free_port() for name in SERVICES}
    http_port = free_port()
    namespace = f"{ctx.run_id}soak"
    env = {
        **os.environ,
        "LOYALTY_DATABASE_URL": ctx.infra.database_url,
        "LOYALTY_NATS_URL": ctx.infra.nats_url,
        "LOYALTY_DATABASE_PREFIX": f"{ctx.run_id}_soak_",
        "LOYALTY_EVENT_NAMESPACE": namespace,
        "LOYALTY_DATA_DIR": str(data_dir),
        "LOYALTY_HOST": "127.0.0.1",
        "LOYALTY_IDENTITY_DEV_KEYS": "true",
        "LOYALTY_AUTH_DEV_KEYS": "true",
        "LOYALTY_AUTH_TRUST_HEADERS": "true",
        "LOYALTY_LOG_FORMAT": "console",
        "LOYALTY_GATEWAY_GRPC_PORT": str(ports["gateway"]),
        "LOYALTY_GATEWAY_HTTP_PORT": str(http_port),
        "PYTHONUNBUFFERED": "1",
    }
    for name in SERVICES[:-1]:
        env[f"LOYALTY_{name.upper()}_PORT"] = str(ports[name])
    settings = ctx.settings(
        database_prefix=f"{ctx.run_id}_soak_",
        event_namespace=namespace,
        data_dir=data_dir,
        gateway_http_port=http_port,
        gateway_grpc_port=ports["gateway"],
        **{f"{n}_port": ports[n] for n in SERVICES[:-1]},
    )
    return Suite(settings, env, {n: f"127.0.0.1:{p}" for n, p in ports.items()})


@contextlib.asynccontextmanager
async def running(suite: Suite, logs: Path) -> AsyncIterator[Suite]:
    """The five services as processes of their own (each one's RSS is its own), stopped after."""
    try:
        for name in SERVICES:
            log = (logs / f"{name}.log").open("wb")
            suite.processes[name] = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                f"loyalty_{name}",
                env=suite.env,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
            log.close()
            try:
                await wait_serving(suite.targets[name], timeout=STARTUP_SECONDS)
            except TimeoutError:
                tail = (logs / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} did not start; its log ends:\n{tail}") from None
        yield suite
    finally:
        for process in reversed(list(suite.processes.values())):
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 15)
                except TimeoutError:
                    process.kill()
                    await process.wait()


class Sampler:
    """Every service's RSS every `SAMPLE_SECONDS`, as (seconds since start, {service: MB})."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.started = time.perf_counter()

    def sample(self) -> None:
        found = {n: rss_kb(p) for n, p in self.pids.items()}
        self.samples.append(
            (
                round(time.perf_counter() - self.started, 1),
                {n: round(kb / 1024, 1) for n, kb in found.items() if kb is not None},
            )
        )

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(SAMPLE_SECONDS)

    def at(self, seconds: float, service: str) -> float | None:
        """The first sample of `service` taken at or after `seconds`."""
        for at, values in self.samples:
            if at >= seconds and service in values:
                return values[service]
        return None


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 12)))


def _money(amount: str) -> money_pb2.Money:
    return money_pb2.Money(currency_code="CNY", amount=amount)


VALID_KINDS = (
    "resolve",
    "get_member",
    "member_tier",
    "preview_tier",
    "balance",
    "entitlements",
    "overview",
    "earn",
    "register",
    "ladder",
    "identity_type",
)
ABOUT_NO_MEMBER = ("register", "ladder", "identity_type")


@dataclass
class Valid:
    """Calls that should succeed, on what the demo loaded (and members registered meanwhile).
    `holders`: each known phone's member (as registered; the soak's admin part may have moved
    it since)."""

    stubs: dict[str, grpc.aio.Channel]
    vocabulary: Vocabulary
    rng: random.Random
    holders: dict[str, str] = field(default_factory=dict)

    def learn(self, phone: str, member_id: str) -> None:
        self.vocabulary.phones.append(phone)
        self.vocabulary.member_ids.append(member_id)
        self.holders[phone] = member_id

    def _call(self, service: str, method: str, request: Any, answer: Any) -> Awaitable[Any]:
        full = DESCRIPTORS[service].services_by_name
        (name,) = full.keys()
        call = self.stubs[service].unary_unary(
            f"/{full[name].full_name}/{method}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=answer.FromString,
        )
        return call(request, metadata=ADMIN, timeout=CALL_TIMEOUT)  # type: ignore[no-any-return]

    def pick(self) -> Subject:
        """The next valid call: its kind, and the member (or phone) it is about."""
        kind = self.rng.choice(VALID_KINDS)
        if kind == "resolve":
            phone = self.rng.choice(self.vocabulary.phones)
            return Subject(kind, self.holders[phone], phone)
        if kind in ABOUT_NO_MEMBER:
            return Subject(kind)
        return Subject(kind, self.rng.choice(self.vocabulary.member_ids))

    async def state_of(self, member_id: str) -> str:
        """The member's state as identity tells it now ("" when it cannot be read)."""
        try:
            answer = await self._call(
                "identity",
                "GetMember",
                identity_pb.GetMemberRequest(name=f"members/{member_id}"),
                identity_pb.GetMemberResponse,
            )
        except grpc.aio.AioRpcError:
            return ""
        return str(member_pb2.MemberState.Name(answer.member.state))

    async def once(self, subject: Subject) -> None:
        kind, rng = subject.kind, self.rng
        member = f"members/{subject.member_id}"
        if kind == "resolve":
            phone = subject.phone
            await self._call(
                "identity",
                "ResolveMember",
                identity_pb.ResolveMemberRequest(
                    identity=member_pb2.Identity(type="phone", value=phone)
                ),
                identity_pb.ResolveMemberResponse,
            )
        elif kind == "get_member":
            await self._call(
                "identity",
                "GetMember",
                identity_pb.GetMemberRequest(name=member),
                identity_pb.GetMemberResponse,
            )
        elif kind == "member_tier":
            await self._call(
                "tiers",
                "GetMemberTier",
                tiers_pb.GetMemberTierRequest(member=member),
                tiers_pb.GetMemberTierResponse,
            )
        elif kind == "preview_tier":
            extra = tiers_pb.ExtraActivity(
                unit=rng.choice(("mall", "hotel", "cinema")),
                qualifying_spend=f"{rng.randint(1, 20000)}.00",
                points=rng.randint(0, 5000),
                visits=rng.randint(0, 3),
            )
            await self._call(
                "tiers",
                "PreviewMemberTier",
                tiers_pb.PreviewMemberTierRequest(member=member, activities=[extra]),
                tiers_pb.PreviewMemberTierResponse,
            )
        elif kind == "balance":
            await self._call(
                "points",
                "GetBalance",
                points_pb.GetBalanceRequest(member=member),
                points_pb.GetBalanceResponse,
            )
        elif kind == "entitlements":
            await self._call(
                "benefits",
                "ListEntitlements",
                benefits_pb.ListEntitlementsRequest(member=member, unit="hotel"),
                benefits_pb.ListEntitlementsResponse,
            )
        elif kind == "overview":
            await self._call(
                "gateway",
                "GetMemberOverview",
                gateway_pb.GetMemberOverviewRequest(member=member, unit="mall"),
                gateway_pb.GetMemberOverviewResponse,
            )
        elif kind == "earn":
            await self._call(
                "points",
                "EarnPoints",
                points_pb.EarnPointsRequest(
                    member=member,
                    request_id=uuid.uuid4().hex,
                    unit="mall",
                    channel=channel_pb2.CHANNEL_POS,
                    order_id=uuid.uuid4().hex,
                    lines=[
                        points_pb.OrderLine(line_id="1", amount=_money(f"{rng.randint(1, 500)}.00"))
                    ],
                ),
                points_pb.EarnPointsResponse,
            )
        elif kind == "ladder":
            # The demo's ladder under new tier codes and names: a new ladder version each time.
            ladder = demo.huayue_ladder()
            for tier in ladder.tiers[1:]:
                tier.code = f"{tier.code}_{rng.randrange(10**6)}"
                tier.name_en = _word(rng)
            await self._call(
                "tiers",
                "UpdateLadder",
                tiers_pb.UpdateLadderRequest(ladder=ladder, request_id=uuid.uuid4().hex),
                tiers_pb.UpdateLadderResponse,
            )
        elif kind == "identity_type":
            await self._call(
                "identity",
                "UpsertIdentityType",
                identity_pb.UpsertIdentityTypeRequest(
                    identity_type=member_pb2.IdentityType(
                        code=f"t_{rng.randrange(10**9)}",
                        kind=member_pb2.IDENTITY_KIND_TOKEN,
                        pattern=rf"[A-Z]{{2}}\d{{{rng.randint(4, 12)}}}",
                        description=_word(rng),
                    )
                ),
                identity_pb.UpsertIdentityTypeResponse,
            )
        else:
            phone = f"137{rng.randrange(10**8):08d}"
            answer = await self._call(
                "identity",
                "RegisterMember",
                identity_pb.RegisterMemberRequest(
                    request_id=uuid.uuid4().hex,
                    unit="mall",
                    channel=channel_pb2.CHANNEL_POS,
                    identities=[member_pb2.Identity(type="phone", value=phone)],
                ),
                identity_pb.RegisterMemberResponse,
            )
            self.learn(phone, answer.member.name.removeprefix("members/"))


async def _demo_members(channel: grpc.aio.Channel, valid: Valid) -> None:
    call = channel.unary_unary(
        "/loyalty.identity.v1.IdentityService/ResolveMember",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=identity_pb.ResolveMemberResponse.FromString,
    )
    for member in demo.MEMBERS:
        for kind, value in member.identities:
            if kind != "phone":
                continue
            answer = await call(
                identity_pb.ResolveMemberRequest(
                    identity=member_pb2.Identity(type=kind, value=value)
                ),
                metadata=ADMIN,
                timeout=CALL_TIMEOUT,
            )
            valid.learn(value, answer.member.name.removeprefix("members/"))


def _odd_caller(rng: random.Random) -> tuple[tuple[str, str], ...]:
    if rng.random() < ADMIN_SHARE:
        return ADMIN
    unit = rng.choice(("mall", "hotel", "cinema", f"u{rng.randrange(10**6)}"))
    return (
        ("x-loyalty-unit", unit),
        ("x-loyalty-client", f"c{rng.randrange(10**6)}"),
        ("x-loyalty-scopes", rng.choice(("earn", "redeem", "", "coupons:issue"))),
    )


def _growth(sampler: Sampler, warm_at: float) -> dict[str, dict[str, float | None]]:
    grown: dict[str, dict[str, float | None]] = {}
    last = sampler.samples[-1][1] if sampler.samples else {}
    for name in sampler.pids:
        start, end = sampler.at(0, name), last.get(name)
        warm = sampler.at(warm_at, name)
        peak = max((values.get(name, 0.0) for _, values in sampler.samples), default=None)
        growth = round(end - warm, 1) if end is not None and warm is not None else None
        grown[name] = {
            "rss_mb_start": start,
            "rss_mb_after_warmup": warm,
            "rss_mb_end": end,
            "rss_mb_peak": peak,
            "growth_mb": growth,
            "growth_pct": round(100 * growth / warm, 1) if growth is not None and warm else None,
        }
    return grown


@scenario("soak-memory")
async def soak_memory(ctx: BenchContext) -> Measurement:
    """The five services as processes under a long mixed load (valid and random requests to
    every unary method), each one's resident memory sampled: growth after warm-up (MB, %)."""
    seconds = ctx.soak_seconds
    warm_at = max(ctx.warmup, seconds * WARMUP_SHARE)
    concurrency = min(ctx.concurrency, SOAK_CONCURRENCY)
    rng = random.Random(20261129)
    with tempfile.TemporaryDirectory(prefix="loyalty-soak-") as folder:
        data_dir = Path(folder)
        suite = _suite(ctx, data_dir)
        async with running(suite, data_dir) as suite:
            await demo.load(suite.settings, NO_HISTORY)  # the programme and its 4 members
            channels = {n: grpc.aio.insecure_channel(t) for n, t in suite.targets.items()}
            try:
                vocabulary = Vocabulary()
                valid = Valid(channels, vocabulary, rng)
                await _demo_members(channels["identity"], valid)
                methods: list[UnaryMethod] = []
                for name, descriptor in DESCRIPTORS.items():
                    methods += unary_methods(
                        channels[name], list(descriptor.services_by_name.values())
                    )
                sampler = Sampler({n: p.pid for n, p in suite.processes.items()})
                codes: Counter[str] = Counter()
                valid_failed: Counter[str] = Counter()
                refusals = Refusals(valid.state_of)
                latencies: list[float] = []

                async def random_call() -> None:
                    method = rng.choice(methods)
                    request = random_message(method.input, vocabulary, rng)
                    try:
                        await method.call(request, metadata=_odd_caller(rng), timeout=CALL_TIMEOUT)
                        codes["OK"] += 1
                        refusals.random_call_succeeded(method.path, request)
                    except grpc.aio.AioRpcError as error:
                        codes[error.code().name] += 1

                async def valid_call() -> None:
                    subject = valid.pick()
                    try:
                        await valid.once(subject)
                        codes["OK"] += 1
                    except grpc.aio.AioRpcError as error:
                        codes[error.code().name] += 1
                        valid_failed[error.code().name] += 1
                        await refusals.judge(subject, error)

                stop_at = time.perf_counter() + seconds

                async def worker() -> None:
                    while time.perf_counter() < stop_at:
                        began = time.perf_counter()
                        await (valid_call() if rng.random() < VALID_SHARE else random_call())
                        latencies.append((time.perf_counter() - began) * 1000)

                sampling = asyncio.create_task(sampler.run())
                started = time.perf_counter()
                try:
                    async with asyncio.TaskGroup() as group:
                        for _ in range(concurrency):
                            group.create_task(worker())
                finally:
                    sampling.cancel()
                elapsed = time.perf_counter() - started
                sampler.sample()
                crashed = [n for n, p in suite.processes.items() if p.returncode is not None]
            finally:
                for channel in channels.values():
                    await channel.close()
    grown = _growth(sampler, warm_at)
    every = max(1, len(sampler.samples) // 30)  # about 30 samples are kept with the result
    return Measurement(
        count=len(latencies),
        seconds=elapsed,
        concurrency=concurrency,
        unit="calls",
        latencies_ms=latencies,
        extra={
            "soak_seconds": seconds,
            "warmup_seconds": round(warm_at, 1),
            "services": grown,
            "flat": all(
                g["growth_pct"] is not None and g["growth_pct"] < FLAT_PCT for g in grown.values()
            ),
            "flat_below_pct": FLAT_PCT,
            "methods": len(methods),
            "valid_share": VALID_SHARE,
            "codes": dict(codes.most_common()),
            "valid_failed": dict(valid_failed),
            "valid_refused": refusals.report(),
            "members_known": len(vocabulary.member_ids),
            "crashed": crashed,
            "rss_samples": [[at, values] for at, values in sampler.samples[::every]],
            "load_average_1m": round(os.getloadavg()[0], 2),
        },
    )
