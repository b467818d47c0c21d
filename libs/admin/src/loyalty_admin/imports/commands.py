"""The `imports` commands (the parser is in `parser.py`): each opens a channel to the identity
service, calls it as the group's admin and prints what it found; `create` uploads and follows."""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import sys
import time
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from loyalty.identity.v1 import member_import_pb2 as import_pb
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.points.v1 import points_service_pb2_grpc
from loyalty_kit.channels import channel
from loyalty_kit.settings import Settings
from rich.console import Console
from rich.filesize import decimal

from loyalty_admin.imports import progress as shown
from loyalty_admin.imports.client import Imports, connected, file_parts
from loyalty_admin.imports.kinds import KINDS, MEMBERS, Kind, Resource, UnknownName, kind_of
from loyalty_admin.imports.spec import (
    ENDS_AT,
    SpecError,
    build_spec,
    file_digest,
    is_date,
    load_spec_file,
    request_id,
)
from loyalty_admin.live import not_there

EXIT_FAILED = 1
EXIT_CANCELLED = 3
EXIT_INTERRUPTED = 130
DEFAULT_TIME_ZONE = "Asia/Shanghai"  # the points programme's when it names none


def _candidate_name(text: str) -> str:
    return text if text.startswith("mergeCandidates/") else f"mergeCandidates/{text}"


def _member_id(text: str) -> str:
    return text.removeprefix("members/")


def _decision_id(*parts: str) -> str:
    """The same decision, the same request id: running the command again changes nothing."""
    return "cli-" + hashlib.sha256("\0".join(parts).encode()).hexdigest()


async def run(args: argparse.Namespace, settings: Settings | None = None) -> int:
    """Run an `imports` command; its exit status."""
    settings = settings or Settings()
    console = Console(stderr=True)
    try:
        if args.action == "create":
            return await _create(args, settings, console)
        async with connected(settings) as imports:
            return await ACTIONS[args.action](args, imports, console)
    except (SpecError, UnknownName) as error:
        what = f"not an import's name: {error}" if isinstance(error, UnknownName) else error
        print(f"error: {what}", file=sys.stderr)
        return EXIT_FAILED


def _tier_mapping(pairs: list[str]) -> dict[str, str]:
    mapping = {}
    for pair in pairs:
        legacy, equals, tier = pair.partition("=")
        if not equals or not legacy.strip() or not tier.strip():
            raise SpecError(f"--tier-mapping {pair!r}: LEGACY=TIER, e.g. 金卡=gold")
        mapping[legacy.strip()] = tier.strip()
    return mapping


async def _programme_time_zone(settings: Settings) -> str:
    """The points programme's time zone, in which a date ends."""
    from loyalty_admin.live import admin_metadata

    async with channel(settings.target_of("points"), default_deadline=30.0) as ch:
        try:
            found = await points_service_pb2_grpc.PointsServiceStub(ch).GetProgramme(
                points_pb.GetProgrammeRequest(), metadata=admin_metadata(settings)
            )
        except grpc.aio.AioRpcError as error:
            if not_there(error):
                raise SpecError(
                    "there is no points programme to take the time zone from: give "
                    "--tier-ends as a time, e.g. 2028-01-01T00:00:00+08:00"
                ) from None
            raise
    return found.programme.time_zone or DEFAULT_TIME_ZONE


async def _spec_of(args: argparse.Namespace, kind: Kind, settings: Settings) -> Any:
    data = load_spec_file(args.spec_file)
    options: dict[str, Any] = {
        "unit": args.unit,
        "format": args.format,
        "encoding": args.encoding,
        "tier_mapping": _tier_mapping(args.tier_mapping) or None,
        ENDS_AT: args.tier_ends,
        "auto_merge": args.auto_merge,
        "mode": args.mode,
        "keep_file": args.keep_file,
    }
    ends = options[ENDS_AT] or data.get(ENDS_AT) or data.get("tierGrantEndsAt")
    zone = DEFAULT_TIME_ZONE
    if isinstance(ends, str) and is_date(ends):
        zone = await _programme_time_zone(settings)
    return build_spec(kind, data, options, file=args.file, time_zone=lambda: zone)


