"""The faults, one per scenario, each injected while the load runs and repaired before it ends.

A fault function waits for its moment (`Fault.lead` seconds into the load), marks when the
fault began and when it was repaired, and notes what it saw (problems fail the row).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import psutil  # type: ignore[import-untyped]
from loyalty_kit.faults import KILL_AFTER_COMMIT

from loyalty_devstack.cli import SERVICES
from loyalty_devstack.embedded import Infrastructure
from loyalty_devstack.proxy import TcpProxy
from loyalty_devstack.reliability import admin
from loyalty_devstack.reliability.load import Load
from loyalty_devstack.reliability.suite import Suite

DOWN_SECONDS = 2.0  # how long a killed service stays down before it is started again
KILL_AFTER_EARNS = 30  # the earn after whose commit points is killed
SERVING_AGAIN_SECONDS = 60.0
POLL_SECONDS = 0.5
RESET_EVERY_SECONDS = 1.0
DROP_RESET_EVERY_SECONDS = 2.0  # each reset makes the gateway connect again, maybe silently
LATENCY_SECONDS = 0.3  # added to every chunk both ways: slow, within the deadline


@dataclass
class Fault:
    """What a fault function works with, and what it found."""

    suite: Suite
    infra: Infrastructure
    load: Load
    lead: float  # seconds into the load before the fault
    outage: float  # how long an outage of NATS, PostgreSQL or the network lasts
    deadline: float  # the gateway's request deadline
    proxy: TcpProxy | None = None
    began: float | None = None  # on the load's clock
    repaired: float | None = None
    notes: dict[str, object] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    async def at(self, seconds: float) -> None:
        """Until `seconds` into the load."""
        await asyncio.sleep(max(seconds - self.load.now(), 0))

    def begin(self) -> None:
        self.began = self.load.now()

    def end(self) -> None:
        self.repaired = self.load.now()

    def acknowledged_since(self, moment: float) -> int:
        return sum(
            1
            for r in list(self.load.requests)
            if r.acknowledged and r.attempts and r.attempts[-1].ended >= moment
        )


Inject = Callable[[Fault], Awaitable[None]]


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    inject: Inject
    needs: str = ""  # "postgres" / "nats": an embedded server this harness can stop
    first_env: dict[str, dict[str, str]] = field(default_factory=dict)
    proxy_points: bool = False  # the gateway reaches points through a proxy
    # Engagement's journey and challenge award points on the load's purchases, each checked
    # once per purchase (per third purchase) after the run.
    engagement_awards: bool = False


def kill(service: str) -> Inject:
    async def inject(fault: Fault) -> None:
        await fault.at(fault.lead)
        fault.begin()
        pid = fault.suite.kill(service)
        code = await fault.suite.exited(service)
        await asyncio.sleep(DOWN_SECONDS)
        await fault.suite.restart(service)
        fault.end()
        fault.notes["killed"] = {"service": service, "pid": pid, "exit_code": code}

    return inject


async def kill_after_commit(fault: Fault) -> None:
    """Points was started with the fault hook armed: it kills itself after committing its
    KILL_AFTER_EARNSth earn, before answering. Started again, the retries must find the earn
    done once."""
    try:
        code = await asyncio.wait_for(fault.suite.exited("points"), fault.lead * 3 + 30)
    except TimeoutError:
        fault.problems.append(f"points was not killed: fewer than {KILL_AFTER_EARNS} earns")
        return
    fault.begin()
    if code != -signal.SIGKILL:
        fault.problems.append(f"points ended with {code}, not by the fault hook's SIGKILL")
    await asyncio.sleep(DOWN_SECONDS)
    await fault.suite.restart("points")
    fault.end()
    fault.notes["killed"] = {"service": "points", "after_earn": KILL_AFTER_EARNS, "exit": code}


def _nats_pid(fault: Fault) -> int:
    assert fault.infra.nats is not None
    return int(fault.infra.nats.pid_file.read_text().strip())


async def _outage_watch(fault: Fault, during: asyncio.Event) -> None:
    """While `during` is not set: the biggest outbox (unpublished rows) of any service."""
    peak = 0
    while not during.is_set():
        try:
            peak = max(peak, max((await admin.unpublished(fault.suite.settings)).values()))
        except Exception as error:  # the database being down is another scenario's
            fault.notes["outbox_watch_error"] = type(error).__name__
        await asyncio.sleep(POLL_SECONDS * 2)
    fault.notes["outbox_peak"] = peak


async def _nats_outage(fault: Fault, stop: Callable[[], None], start: Callable[[], None]) -> None:
    await fault.at(fault.lead)
    fault.begin()
    assert fault.began is not None
    over = asyncio.Event()
    watch = asyncio.create_task(_outage_watch(fault, over))
    stop()
    await asyncio.sleep(fault.outage)
    written = fault.acknowledged_since(fault.began)
    await asyncio.to_thread(start)
    over.set()
    await watch
    fault.end()
    fault.notes["acknowledged_while_down"] = written
    if not written:
        fault.problems.append("no request was acknowledged while NATS was down")
    if not fault.notes.get("outbox_peak"):
        fault.problems.append("the outbox did not grow while NATS was down")


async def nats_paused(fault: Fault) -> None:
    """kill -STOP of nats-server for the outage, then -CONT: connections stay open and
    silent."""
    pid = _nats_pid(fault)
    await _nats_outage(
        fault, lambda: os.kill(pid, signal.SIGSTOP), lambda: os.kill(pid, signal.SIGCONT)
    )


async def nats_killed(fault: Fault) -> None:
    """kill -9 of nats-server, down for the outage, then started again on the same port and
    store folder."""
    nats = fault.infra.nats
    assert nats is not None

    def stop() -> None:
        pid = _nats_pid(fault)
        process = psutil.Process(pid)
        process.kill()
        process.wait(10)  # reaped: its port and store are free for the new one

    def start() -> None:
        nats.start()

    await _nats_outage(fault, stop, start)


async def postgres_stopped(fault: Fault) -> None:
    """PostgreSQL stopped for the outage, then started again: every service says NOT_SERVING
    while it is down and SERVING again after, without a restart."""
    postgres = fault.infra.postgres
    assert postgres is not None
    await fault.at(fault.lead)
    pids = {name: fault.suite.pid(name) for name in SERVICES}
    seen: dict[str, set[str]] = {name: set() for name in SERVICES}
    fault.begin()
    await asyncio.to_thread(postgres.halt)
    loop = asyncio.get_running_loop()
    ends = loop.time() + fault.outage
    while loop.time() < ends:
        states = await asyncio.gather(*(admin.health(fault.suite.target(n)) for n in SERVICES))
        for name, state in zip(SERVICES, states, strict=True):
            seen[name].add(state)
        await asyncio.sleep(POLL_SECONDS)
    await asyncio.to_thread(postgres.resume)
    back = await _serving_again(fault)
    fault.end()
    fault.notes["health_while_down"] = {n: sorted(s) for n, s in seen.items()}
    fault.notes["serving_again_seconds"] = back
    for name in SERVICES:
        if "NOT_SERVING" not in seen[name]:
            fault.problems.append(f"{name} never said NOT_SERVING while the database was down")
    if back is None:
        fault.problems.append(f"not every service SERVING {SERVING_AGAIN_SECONDS:.0f} s after")
    restarted = [n for n in SERVICES if fault.suite.pid(n) != pids[n]] + fault.suite.crashed()
    if restarted:
        fault.problems.append(f"restarted or exited: {', '.join(restarted)}")


async def _serving_again(fault: Fault) -> float | None:
    loop = asyncio.get_running_loop()
    began = loop.time()
    while loop.time() - began < SERVING_AGAIN_SECONDS:
        states = await asyncio.gather(*(admin.health(fault.suite.target(n)) for n in SERVICES))
        if set(states) == {"SERVING"}:
            return round(loop.time() - began, 1)
        await asyncio.sleep(POLL_SECONDS)
    return None


async def network_latency(fault: Fault) -> None:
    """Between the gateway and points: LATENCY_SECONDS on every chunk for half the outage,
    then more than the deadline for the other half (calls the gateway gives up on after
    points may have committed them)."""
    proxy = fault.proxy
    assert proxy is not None
    await fault.at(fault.lead)
    fault.begin()
    proxy.latency = LATENCY_SECONDS
    await asyncio.sleep(fault.outage / 2)
    proxy.latency = fault.deadline * 0.6  # both ways: beyond the deadline
    await asyncio.sleep(fault.outage / 2)
    proxy.latency = 0.0
    fault.end()


async def network_drops(fault: Fault) -> None:
    """Between the gateway and points: connections reset, and half the new ones silent
    (accepted, never answered), for the outage."""
    proxy = fault.proxy
    assert proxy is not None
    await fault.at(fault.lead)
    fault.begin()
    proxy.drop = 0.5
    loop = asyncio.get_running_loop()
    ends = loop.time() + fault.outage
    while loop.time() < ends:
        proxy.reset_open()
        await asyncio.sleep(DROP_RESET_EVERY_SECONDS)
    proxy.drop = 0.0
    proxy.reset_open()  # the silent ones too
    await proxy.cut()
    await proxy.restore()
    fault.end()
    fault.notes["connections_dropped"] = proxy.dropped


async def network_resets(fault: Fault) -> None:
    """Between the gateway and points: every open connection reset every second."""
    proxy = fault.proxy
    assert proxy is not None
    await fault.at(fault.lead)
    fault.begin()
    loop = asyncio.get_running_loop()
    ends = loop.time() + fault.outage
    while loop.time() < ends:
        proxy.reset_open()
        await asyncio.sleep(RESET_EVERY_SECONDS)
    fault.end()
    fault.notes["connections_reset"] = proxy.resets


SCENARIOS = (
    *(
        Scenario(f"kill-{name}", f"kill -9 of {name} mid-load, started again", kill(name))
        for name in ("points", "tiers", "benefits", "identity", "insights", "gateway")
    ),
    Scenario(
        "kill-engagement",
        "kill -9 of engagement mid-load (a journey and a challenge award points on every "
        "purchase), started again",
        kill("engagement"),
        engagement_awards=True,
    ),
    Scenario(
        "kill-after-commit",
        f"points killed between committing earn #{KILL_AFTER_EARNS} and answering it",
        kill_after_commit,
        first_env={"points": {KILL_AFTER_COMMIT: f"EarnPoints:{KILL_AFTER_EARNS}"}},
    ),
    Scenario("nats-paused", "nats-server stopped (SIGSTOP), then continued", nats_paused, "nats"),
    Scenario("nats-killed", "nats-server killed, then started again", nats_killed, "nats"),
    Scenario("postgres-stopped", "PostgreSQL stopped, then started", postgres_stopped, "postgres"),
    Scenario(
        "network-latency",
        "gateway -> points: latency, then beyond the deadline",
        network_latency,
        proxy_points=True,
    ),
    Scenario(
        "network-drops",
        "gateway -> points: resets and silent connections",
        network_drops,
        proxy_points=True,
    ),
    Scenario(
        "network-resets",
        "gateway -> points: connections reset every second",
        network_resets,
        proxy_points=True,
    ),
)
BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}
QUICK = ("kill-points", "kill-after-commit", "postgres-stopped")
