"""`loyalty-admin`: the operators' command line.

    loyalty-admin programme validate FILE      check a programme file offline
    loyalty-admin programme diff FILE          what apply would change, per service
    loyalty-admin programme apply FILE [--dry-run] [--effective-from ISO] [--reason TEXT]
    loyalty-admin programme export [-o FILE]   the live programme as a file
    loyalty-admin clients create|list|rotate|revoke ...   business units' API clients
    loyalty-admin operators create|list|disable|reset-password ...   the console's operators
    loyalty-admin jobs run expiry|pending-activation|year-end|grant-expiry|birthday-gifts|
                           ledger-republish
                       [--dry-run] [--as-of ISO] [--step N] [--chunk-size N]
    loyalty-admin imports create|get|follow|cancel|list|rows|candidates|resolve|dismiss ...
                                               units' members brought in by file

The programme file is described in docs/programme-file.md, imports in docs/member-import.md.
The commands reach the services with the usual settings (under `make run`: `. .loyalty/env`
first) as the group's admin: see `loyalty_admin.live` for the credentials. `clients` and
`operators` are the gateway's own commands (they work on the gateway's database).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

from loyalty_admin.document import InvalidFile, ProgrammeFile, load
from loyalty_admin.imports.parser import add_parser as add_imports

# The jobs by name, for the parser (their RPCs are imported when one runs: `validate` and
# `--help` stay quick).
JOBS = {
    "expiry": "expire points past their expiry",
    "pending-activation": "make pending points whose period has passed available",
    "year-end": "judge retention or downgrade of tier years that ended",
    "grant-expiry": "end tier grants and paid memberships whose time is up",
    "birthday-gifts": "grant the tier's birthday coupon to members whose birthday it is",
    "ledger-republish": "publish every member's ledger again, for a read side to catch up",
}


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time, e.g. 2026-07-01T00:00:00+08:00"
        ) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset, e.g. +08:00")
    return moment


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loyalty-admin",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    groups = parser.add_subparsers(dest="group", required=True)

    programme = groups.add_parser("programme", help="the programme as one file")
    actions = programme.add_subparsers(dest="action", required=True)
    validate = actions.add_parser("validate", help="check a file offline")
    validate.add_argument("file", type=Path)
    diff = actions.add_parser("diff", help="what apply would change")
    diff.add_argument("file", type=Path)
    apply = actions.add_parser("apply", help="make the live programme the file's")
    apply.add_argument("file", type=Path)
    apply.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    apply.add_argument(
        "--effective-from",
        type=_moment,
        help="when a change to the points programme takes effect (ISO 8601; default: the "
        "file's effective_from if ahead, else when applied)",
    )
    apply.add_argument("--reason", default="", help="recorded with a new points programme")
    export = actions.add_parser("export", help="write the live programme as a file")
    export.add_argument("-o", "--output", type=Path, help="the file (default: standard output)")

    groups.add_parser(
        "clients",
        help="business units' API clients (the gateway's command: create, list, rotate, revoke)",
        add_help=False,
    )

    groups.add_parser(
        "operators",
        help="the console's operators (the gateway's command: create, list, disable, "
        "reset-password)",
        add_help=False,
    )

    jobs = groups.add_parser("jobs", help="run a scheduled job by hand")
    job_actions = jobs.add_subparsers(dest="action", required=True)
    run = job_actions.add_parser("run", help="run one job now")
    run.add_argument(
        "job",
        choices=list(JOBS),
        help="; ".join(f"{name}: {what}" for name, what in JOBS.items()),
    )
    run.add_argument("--as-of", type=_moment, help="run as at this time (default: now)")
    run.add_argument("--dry-run", action="store_true", help="say how many are due, change nothing")
    run.add_argument(
        "--step",
        type=_positive,
        default=0,
        help="members (grants for grant-expiry) per call; the bar moves after each "
        "(default: four transactions' worth, 2000)",
    )
    run.add_argument("--chunk-size", type=int, default=0, help="members per transaction")

    add_imports(groups)
    return parser


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number above 0")
    return number


def _load(file: Path) -> ProgrammeFile | None:
    try:
        return load(file)
    except InvalidFile as invalid:
        for problem in invalid.problems:
            print(problem.render(str(file)), file=sys.stderr)
        print(f"{file}: {len(invalid.problems)} problem(s); nothing applied", file=sys.stderr)
        return None
    except OSError as error:
        print(f"{file}: {error.strerror or error}", file=sys.stderr)
        return None


async def _programme(args: argparse.Namespace) -> int:
    # Imported here: `validate` and `--help` need no channel.
    from loyalty_kit.settings import Settings

    from loyalty_admin.live import connected
    from loyalty_admin.programme import Planner, PlanRefused, apply, export_text, report

    settings = Settings()
    now = datetime.now(UTC)
    if args.action == "export":
        async with connected(settings) as services:
            text = export_text(await services.read(), now)
        if args.output:
            args.output.write_text(text, encoding="utf-8")
            print(f"wrote {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return 0
    file = _load(args.file)
    if file is None:
        return 1
    async with connected(settings) as services:
        planner = Planner(
            services,
            await services.read(journeys=file.journeys is not None or file.challenges is not None),
            now=now,
            effective_from=getattr(args, "effective_from", None),
            reason=getattr(args, "reason", "") or f"loyalty-admin programme apply {args.file.name}",
        )
        try:
            steps = planner.plan(file)
        except PlanRefused as refused:
            print(f"refused: {refused}; nothing applied", file=sys.stderr)
            return 1
        for step in steps:
            print(step.heading())
            for line in step.changes:
                print(f"  {line}")
            for note in step.notes:
                print(f"  ({note})")
        if not any(step.changed for step in steps):
            print("no changes")
            return 0
        if args.action == "diff":
            return 0
        if args.dry_run:
            print("dry run: nothing applied")
            return 0
        outcome = await apply(steps)
    for line in report(outcome):
        print(line, file=sys.stdout if outcome.ok else sys.stderr)
    return 0 if outcome.ok else 1


async def _jobs(args: argparse.Namespace) -> int:
    from loyalty_kit.settings import Settings

    from loyalty_admin.jobs import report, run_job

    outcome = await run_job(
        Settings(),
        args.job,
        as_of=args.as_of,
        chunk_size=args.chunk_size,
        step=args.step,
        dry_run=args.dry_run,
    )
    said = report(outcome, dry_run=args.dry_run)
    for line in said.out:
        print(line)
    for line in said.err:
        print(line, file=sys.stderr)
    return said.code


COMMANDS = "loyalty_admin.commands"


GATEWAY_COMMANDS = ("clients", "operators")


def _gateway_command(name: str, argv: list[str]) -> int:
    """A command of the gateway's (`clients`, `operators`), which the gateway's package offers
    under the entry point group `loyalty_admin.commands` (the gateway depends on this library,
    not the reverse)."""
    from importlib.metadata import entry_points

    found = entry_points(group=COMMANDS, name=name)
    if not found:
        print(
            f"{name}: the gateway (package loyalty-gateway) is not installed here",
            file=sys.stderr,
        )
        return 1
    command = next(iter(found)).load()
    return int(command(argv))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] and argv[0] in GATEWAY_COMMANDS:
        return _gateway_command(argv[0], argv[1:])
    args = _parser().parse_args(argv)
    if args.group == "programme" and args.action == "validate":
        file = _load(args.file)
        if file is None:
            return 1
        print(f"{args.file}: valid ({', '.join(file.sections) or 'no sections'})")
        return 0
    import grpc

    from loyalty_admin.live import explain

    try:
        if args.group == "programme":
            return asyncio.run(_programme(args))
        if args.group == "imports":
            from loyalty_admin.imports.commands import run as run_imports

            return asyncio.run(run_imports(args))
        try:
            return asyncio.run(_jobs(args))
        except KeyboardInterrupt:  # while connecting or counting: the steps handle their own
            print(f"{args.job}: interrupted; run it again to finish", file=sys.stderr)
            return 130
    except grpc.aio.AioRpcError as error:
        print(f"error: {explain(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # Ctrl-C: the command said what it left behind (an import goes on without it).
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
