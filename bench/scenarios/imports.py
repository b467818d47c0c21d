"""Bringing the units' members in: a million legacy rows through the identity service's import
against one bare process doing the same reading, normalisation and encryption and COPYing.

Both read the same three files (loyalty_devstack.legacy_files: the mall's GB18030 CSV, the
hotel's JSON Lines with e-mails, the cinema's CSV with unionids; `--import-rows` rows in all,
30% of them people in two units), made once per run in a temporary folder.

- `raw-member-import`: one process, one event loop: the files through the service's own
  `FileReader` (the same parsing and normalisation), a dict from blind index to member standing
  in for matching (a person's second unit joins their first), each new member's data key made
  and wrapped, its identities blind-indexed and sealed, name and birthday sealed, and the rows
  `COPY`ed into a database migrated as the service's (constraints in place) in transactions of
  `CHUNK` rows. No report, no events, no progress, no resumability.
- `member-import`: the identity service (start_service, migrations on, NATS relay running), the
  three files uploaded with `CreateMemberImport` one after the other through the generated stub
  and followed with `GetMemberImport` until each succeeds; then checked: members = people,
  every row created or linked. The process's resident memory growth during the imports
  (sampled; the files are made before) is kept in `extra`,
  beside the files' size (the import streams: it should not grow with the file).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import grpc
from loyalty.identity.v1 import member_import_pb2 as pb
from loyalty.identity.v1 import member_import_pb2_grpc
from loyalty_devstack import legacy_files as lf
from loyalty_identity.adapters.crypto import Keyring, new_key_text, seal
from loyalty_identity.app import SPEC
from loyalty_identity.domain.identities import IdentityKind, IdentityType
from loyalty_identity.domain.import_file import FileReader
from loyalty_identity.domain.imports import (
    ColumnMapping,
    ImportFormat,
    ImportSpec,
    ParsedRow,
    legacy_type,
)
from loyalty_kit import db
from loyalty_kit.db import asyncpg_params
from loyalty_kit.migrations import upgrade_database
from loyalty_kit.server import start_service

from bench.context import BenchContext
from bench.members import IDENTITY_COLUMNS, KEY_COLUMNS, MEMBER_COLUMNS, PROFILE_COLUMNS
from bench.registry import Measurement, scenario
from bench.scenarios.identity import _environment as environment

DEFAULT_ROWS = 1_000_000  # when an import scenario is named with --only
SMALL_ROWS = 100_000  # in a run of every scenario
SCENARIO_NAMES = ("member-import", "raw-member-import")
CHUNK = 2_000
PART = 1 << 20
POLL_SECONDS = 0.5
SHARED_FILES = "legacy-files"
ADMIN = (
    ("x-loyalty-unit", "group"),
    ("x-loyalty-client", "bench"),
    ("x-loyalty-scopes", "admin"),
)

TYPES = {
    "phone": IdentityType("phone", IdentityKind.PHONE),
    "email": IdentityType("email", IdentityKind.EMAIL),
    "wechat_openid": IdentityType("wechat_openid", IdentityKind.TOKEN, r"[A-Za-z0-9_-]{16,64}"),
    "wechat_unionid": IdentityType("wechat_unionid", IdentityKind.TOKEN, r"[A-Za-z0-9_-]{16,64}"),
    "store_card": IdentityType("store_card", IdentityKind.TOKEN, r"[0-9A-Z]{6,32}"),
}


def _progress(text: str) -> None:
    print(f"bench: imports: {text}", file=sys.stderr, flush=True)


def row_count(ctx: BenchContext) -> int:
    if ctx.import_rows is not None:
        return ctx.import_rows
    return DEFAULT_ROWS if any(n in ctx.only for n in SCENARIO_NAMES) else SMALL_ROWS


class Files:
    def __init__(self, folder: Path, truth: lf.Truth) -> None:
        self.folder = folder
        self.paths = lf.write(truth, folder)
        self.rows = truth.rows()
        self.people = truth.people
        self.bytes = sum(p.stat().st_size for p in self.paths.values())


def _files(ctx: BenchContext) -> Files:
    found = ctx.shared.get(SHARED_FILES)
    if isinstance(found, Files):
        return found
    rows = row_count(ctx)
    started = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="loyalty-bench-import-"))
    files = Files(folder, lf.accounts(rows, overlap=0.3, seed=17))
    _progress(
        f"{rows:,} legacy rows ({files.people:,} people, {files.bytes / 1e6:,.0f} MB) made in "
        f"{time.perf_counter() - started:.1f}s"
    )
    ctx.shared[SHARED_FILES] = files
    return files


def spec_of(unit: str) -> ImportSpec:
    mapping: dict[str, Any] = dict(lf.MAPPINGS[unit])
    return ImportSpec(
        unit=unit,
        mapping=ColumnMapping(**mapping),
        format=ImportFormat.JSON_LINES if lf.FORMATS[unit] == "jsonl" else ImportFormat.CSV,
        encoding=lf.ENCODINGS[unit],
        tier_mapping=dict(lf.TIER_MAPPINGS[unit]),
    )


def message_of(unit: str, path: Path) -> pb.MemberImportSpec:
    return pb.MemberImportSpec(
        unit=unit,
        format=pb.IMPORT_FORMAT_JSON_LINES if lf.FORMATS[unit] == "jsonl" else pb.IMPORT_FORMAT_CSV,
        encoding=lf.ENCODINGS[unit],
        mapping=pb.ColumnMapping(**dict[str, Any](lf.MAPPINGS[unit])),
        tier_mapping=lf.TIER_MAPPINGS[unit],
        file_name=path.name,
    )


def parts(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(PART):
            yield chunk


def _rss_mb() -> float:
    """This process's resident memory now (`VmRSS`), with its worker processes' (an import's
    reader), in MB."""
    pids = ["self", *(str(p.pid) for p in multiprocessing.active_children())]
    total = 0.0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            if pid == "self":
                return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return total


class CpuSplit:
    """CPU seconds spent from now on in this process (the service and the bench's client) and
    in its worker processes that ended (an import's reader, on the second core)."""

    def __init__(self) -> None:
        self.start = self._now()

    @staticmethod
    def _now() -> tuple[float, float]:
        mine = resource.getrusage(resource.RUSAGE_SELF)
        workers = resource.getrusage(resource.RUSAGE_CHILDREN)
        return mine.ru_utime + mine.ru_stime, workers.ru_utime + workers.ru_stime

    def spent(self) -> dict[str, float]:
        mine, workers = self._now()
        return {
            "service_cpu_s": round(mine - self.start[0], 1),
            "reader_processes_cpu_s": round(workers - self.start[1], 1),
        }


class RssGrowth:
    """The process's resident memory (with its worker processes') sampled while an import
    runs: its growth over what it held when the import began (the files, made before, are not
    counted; a peak-RSS figure would be the files' making's)."""

    def __init__(self, every: float = 0.2) -> None:
        self.every = every
        self.start = _rss_mb()
        self.peak = self.start
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, _rss_mb())
            await asyncio.sleep(self.every)

    async def __aenter__(self) -> RssGrowth:
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *_: object) -> None:
        self.peak = max(self.peak, _rss_mb())
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def growth_mb(self) -> float:
        return round(self.peak - self.start, 1)