async def _create(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    kind = KINDS[args.of]
    if not args.file.is_file():
        raise SpecError(f"{args.file}: no such file")
    spec = await _spec_of(args, kind, settings)
    size = args.file.stat().st_size
    sha256 = await asyncio.to_thread(file_digest, args.file)
    created: Resource | None = None
    async with connected(settings) as imports:
        bar = shown.progress_bar(console)
        try:
            with bar:
                created = await _upload(imports, kind, spec, sha256, args.file, size, bar)
                name = created.name
                console.print(
                    f"{name}: {shown.state_of(created)} (Ctrl-C stops following)", soft_wrap=True
                )
                if args.no_wait:
                    ended = created
                else:
                    ended = await shown.follow(
                        kind, name, lambda: imports.get(kind, name), bar, first=created
                    )
        except asyncio.CancelledError:
            _interrupted(getattr(created, "name", ""), console)
            return EXIT_INTERRUPTED
    return _ended(kind, ended)


async def _upload(
    imports: Imports,
    kind: Kind,
    spec: Any,
    sha256: str,
    file: Path,
    size: int,
    bar: Any,
) -> Resource:
    label = spec.file_name or file.name
    task = bar.add_task(f"uploading {label}", total=max(size, 1), detail="")
    started = time.monotonic()

    def sent(count: int) -> None:
        bar.advance(task, count)
        done = bar.tasks[task].completed
        rate = done / max(time.monotonic() - started, 1e-3)
        bar.update(task, detail=f"{decimal(int(done))} of {decimal(size)} · {decimal(int(rate))}/s")

    created = await imports.create(
        kind, spec, request_id(kind, sha256, spec), file_parts(file, sent)
    )
    bar.update(task, completed=max(size, 1))
    return created


def _interrupted(name: str, console: Console) -> None:
    """What Ctrl-C left: nothing (during the upload), or an import going on without us."""
    if not name:
        console.print(
            "upload interrupted: the file was not stored and nothing is imported; "
            "the same command starts it again",
            soft_wrap=True,
        )
        return
    console.print(f"stopped following: {name} goes on in the identity service", soft_wrap=True)
    console.print(f"  follow it: loyalty-admin imports follow {name}", soft_wrap=True)
    console.print(f"  cancel it: loyalty-admin imports cancel {name}", soft_wrap=True)


def _ended(kind: Kind, found: Resource) -> int:
    for line in shown.summary(kind, found) + shown.hints(kind, found):
        print(line)
    state = shown.state_of(found)
    if state == "FAILED":
        return EXIT_FAILED
    if state == "CANCELLED":
        return EXIT_CANCELLED
    return 0


async def _get(args: argparse.Namespace, imports: Imports, _console: Console) -> int:
    kind, name = kind_of(args.name)
    found = await imports.get(kind, name)
    if args.json:
        print(json_format.MessageToJson(found, ensure_ascii=False))
    else:
        for line in shown.summary(kind, found) + shown.hints(kind, found):
            print(line)
    return 0  # a read: how the import ended is in what it printed


async def _follow(args: argparse.Namespace, imports: Imports, console: Console) -> int:
    kind, name = kind_of(args.name)
    bar = shown.progress_bar(console)
    try:
        with bar:
            found = await shown.follow(kind, name, lambda: imports.get(kind, name), bar)
    except asyncio.CancelledError:
        _interrupted(name, console)
        return EXIT_INTERRUPTED
    return _ended(kind, found)


async def _cancel(args: argparse.Namespace, imports: Imports, _console: Console) -> int:
    kind, name = kind_of(args.name)
    found = await imports.cancel(kind, name)
    print(f"{name}: {shown.state_of(found)}")
    return 0


async def _list(args: argparse.Namespace, imports: Imports, _console: Console) -> int:
    kind = KINDS[args.of]
    async for found in imports.list(kind, args.unit):
        spec, progress = found.spec, found.progress
        print(
            "\t".join(
                [
                    found.name,
                    shown.state_of(found),
                    spec.unit,
                    spec.file_name or "-",
                    f"{progress.rows_read} rows",
                    f"{progress.percent:.0f}%",
                    found.create_time.ToJsonString(),
                ]
            )
        )
    return 0


async def _rows(args: argparse.Namespace, imports: Imports, _console: Console) -> int:
    kind, name = kind_of(args.name)
    outcome = 0
    if args.outcome:
        if args.outcome not in kind.outcome_names():
            raise SpecError(f"--outcome: one of {', '.join(kind.outcome_names())}")
        outcome = kind.outcome_number(args.outcome)
    fields = [f.name for f in kind.message("{}Row").DESCRIPTOR.fields]
    writer = csv.writer(sys.stdout, lineterminator="\n") if args.csv else None
    if writer is not None:
        writer.writerow(fields)
    async for row in imports.rows(kind, name, outcome):
        values = [
            kind.outcome_name(getattr(row, f)) if f == "outcome" else str(getattr(row, f))
            for f in fields
        ]
        if writer is not None:
            writer.writerow(values)
        else:
            print("\t".join(value or "-" for value in values))
    return 0


def _candidate_lines(candidate: import_pb.MergeCandidate) -> list[str]:
    state = import_pb.MergeCandidate.State.Name(candidate.state).removeprefix("STATE_")
    lines = [
        f"{candidate.name}\t{state}\t{candidate.member_import} row {candidate.row_number}"
        f"\tunit {candidate.unit}"
    ]
    lines += [
        f"  {e.identity_type} {e.masked_value} -> members/{e.member_id}" for e in candidate.evidence
    ]
    if candidate.survivor_member_id:
        lines.append(f"  joined members/{candidate.survivor_member_id}")
    return lines


async def _candidates(args: argparse.Namespace, imports: Imports, _console: Console) -> int:
    member_import = ""
    if args.member_import:
        kind, member_import = kind_of(args.member_import)
        if kind is not MEMBERS:
            raise SpecError("merge candidates come from member imports")
    state = import_pb.MergeCandidate.State.Value(f"STATE_{args.state.upper()}") if args.state else 0
    async for candidate in imports.merge_candidates(member_import, state):
        for line in _candidate_lines(candidate):
            print(line)
    return 0


async def _resolve(args: argparse.Namespace, imports: Imports, _console: Console) -> int:
    name, survivor = _candidate_name(args.candidate), _member_id(args.survivor)
    decided = await imports.resolve(
        import_pb.ResolveMergeCandidateRequest(
            name=name,
            request_id=_decision_id("resolve", name, survivor, str(args.merge)),
            survivor_member_id=survivor,
            merge=args.merge,
            reason=args.reason,
        )
    )
    for line in _candidate_lines(decided):
        print(line)
    return 0


async def _dismiss(args: argparse.Namespace, imports: Imports, _console: Console) -> int:
    name = _candidate_name(args.candidate)
    decided = await imports.dismiss(
        import_pb.DismissMergeCandidateRequest(
            name=name, request_id=_decision_id("dismiss", name), reason=args.reason
        )
    )
    for line in _candidate_lines(decided):
        print(line)
    return 0


ACTIONS = {
    "get": _get,
    "follow": _follow,
    "cancel": _cancel,
    "list": _list,
    "rows": _rows,
    "candidates": _candidates,
    "resolve": _resolve,
    "dismiss": _dismiss,
}
