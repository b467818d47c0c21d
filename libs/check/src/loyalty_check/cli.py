"""`loyalty-check`: prove, from the services' databases and RPCs, that the books agree.

Read-only: every query runs in a READ ONLY, REPEATABLE READ transaction. It reads the databases
the services use (LOYALTY_DATABASE_URL, LOYALTY_DATABASE_PREFIX) and calls the points service
(LOYALTY_POINTS_TARGET) for its settlement. Prints a line per finding (rule, member, expected,
found) and a summary table, or JSON with --json. Exit status: 0 clean, 1 findings, 2 could not
run (a database or a service unreachable).

Run it while the suite is quiet: a purchase in flight between two services (an event not yet
consumed, a checkout inside its lease) is reported until it lands.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from loyalty_kit.settings import Settings

from loyalty_check.checker import RULE_NAMES, Options, check
from loyalty_check.databases import CannotRun

CLEAN, FINDINGS, CANNOT_RUN = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loyalty-check",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="rules: " + ", ".join(RULE_NAMES),
    )
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument(
        "--limit", type=int, default=20, help="findings shown per rule; the rest are counted"
    )
    parser.add_argument(
        "--outbox-bound",
        type=float,
        default=60.0,
        help="seconds an outbox row may stay unpublished (default 60)",
    )
    parser.add_argument(
        "--stuck-after",
        type=float,
        default=300.0,
        help="seconds a checkout or reward redemption may stay unfinished (default 300)",
    )
    parser.add_argument(
        "--no-rpc", action="store_true", help="skip the rules that call a service (settlement)"
    )
    parser.add_argument(
        "--only", nargs="+", default=[], metavar="RULE", choices=RULE_NAMES, help="these rules"
    )
    parser.add_argument(
        "--member",
        nargs="+",
        default=[],
        metavar="ID",
        help="only findings about these members (and those about no member: outbox rows, "
        "units' settlement)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    options = Options(
        limit=max(args.limit, 0),
        outbox_bound=args.outbox_bound,
        stuck_after=args.stuck_after,
        rpc=not args.no_rpc,
        only=tuple(args.only),
        members=tuple(args.member),
    )
    try:
        report = asyncio.run(check(Settings(), options))
    except CannotRun as error:
        print(f"loyalty-check: could not run: {error}", file=sys.stderr)
        return CANNOT_RUN
    print(report.dumps() if args.json else report.text())
    return CLEAN if report.clean else FINDINGS


if __name__ == "__main__":
    sys.exit(main())