async def _migrated(ctx: BenchContext, name: str) -> dict[str, Any]:
    settings = ctx.settings()
    database = f"{name}"
    await db.ensure_database(settings.server_url, settings.database_for(database))
    url = settings.service_database_url(database)
    assert SPEC.migrations is not None
    await upgrade_database(url, SPEC.migrations)
    return asyncpg_params(url)


# --- the ceiling -------------------------------------------------------------------------------


class RawImport:
    """Members made straight from parsed rows and COPYed: the least an import must do."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self.by_index: dict[bytes, str] = {}  # blind index -> member id (matching)
        self.data_keys: dict[str, bytes] = {}  # member id -> data key (a linked row seals with it)
        self.members = 0
        self.linked = 0

    def rows(
        self, row: ParsedRow, unit: str, now: datetime, out: dict[str, list[tuple[Any, ...]]]
    ) -> None:
        indexes = [self.keyring.blind_index(i) for i in row.identities]
        member_id = next((self.by_index[i] for i in indexes if i in self.by_index), None)
        if member_id is None:
            member_id = str(uuid.uuid4())
            self.members += 1
            data_key = self.keyring.new_data_key()
            key_id, wrapped = self.keyring.wrap(member_id, data_key)
            self.data_keys[member_id] = data_key
            out["members"].append(
                (member_id, "active", None, unit, "CHANNEL_OFFLINE", "", now, now)
            )
            out["member_keys"].append((member_id, key_id, wrapped))
            out["profiles"].append(
                (
                    member_id,
                    seal(data_key, row.name, f"{member_id}/profile/full_name")
                    if row.name
                    else None,
                    row.gender.value,
                    seal(data_key, row.birthday.isoformat(), f"{member_id}/profile/birthday")
                    if row.birthday
                    else None,
                    row.region,
                    "",
                )
            )
        else:
            self.linked += 1
            data_key = self.data_keys[member_id]
        for identity, index in zip(row.identities, indexes, strict=True):
            if index in self.by_index:
                continue
            self.by_index[index] = member_id
            out["identities"].append(
                (
                    member_id,
                    identity.type,
                    index,
                    seal(data_key, identity.value, f"{member_id}/identity/{identity.type}"),
                    now,
                )
            )


COLUMNS = {
    "members": MEMBER_COLUMNS,
    "member_keys": KEY_COLUMNS,
    "identities": IDENTITY_COLUMNS,
    "profiles": PROFILE_COLUMNS,
}


@scenario("raw-member-import")
async def raw_member_import(ctx: BenchContext) -> Measurement:
    """One bare process: the files read and normalised by the service's FileReader, members
    matched in a dict, sealed and COPYed in transactions of 2,000 rows."""
    files = _files(ctx)
    connect = await _migrated(ctx, "rawimport")
    keyring = Keyring.parse(f"bench1:{new_key_text()}", new_key_text())
    raw = RawImport(keyring)
    conn = await asyncpg.connect(**connect)
    rss = await RssGrowth().__aenter__()
    read = rejected = 0
    started = time.perf_counter()
    try:
        for unit, path in files.paths.items():
            types = dict(TYPES)
            legacy = legacy_type(unit)
            types[legacy] = IdentityType(legacy, IdentityKind.TOKEN, r"[0-9A-Za-z_-]{1,64}")
            reader = FileReader(spec_of(unit), types, now=datetime.now(UTC))
            out: dict[str, list[tuple[Any, ...]]] = {t: [] for t in COLUMNS}
            pending = 0

            async def flush(out: dict[str, list[tuple[Any, ...]]]) -> None:
                async with conn.transaction():
                    for table, columns in COLUMNS.items():
                        if out[table]:
                            await conn.copy_records_to_table(
                                table, records=out[table], columns=columns
                            )
                for rows in out.values():
                    rows.clear()

            now = datetime.now(UTC)
            for row in reader.rows(parts(path)):
                read += 1
                if not isinstance(row, ParsedRow):
                    rejected += 1
                    continue
                raw.rows(row, unit, now, out)
                pending += 1
                if pending == CHUNK:
                    await flush(out)
                    pending = 0
            await flush(out)
            _progress(f"raw: {unit} done ({read:,} rows, {time.perf_counter() - started:.1f}s)")
        seconds = time.perf_counter() - started
        members = await conn.fetchval("SELECT count(*) FROM members")
    finally:
        await rss.__aexit__()
        await conn.close()
    if rejected or members != files.people:
        raise AssertionError(f"{members:,} members of {files.people:,} people, {rejected} rejected")
    return Measurement(
        count=read,
        seconds=seconds,
        concurrency=1,
        unit="rows",
        extra={
            "rows": read,
            "people": files.people,
            "file_mb": round(files.bytes / 1e6, 1),
            "peak_rss_growth_mb": rss.growth_mb,
        },
    )


# --- the service ---------------------------------------------------------------------------------


async def _follow(
    stub: member_import_pb2_grpc.MemberImportServiceStub, name: str
) -> pb.MemberImport:
    while True:
        answer = await stub.GetMemberImport(pb.GetMemberImportRequest(name=name), metadata=ADMIN)
        found: pb.MemberImport = answer.member_import
        if found.state != pb.MemberImport.STATE_RUNNING:
            return found
        await asyncio.sleep(POLL_SECONDS)


@scenario("member-import", ceiling="raw-member-import")
async def member_import(ctx: BenchContext) -> Measurement:
    """The three files through the identity service's CreateMemberImport, one after the
    other, each followed to the end; rows/s from the first upload to the last import's end."""
    files = _files(ctx)
    keys = {
        "LOYALTY_IDENTITY_KEYS": f"bench1:{new_key_text()}",
        "LOYALTY_IDENTITY_BLIND_INDEX_KEY": new_key_text(),
    }
    rss = await RssGrowth().__aenter__()  # the service's start and its imports
    with environment(keys):
        server = await start_service(
            SPEC, ctx.settings(database_prefix=f"{ctx.run_id}_imp_"), port=0
        )
    try:
        await server.wait_until_serving()
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = member_import_pb2_grpc.MemberImportServiceStub(channel)
            outcomes: dict[str, int] = {}
            cpu = CpuSplit()
            started = time.perf_counter()
            for unit, path in files.paths.items():

                async def requests(unit: str = unit, path: Path = path) -> Any:
                    yield pb.CreateMemberImportRequest(
                        request_id=f"bench-{ctx.run_id}-{unit}", spec=message_of(unit, path)
                    )
                    for chunk in parts(path):
                        yield pb.CreateMemberImportRequest(content=chunk)

                created = await stub.CreateMemberImport(requests(), metadata=ADMIN)
                done = await _follow(stub, created.member_import.name)
                if done.state != pb.MemberImport.STATE_SUCCEEDED:
                    raise AssertionError(f"{unit}: {pb.MemberImport.State.Name(done.state)}")
                p = done.progress
                for field in ("created", "linked", "unchanged", "candidates", "merged", "rejected"):
                    outcomes[field] = outcomes.get(field, 0) + getattr(p, field)
                _progress(
                    f"service: {unit} done ({p.rows_read:,} rows, "
                    f"{time.perf_counter() - started:.1f}s)"
                )
            seconds = time.perf_counter() - started
    finally:
        await rss.__aexit__()
        await server.stop(grace=0.5)
    if outcomes.get("created") != files.people or outcomes.get("rejected"):
        raise AssertionError(f"outcomes {outcomes} for {files.people:,} people")
    return Measurement(
        count=files.rows,
        seconds=seconds,
        concurrency=1,
        unit="rows",
        extra={
            **outcomes,
            "people": files.people,
            "file_mb": round(files.bytes / 1e6, 1),
            "peak_rss_growth_mb": rss.growth_mb,
            **cpu.spent(),
        },
    )
