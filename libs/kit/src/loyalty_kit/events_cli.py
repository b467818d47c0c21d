"""`loyalty-events`: what operators need to see and do on the bus.

    loyalty-events lag [--json]                       every consumer's lag behind its stream
    loyalty-events dead-letters list [--consumer NAME] [--json]
    loyalty-events dead-letters replay (--all | --consumer NAME | SEQ ...) [--force]
    loyalty-events dead-letters drop SEQ ...

Configured by the services' environment (LOYALTY_NATS_URL, LOYALTY_EVENT_NAMESPACE,
LOYALTY_INBOX_RETENTION_DAYS); `. .loyalty/env` after `make run`. Exit status 0 when done, 1 when
some of the asked work was refused, 2 when NATS cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import timedelta

from nats.js import JetStreamContext

from loyalty_kit import deadletters, events
from loyalty_kit.logs import configure_logging
from loyalty_kit.settings import Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loyalty-events", description="Consumer lag and the dead-letter stream."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    lag = commands.add_parser("lag", help="every consumer's lag behind its stream")
    lag.add_argument("--json", action="store_true", help="one JSON document")
    dead = commands.add_parser("dead-letters", help="events consumers parked after failing them")
    actions = dead.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="parked events, oldest first")
    listing.add_argument("--consumer", help="only this consumer's (e.g. points-members)")
    listing.add_argument("--json", action="store_true", help="one JSON document")
    again = actions.add_parser("replay", help="republish parked events on their subjects")
    again.add_argument("seqs", nargs="*", type=int, help="sequences shown by `list`")
    again.add_argument("--consumer", help="every parked event of this consumer")
    again.add_argument("--all", action="store_true", help="every parked event")
    again.add_argument("--force", action="store_true", help="also events past inbox retention")
    gone = actions.add_parser("drop", help="remove parked events for good")
    gone.add_argument("seqs", nargs="+", type=int)
    return parser


async def _lag(js: JetStreamContext, namespace: str, as_json: bool) -> int:
    lags = await events.consumer_lag(js, namespace)
    if as_json:
        print(json.dumps([asdict(lag) | {"behind": lag.behind} for lag in lags], default=str))
        return 0
    print(f"{'stream':<24} {'consumer':<24} {'pending':>8} {'unacked':>8} {'redeliv':>8}")
    for lag in lags:
        print(
            f"{lag.stream:<24} {lag.consumer:<24} {lag.pending:>8} {lag.unacknowledged:>8} "
            f"{lag.redelivered:>8}"
        )
    return 0


async def _dead_letters(
    js: JetStreamContext, namespace: str, args: argparse.Namespace, settings: Settings
) -> int:
    if args.action == "list":
        found = await deadletters.parked(js, namespace, args.consumer)
        if args.json:
            print(json.dumps([asdict(p) for p in found], indent=2))
            return 0
        for p in found:
            print(
                f"{p.seq:>6}  {p.consumer:<20} {p.event_type:<40} {p.event_id}  "
                f"attempts={p.attempts}  {p.failed_at}\n        {p.reason}"
            )
        print(f"{len(found)} parked")
        return 0
    if args.action == "replay":
        if args.all or args.consumer:
            seqs = [p.seq for p in await deadletters.parked(js, namespace, args.consumer)]
        elif args.seqs:
            seqs = args.seqs
        else:
            print("name sequences, --consumer NAME or --all", file=sys.stderr)
            return 2
        results = await deadletters.replay(
            js,
            namespace,
            seqs,
            inbox_retention=timedelta(days=settings.inbox_retention_days),
            force=args.force,
        )
        for r in results:
            print(f"{r.seq:>6}  {r.event_id}  {r.outcome}")
        return 0 if all(r.outcome == "replayed" for r in results) else 1
    dropped = await deadletters.drop(js, namespace, args.seqs)
    print(f"{len(dropped)} dropped")
    return 0 if len(dropped) == len(args.seqs) else 1


async def _main(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.nats_url:
        print("LOYALTY_NATS_URL is not set (`. .loyalty/env` after `make run`)", file=sys.stderr)
        return 2
    try:
        client = await asyncio.wait_for(events.connect(settings.nats_url, "loyalty-events"), 10)
    except Exception as error:  # reported as the exit status
        print(f"NATS unavailable at {settings.nats_url}: {error}", file=sys.stderr)
        return 2
    try:
        js, namespace = client.jetstream(), settings.event_namespace
        if args.command == "lag":
            return await _lag(js, namespace, args.json)
        return await _dead_letters(js, namespace, args, settings)
    finally:
        await client.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings()
    configure_logging("events", settings.log_level, "console")
    return asyncio.run(_main(args, settings))


if __name__ == "__main__":
    sys.exit(main())
