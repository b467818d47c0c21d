"""`loyalty-dev reliability`: fault scenarios against the suite, a row each.

Each scenario starts the seven services as processes of their own on loopback (on embedded
PostgreSQL and NATS, or the servers LOYALTY_DATABASE_URL / LOYALTY_NATS_URL name), drives
purchases, checkouts and redemptions through the gateway's HTTP API with clients that retry
with the same request_id, injects one fault, lets everything settle and proves the ledger:
every acknowledged request on it once, nothing twice, `loyalty-check` clean, no INTERNAL or
5xx other than 503/504, no answer later than the deadline. Exit status 1 if any row fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from loyalty_devstack.reliability import report
from loyalty_devstack.reliability.runner import RunOptions, run
from loyalty_devstack.reliability.scenarios import BY_NAME, QUICK, SCENARIOS

FULL_SECONDS, QUICK_SECONDS = 30.0, 20.0
FULL_OUTAGE, QUICK_OUTAGE = 30.0, 10.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loyalty-dev reliability",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="scenarios: "
        + ", ".join(s.name for s in SCENARIOS)
        + f"; --quick: {', '.join(QUICK)}",
    )
    parser.add_argument(
        "--only", nargs="+", metavar="SCENARIO", choices=list(BY_NAME), help="these scenarios"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"the fast subset ({', '.join(QUICK)}), {QUICK_SECONDS:.0f} s of load, "
        f"{QUICK_OUTAGE:.0f} s outages",
    )
    parser.add_argument(
        "--seconds", type=float, help=f"load per scenario, at least (default {FULL_SECONDS:.0f})"
    )
    parser.add_argument(
        "--outage",
        type=float,
        help=f"seconds NATS, PostgreSQL or the network stay down (default {FULL_OUTAGE:.0f})",
    )
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument(
        "--json",
        type=Path,
        metavar="PATH",
        help="the rows as JSON lines (default <data folder>/reliability/results/<time>.jsonl)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("LOYALTY_DATA_DIR", ".loyalty")),
        help="the run uses <data folder>/reliability (LOYALTY_DATA_DIR, default .loyalty)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    names = args.only or (QUICK if args.quick else [s.name for s in SCENARIOS])
    options = RunOptions(
        scenarios=[BY_NAME[name] for name in names],
        seconds=args.seconds or (QUICK_SECONDS if args.quick else FULL_SECONDS),
        outage=args.outage or (QUICK_OUTAGE if args.quick else FULL_OUTAGE),
        concurrency=args.concurrency,
        data_dir=(args.data_dir / "reliability").resolve(),
        json_path=args.json,
    )
    try:
        rows, path = asyncio.run(run(options))
    except KeyboardInterrupt:
        print("interrupted: suites stopped", file=sys.stderr)
        return 130
    print("\n" + report.table(rows))
    print(f"\nJSON: {path}")
    return 0 if all(row.passed or row.skipped for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
