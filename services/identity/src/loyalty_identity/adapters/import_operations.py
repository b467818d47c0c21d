"""Any kind of import in PostgreSQL (member imports: `imports.py`, order imports:
`order_imports.py`): its row in the kind's table, its file's parts sealed with the import's own
data key (wrapped by the master key), and the leases replicas take on it, on the database's
clock. A kind names its tables, its counters and how its spec and row read."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

import asyncpg
from loyalty_kit.db import driver_connection
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_identity.adapters.crypto import Keyring, seal_bytes, unseal_bytes
from loyalty_identity.domain.identities import ChannelIdentity
from loyalty_identity.domain.import_operation import Failure, ImportOperation, ImportState

Job = TypeVar("Job", bound=ImportOperation[Any, Any])

OPERATION_COLUMNS = (
    "import_id::text, unit, spec, state, checkpoint, bytes_read, error_reason, "
    "error_message, error_metadata, file_bytes, file_sha256, file_kept, created_by, request_id, "
    "request_fingerprint, lease_owner, leased_until, cancel_requested, created_at, updated_at, "
    "started_at, ended_at"
)


def json_of(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def operation_fields(row: Any) -> dict[str, Any]:
    """The operation's own fields from its stored row (a kind adds its spec and counts)."""
    failure = (
        Failure(row["error_reason"], row["error_message"], dict(json_of(row["error_metadata"])))
        if row["error_reason"]
        else None
    )
    return {
        "import_id": row["import_id"],
        "created_by": row["created_by"],
        "request_id": row["request_id"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "fingerprint": row["request_fingerprint"],
        "file_bytes": row["file_bytes"],
        "file_sha256": row["file_sha256"],
        "file_kept": row["file_kept"],
        "state": ImportState(row["state"]),
        "checkpoint": row["checkpoint"],
        "bytes_read": row["bytes_read"],
        "failure": failure,
        "cancel_requested": row["cancel_requested"],
        "started_at": row["started_at"],
        "ended_at": row["ended_at"],
        "lease_owner": row["lease_owner"],
        "leased_until": row["leased_until"],
    }


class OperationStore(Generic[Job]):
    """A kind's imports and their files; a kind sets `table`, `parts_table`, `counters` (its
    counter columns, `rows_read` aside) and `spec_document`/`job_of`."""

    table: ClassVar[str]
    parts_table: ClassVar[str]
    counters: ClassVar[tuple[str, ...]]

    def __init__(self, session: AsyncSession, keyring: Keyring) -> None:
        self.session = session
        self.keyring = keyring
        self._keys: dict[str, bytes] = {}  # the imports' data keys opened in this unit of work
        self._indexes: dict[ChannelIdentity, bytes] = {}  # a chunk's blind indexes, made once

    def _index(self, identity: ChannelIdentity) -> bytes:
        found = self._indexes.get(identity)
        if found is None:
            found = self._indexes[identity] = self.keyring.blind_index(identity)
        return found

    def remember_indexes(self, indexes: Mapping[ChannelIdentity, bytes]) -> None:
        """Blind indexes made with a chunk's rows (in an import's worker process): not made
        again here."""
        self._indexes.update(indexes)

    @classmethod
    def columns(cls) -> str:
        return f"{OPERATION_COLUMNS}, rows_read, " + ", ".join(cls.counters)

    def spec_document(self, job: Job) -> dict[str, Any]:
        raise NotImplementedError

    def job_of(self, row: Any) -> Job:
        raise NotImplementedError

    def _name(self, import_id: str) -> str:
        raise NotImplementedError

    async def _conn(self) -> asyncpg.Connection:
        return await driver_connection(self.session)

    # --- the import's data key ----------------------------------------------------------------
    async def data_key(self, import_id: str) -> bytes:
        if import_id not in self._keys:
            row = await (await self._conn()).fetchrow(
                f"SELECT key_id, wrapped_key FROM {self.table} WHERE import_id = $1", import_id
            )
            if row is None:
                raise KeyError(import_id)
            self._keys[import_id] = self.keyring.unwrap(
                self._name(import_id), row["key_id"], row["wrapped_key"]
            )
        return self._keys[import_id]

    # --- imports ------------------------------------------------------------------------------
    async def add(self, job: Job) -> bool:
        """Insert a new import; False when its client's request id is taken (the first
        import's transaction decided, if it was still running)."""
        data_key = self.keyring.new_data_key()
        key_id, wrapped = self.keyring.wrap(job.name, data_key)
        added = await (await self._conn()).fetchval(
            f"INSERT INTO {self.table} (import_id, unit, spec, state, file_kept, key_id, "
            "wrapped_key, created_by, request_id, request_fingerprint, created_at, updated_at) "
            "VALUES ($1, $2, $3::jsonb, $4, true, $5, $6, $7, $8, $9, $10, $10) "
            "ON CONFLICT (created_by, request_id) DO NOTHING RETURNING true",
            job.import_id,
            job.unit,
            json.dumps(self.spec_document(job)),
            job.state.value,
            key_id,
            wrapped,
            job.created_by,
            job.request_id,
            job.fingerprint,
            job.created_at,
        )
        if added:
            self._keys[job.import_id] = data_key
        return bool(added)

    async def by_request(self, created_by: str, request_id: str) -> Job | None:
        row = await (await self._conn()).fetchrow(
            f"SELECT {self.columns()} FROM {self.table} WHERE created_by = $1 AND request_id = $2",
            created_by,
            request_id,
        )
        return self.job_of(row) if row is not None else None

    async def get(self, import_id: str, *, lock: bool = False) -> Job | None:
        row = await (await self._conn()).fetchrow(
            f"SELECT {self.columns()} FROM {self.table} WHERE import_id = $1"
            + (" FOR UPDATE" if lock else ""),
            import_id,
        )
        return self.job_of(row) if row is not None else None

    async def save(self, job: Job) -> None:
        counts = job.counts
        failure = job.failure or Failure("", "")
        at = 4 + len(self.counters)  # the first parameter after the counters
        counted = ", ".join(f"{name} = ${n}" for n, name in enumerate(self.counters, start=4))
        others = (
            "checkpoint",
            "bytes_read",
            "error_reason",
            "error_message",
            "error_metadata",
            "file_bytes",
            "file_sha256",
            "file_kept",
            "lease_owner",
            "leased_until",
            "cancel_requested",
            "updated_at",
            "started_at",
            "ended_at",
        )
        rest = ", ".join(
            f"{name} = ${n}" + ("::jsonb" if name == "error_metadata" else "")
            for n, name in enumerate(others, start=at)
        )
        await (await self._conn()).execute(
            f"UPDATE {self.table} SET state = $2, rows_read = $3, {counted}, {rest} "
            "WHERE import_id = $1",
            job.import_id,
            job.state.value,
            counts.rows_read,
            *(getattr(counts, name) for name in self.counters),
            job.checkpoint,
            job.bytes_read,
            failure.reason,
            failure.message,
            json.dumps(failure.metadata),
            job.file_bytes,
            job.file_sha256,
            job.file_kept,
            job.lease_owner,
            job.leased_until,
            job.cancel_requested,
            job.updated_at,
            job.started_at,
            job.ended_at,
        )

    async def listed(
        self, unit: str | None, after: tuple[str, str] | None, limit: int
    ) -> list[Job]:
        where: list[str] = ["true"]
        args: list[Any] = []
        if unit is not None:
            args.append(unit)
            where.append(f"unit = ${len(args)}")
        if after is not None:
            args += [datetime.fromisoformat(after[0]), after[1]]
            where.append(f"(created_at, import_id) < (${len(args) - 1}, ${len(args)}::uuid)")
        args.append(limit)
        rows = await (await self._conn()).fetch(
            f"SELECT {self.columns()} FROM {self.table} WHERE {' AND '.join(where)} "
            f"ORDER BY created_at DESC, import_id DESC LIMIT ${len(args)}",
            *args,
        )
        return [self.job_of(row) for row in rows]

    # --- the file -----------------------------------------------------------------------------
    def _part_context(self, import_id: str, seq: int) -> str:
        return f"{self._name(import_id)}/parts/{seq}"

    async def add_part(self, import_id: str, seq: int, content: bytes) -> None:
        key = await self.data_key(import_id)
        sealed = seal_bytes(key, content, self._part_context(import_id, seq))
        await (await self._conn()).execute(
            f"INSERT INTO {self.parts_table} (import_id, seq, sealed) VALUES ($1, $2, $3)",
            import_id,
            seq,
            sealed,
        )

    async def part(self, import_id: str, seq: int) -> bytes | None:
        """Part `seq` of the file, opened (None past the last)."""
        sealed = await (await self._conn()).fetchval(
            f"SELECT sealed FROM {self.parts_table} WHERE import_id = $1 AND seq = $2",
            import_id,
            seq,
        )
        if sealed is None:
            return None
        key = await self.data_key(import_id)
        return unseal_bytes(key, sealed, self._part_context(import_id, seq))

    async def drop_file(self, import_id: str) -> None:
        await (await self._conn()).execute(
            f"DELETE FROM {self.parts_table} WHERE import_id = $1", import_id
        )

    # --- leases -------------------------------------------------------------------------------
    async def claim(self, owner: str, seconds: float, now: datetime) -> Job | None:
        """Take the oldest running import no replica holds (or whose holder's lease ran out)."""
        row = await (await self._conn()).fetchrow(
            f"UPDATE {self.table} SET lease_owner = $1, "
            "leased_until = clock_timestamp() + make_interval(secs => $2), "
            "started_at = COALESCE(started_at, $3) "
            f"WHERE import_id = (SELECT import_id FROM {self.table} WHERE state = 'running' "
            "  AND (leased_until IS NULL OR leased_until < clock_timestamp()) "
            "  ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED) "
            f"RETURNING {self.columns()}",
            owner,
            seconds,
            now,
        )
        return self.job_of(row) if row is not None else None

    async def renew(self, import_id: str, owner: str, seconds: float) -> bool:
        return bool(
            await (await self._conn()).fetchval(
                f"UPDATE {self.table} SET leased_until = clock_timestamp() + "
                "make_interval(secs => $3) WHERE import_id = $1 AND lease_owner = $2 "
                "AND state = 'running' RETURNING true",
                import_id,
                owner,
                seconds,
            )
        )

    async def release(self, import_id: str, owner: str) -> None:
        await (await self._conn()).execute(
            f"UPDATE {self.table} SET lease_owner = '', leased_until = NULL "
            "WHERE import_id = $1 AND lease_owner = $2",
            import_id,
            owner,
        )
