"""`python -m bench`: start PostgreSQL and NATS, run scenarios and their ceilings, report."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import pkgutil
import secrets
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from loyalty_devstack.embedded import Infrastructure
from loyalty_kit.logs import configure_logging

import bench.scenarios
from bench import report
from bench.context import BenchContext
from bench.registry import SCENARIOS, Scenario, plan

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULTS: dict[str, Any] = {"seconds": 3.0, "warmup": 0.5, "concurrency": 64}
# --deployed: its scenarios (bench/scenarios/deployed.py) and what they default to
DEPLOYED = (
    "deployed-record-purchase",
    "deployed-earn",
    "deployed-resolve",
    "deployed-member-overview",
    "deployed-entitlements",
    "deployed-coupon-issuance",
)
DEPLOYED_DEFAULTS: dict[str, Any] = {
    "seconds": 30.0,
    "warmup": 5.0,
    "concurrency": 16,
    "members": 1_000,
}


def discover() -> None:
    """Import every module of bench.scenarios: importing one registers its scenarios."""
    for module in pkgutil.iter_modules(bench.scenarios.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{bench.scenarios.__name__}.{module.name}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Benchmark the kit and services against raw ceilings."
    )
    parser.add_argument(
        "--only",
        nargs="+",
        action="extend",
        metavar="NAME",
        help="run only these scenarios (their ceilings are added)",
    )
    parser.add_argument(
        "--deployed",
        action="store_true",
        help="the suite as deployed: every service its own process, load from another process, "
        "server CPU per operation (the deployed-* scenarios and their ceilings; defaults "
        "--seconds 30 --warmup 5 --concurrency 16 --members 1000)",
    )
    parser.add_argument(
        "--seconds", type=float, default=None, help="measured time per scenario (3; deployed 30)"
    )
    parser.add_argument(
        "--warmup", type=float, default=None, help="warm-up time per scenario (0.5; deployed 5)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=None, help="operations in flight (64; deployed 16)"
    )
    parser.add_argument(
        "--events", type=int, default=20_000, help="events for the outbox/JetStream scenarios"
    )
    parser.add_argument(
        "--members",
        type=int,
        default=None,
        help="members loaded for the identity, tiers-year-end and check scenarios (default: "
        "1,000,000 when one is named with --only, else 100,000; check: always 1,000,000), and "
        "the order-activity scenarios' orders are spread over (default: a tenth of --orders), "
        "and whose facts the insights scenarios load (default: 1,000,000 or "
        "BENCH_INSIGHTS_MEMBERS)",
    )
    parser.add_argument(
        "--import-rows",
        type=int,
        default=None,
        help="legacy rows of the import scenarios (default: 1,000,000 when one is named with "
        "--only, else 100,000)",
    )
    parser.add_argument(
        "--orders",
        type=int,
        default=None,
        help="past orders of the order-activity scenarios (default 500,000; over --members "
        "members, by default a tenth as many)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=30.0,
        help="operations per second of the open-loop (steady load) scenarios",
    )
    parser.add_argument(
        "--soak-seconds",
        type=float,
        default=180.0,
        help="length of the soak scenario's mixed load (memory sampled throughout)",
    )
    parser.add_argument(
        "--log-level", default="INFO", help="level of the kit's logs (written to results/*.log)"
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = parser.parse_args(argv)
    defaults = DEPLOYED_DEFAULTS if args.deployed else DEFAULTS
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.deployed:
        args.only = [*(args.only or ()), *(n for n in DEPLOYED if n not in (args.only or ()))]
    if args.seconds <= 0 or args.warmup < 0 or args.concurrency < 1 or args.events < 1:
        parser.error("--seconds, --concurrency and --events must be positive, --warmup >= 0")
    if args.members is not None and args.members < 1:
        parser.error("--members must be positive")
    if args.import_rows is not None and args.import_rows < 1:
        parser.error("--import-rows must be positive")
    if args.orders is not None and args.orders < 1:
        parser.error("--orders must be positive")
    if args.rate <= 0:
        parser.error("--rate must be positive")
    if args.soak_seconds <= 0:
        parser.error("--soak-seconds must be positive")
    return args


def _log_to(path: Path, level: str) -> None:
    """The kit's structured logs, as services render them, into a file instead of stderr."""
    configure_logging("bench", level, "json")
    root = logging.getLogger()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(root.handlers[0].formatter)
    root.handlers[:] = [handler]


def _emit(line: dict[str, Any], out: TextIO) -> None:
    text = json.dumps(line, separators=(",", ":"))
    print(text, flush=True)
    out.write(text + "\n")
    out.flush()


async def run(ctx: BenchContext, scenarios: list[Scenario], out: TextIO) -> list[dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    try:
        for scenario in scenarios:
            print(f"bench: {scenario.name} ...", file=sys.stderr, flush=True)
            started = time.perf_counter()
            ceiling = done.get(scenario.ceiling) if scenario.ceiling else None
            try:
                measured = await scenario.run(ctx)
                line = report.record(scenario, measured, ceiling=ceiling, run_id=ctx.run_id)
            except Exception as error:
                line = report.failure(scenario, error, run_id=ctx.run_id)
            took = time.perf_counter() - started
            print(f"bench: {scenario.name} done in {took:.1f}s", file=sys.stderr, flush=True)
            done[scenario.name] = line
            _emit(line, out)
    finally:
        await ctx.cleanup()
    return list(done.values())


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")  # platformdirs, via pgserver
    # The scenarios call the in-process services with caller headers (the gateway scenarios
    # with tokens over HTTP): trusted here, as under `make run`.
    os.environ.setdefault("LOYALTY_AUTH_TRUST_HEADERS", "true")
    discover()
    if args.list:
        for s in SCENARIOS.values():
            print(f"{s.name:28} ceiling={s.ceiling or '-':24} {s.description}")
        return 0
    try:
        scenarios = plan(args.only)
    except KeyError as error:
        print(f"bench: {error.args[0]}", file=sys.stderr)
        return 2

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    results_path = RESULTS_DIR / f"{stamp}.jsonl"
    _log_to(RESULTS_DIR / f"{stamp}.log", args.log_level)
    run_id = f"b{os.getpid()}{secrets.token_hex(3)}"

    with tempfile.TemporaryDirectory(prefix="loyalty-bench-") as folder:
        infra = Infrastructure(Path(folder), keep=False)
        try:
            infra.start()
            described = ", ".join(f"{k}: {v}" for k, v in infra.describe().items())
            print(f"bench: run {run_id} on {described}", file=sys.stderr, flush=True)
            ctx = BenchContext(
                infra=infra,
                run_id=run_id,
                seconds=args.seconds,
                warmup=args.warmup,
                concurrency=args.concurrency,
                events=args.events,
                members=args.members,
                import_rows=args.import_rows,
                orders=args.orders,
                rate=args.rate,
                soak_seconds=args.soak_seconds,
                only=tuple(args.only or ()),
            )
            with results_path.open("w", encoding="utf-8") as out:
                records = asyncio.run(run(ctx, scenarios, out))
        finally:
            infra.stop()

    print()
    print(
        f"run {run_id}  {stamp}  seconds={args.seconds} warmup={args.warmup} "
        f"concurrency={args.concurrency} events={args.events}  (ratio = throughput / ceiling)"
    )
    print(report.table(records))
    if cpu := report.cpu_table(records):
        print()
        print(cpu)
    print(f"results: {results_path}")
    return 1 if any("error" in r for r in records) else 0
