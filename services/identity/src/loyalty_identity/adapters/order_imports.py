"""Order imports in PostgreSQL: the imports, their files (sealed with each import's own data
key, as a member import's are), the report of the rows not carried over, the orders carried
over (once per unit and order ID) and the leases replicas take. A chunk makes three round
trips whatever its size: its members resolved in one query, its orders claimed in one insert,
its report COPYed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
from loyalty_kit.db import driver_connection
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_identity.adapters.crypto import Keyring, seal_bytes, unseal_bytes
from loyalty_identity.adapters.import_documents import json_of
from loyalty_identity.domain.identities import ChannelIdentity
from loyalty_identity.domain.imports import ImportFormat
from loyalty_identity.domain.member_import import Failure, ImportState
from loyalty_identity.domain.order_import import (
    COUNTERS,
    OrderColumnMapping,
    OrderCounts,
    OrderImport,
    OrderImportMode,
    OrderImportSpec,
    OrderOutcome,
    OrderRow,
    order_import_name,
)

IMPORT_COLUMNS = (
    "import_id::text, unit, spec, state, checkpoint, bytes_read, error_reason, "
    "error_message, error_metadata, file_bytes, file_sha256, file_kept, created_by, request_id, "
    "request_fingerprint, lease_owner, leased_until, cancel_requested, created_at, updated_at, "
    "started_at, ended_at, " + ", ".join(COUNTERS)
)
_REPORT_COLUMNS = ("import_id", "row_number", "outcome", "member_id", "reason", "detail")
# Who holds an identity now: its member, or the member it was merged into; erased and merged
# members' identities are gone, so an identity held by no live member is unknown.
_RESOLVE = (
    "SELECT w.n, CASE WHEN m.state = 'merged' THEN m.merged_into ELSE m.member_id END::text "
    "  AS member_id "
    "FROM unnest($1::text[], $2::bytea[]) WITH ORDINALITY AS w(identity_type, blind_index, n) "
    "JOIN identities i USING (identity_type, blind_index) "
    "JOIN members m ON m.member_id = i.member_id "
    "WHERE m.state IN ('active', 'suspended') OR (m.state = 'merged' AND m.merged_into IS NOT NULL)"
)


def spec_document(spec: OrderImportSpec) -> dict[str, Any]:
    return {
        "unit": spec.unit,
        "format": spec.format.value,
        "encoding": spec.encoding,
        "mode": spec.mode.value,
        "currency": spec.currency,
        "default_region": spec.default_region,
        "keep_file": spec.keep_file,
        "file_name": spec.file_name,
        "max_rejected_percent": spec.max_rejected_percent,
        "mapping": spec.mapping.named(),
    }


def spec_of(document: dict[str, Any]) -> OrderImportSpec:
    return OrderImportSpec(
        unit=document["unit"],
        mapping=OrderColumnMapping(**document["mapping"]),
        format=ImportFormat(document["format"]),
        encoding=document["encoding"],
        mode=OrderImportMode(document["mode"]),
        currency=document["currency"],
        default_region=document["default_region"],
        keep_file=document["keep_file"],
        file_name=document["file_name"],
        max_rejected_percent=document["max_rejected_percent"],
    )


def import_of(row: Any) -> OrderImport:
    failure = (
        Failure(row["error_reason"], row["error_message"], dict(json_of(row["error_metadata"])))
        if row["error_reason"]
        else None
    )
    return OrderImport(
        import_id=row["import_id"],
        spec=spec_of(json_of(row["spec"])),
        created_by=row["created_by"],
        request_id=row["request_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        fingerprint=row["request_fingerprint"],
        file_bytes=row["file_bytes"],
        file_sha256=row["file_sha256"],
        file_kept=row["file_kept"],
        state=ImportState(row["state"]),
        counts=OrderCounts(*(row[name] for name in COUNTERS)),
        checkpoint=row["checkpoint"],
        bytes_read=row["bytes_read"],
        failure=failure,
        cancel_requested=row["cancel_requested"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        lease_owner=row["lease_owner"],
        leased_until=row["leased_until"],
    )


class OrderImportStore:
    def __init__(self, session: AsyncSession, keyring: Keyring) -> None:
        self.session = session
        self.keyring = keyring
        self._keys: dict[str, bytes] = {}

    async def _conn(self) -> asyncpg.Connection:
        return await driver_connection(self.session)

    async def data_key(self, import_id: str) -> bytes:
        if import_id not in self._keys:
            row = await (await self._conn()).fetchrow(
                "SELECT key_id, wrapped_key FROM order_imports WHERE import_id = $1", import_id
            )
            if row is None:
                raise KeyError(import_id)
            self._keys[import_id] = self.keyring.unwrap(
                order_import_name(import_id), row["key_id"], row["wrapped_key"]
            )
        return self._keys[import_id]

    # --- imports ------------------------------------------------------------------------------
    async def add(self, job: OrderImport) -> bool:
        """Insert a new import; False when its client's request id is taken."""
        data_key = self.keyring.new_data_key()
        key_id, wrapped = self.keyring.wrap(job.name, data_key)
        added = await (await self._conn()).fetchval(
            "INSERT INTO order_imports (import_id, unit, spec, state, file_kept, key_id, "
            "wrapped_key, created_by, request_id, request_fingerprint, created_at, updated_at) "
            "VALUES ($1, $2, $3::jsonb, $4, true, $5, $6, $7, $8, $9, $10, $10) "
            "ON CONFLICT (created_by, request_id) DO NOTHING RETURNING true",
            job.import_id,
            job.unit,
            json.dumps(spec_document(job.spec)),
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

    async def by_request(self, created_by: str, request_id: str) -> OrderImport | None:
        row = await (await self._conn()).fetchrow(
            f"SELECT {IMPORT_COLUMNS} FROM order_imports WHERE created_by = $1 AND request_id = $2",
            created_by,
            request_id,
        )
        return import_of(row) if row is not None else None

    async def get(self, import_id: str, *, lock: bool = False) -> OrderImport | None:
        row = await (await self._conn()).fetchrow(
            f"SELECT {IMPORT_COLUMNS} FROM order_imports WHERE import_id = $1"
            + (" FOR UPDATE" if lock else ""),
            import_id,
        )
        return import_of(row) if row is not None else None

    async def save(self, job: OrderImport) -> None:
        counts = job.counts
        failure = job.failure or Failure("", "")
        await (await self._conn()).execute(
            "UPDATE order_imports SET state = $2, rows_read = $3, imported = $4, "
            "unknown_member = $5, duplicates = $6, rejected = $7, checkpoint = $8, "
            "bytes_read = $9, error_reason = $10, error_message = $11, "
            "error_metadata = $12::jsonb, file_bytes = $13, file_sha256 = $14, file_kept = $15, "
            "lease_owner = $16, leased_until = $17, cancel_requested = $18, updated_at = $19, "
            "started_at = $20, ended_at = $21 WHERE import_id = $1",
            job.import_id,
            job.state.value,
            counts.rows_read,
            *(getattr(counts, name) for name in COUNTERS),
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
    ) -> list[OrderImport]:
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
            f"SELECT {IMPORT_COLUMNS} FROM order_imports WHERE {' AND '.join(where)} "
            f"ORDER BY created_at DESC, import_id DESC LIMIT ${len(args)}",
            *args,
        )
        return [import_of(row) for row in rows]

    # --- the file -----------------------------------------------------------------------------
    @staticmethod
    def _part_context(import_id: str, seq: int) -> str:
        return f"{order_import_name(import_id)}/parts/{seq}"

    async def add_part(self, import_id: str, seq: int, content: bytes) -> None:
        key = await self.data_key(import_id)
        await (await self._conn()).execute(
            "INSERT INTO order_import_parts (import_id, seq, sealed) VALUES ($1, $2, $3)",
            import_id,
            seq,
            seal_bytes(key, content, self._part_context(import_id, seq)),
        )

    async def part(self, import_id: str, seq: int) -> bytes | None:
        sealed = await (await self._conn()).fetchval(
            "SELECT sealed FROM order_import_parts WHERE import_id = $1 AND seq = $2",
            import_id,
            seq,
        )
        if sealed is None:
            return None
        key = await self.data_key(import_id)
        return unseal_bytes(key, sealed, self._part_context(import_id, seq))

    async def drop_file(self, import_id: str) -> None:
        await (await self._conn()).execute(
            "DELETE FROM order_import_parts WHERE import_id = $1", import_id
        )

    # --- leases (the database's clock, as the member imports') ------------------------------
    async def claim(self, owner: str, seconds: float, now: datetime) -> OrderImport | None:
        row = await (await self._conn()).fetchrow(
            "UPDATE order_imports SET lease_owner = $1, "
            "leased_until = clock_timestamp() + make_interval(secs => $2), "
            "started_at = COALESCE(started_at, $3) "
            "WHERE import_id = (SELECT import_id FROM order_imports WHERE state = 'running' "
            "  AND (leased_until IS NULL OR leased_until < clock_timestamp()) "
            "  ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED) "
            f"RETURNING {IMPORT_COLUMNS}",
            owner,
            seconds,
            now,
        )
        return import_of(row) if row is not None else None

    async def renew(self, import_id: str, owner: str, seconds: float) -> bool:
        return bool(
            await (await self._conn()).fetchval(
                "UPDATE order_imports SET leased_until = clock_timestamp() + "
                "make_interval(secs => $3) WHERE import_id = $1 AND lease_owner = $2 "
                "AND state = 'running' RETURNING true",
                import_id,
                owner,
                seconds,
            )
        )

    async def release(self, import_id: str, owner: str) -> None:
        await (await self._conn()).execute(
            "UPDATE order_imports SET lease_owner = '', leased_until = NULL "
            "WHERE import_id = $1 AND lease_owner = $2",
            import_id,
            owner,
        )

    # --- a chunk ------------------------------------------------------------------------------
    async def members_of(self, identities: Sequence[ChannelIdentity]) -> list[str | None]:
        """The live member holding each identity (a merged member's survivor), None where
        none does: one query for the chunk."""
        if not identities:
            return []
        index = self.keyring.blind_index
        found: list[str | None] = [None] * len(identities)
        rows = await (await self._conn()).fetch(
            _RESOLVE, [i.type for i in identities], [index(i) for i in identities]
        )
        for row in rows:
            found[row["n"] - 1] = row["member_id"]
        return found

    async def claim_orders(
        self, unit: str, import_id: str, orders: Sequence[tuple[str, str, int]]
    ) -> set[str]:
        """Record (order ID, member, row) as carried over; the order IDs that were new (the
        others were carried over before, by any import of the unit)."""
        if not orders:
            return set()
        order_ids, members, rows = (list(column) for column in zip(*orders, strict=True))
        taken = await (await self._conn()).fetch(
            "INSERT INTO imported_orders (unit, order_id, member_id, import_id, row_number) "
            "SELECT $1, o, m, $2, r FROM unnest($3::text[], $4::uuid[], $5::bigint[]) "
            "AS w(o, m, r) ON CONFLICT (unit, order_id) DO NOTHING RETURNING order_id",
            unit,
            import_id,
            order_ids,
            members,
            rows,
        )
        return {r["order_id"] for r in taken}

    async def add_report(self, import_id: str, rows: Sequence[OrderRow]) -> None:
        if not rows:
            return
        await (await self._conn()).copy_records_to_table(
            "order_import_rows",
            records=[
                (import_id, r.row_number, r.outcome.value, r.member_id or None, r.reason, r.detail)
                for r in rows
            ],
            columns=_REPORT_COLUMNS,
        )

    async def report(
        self, import_id: str, outcome: OrderOutcome | None, after: int, limit: int
    ) -> list[OrderRow]:
        args: list[Any] = [import_id, after, limit]
        where = "import_id = $1 AND row_number > $2"
        if outcome is not None:
            args.append(outcome.value)
            where += " AND outcome = $4"
        rows = await (await self._conn()).fetch(
            "SELECT row_number, outcome, member_id::text AS member_id, reason, detail "
            f"FROM order_import_rows WHERE {where} ORDER BY row_number LIMIT $3",
            *args,
        )
        return [
            OrderRow(
                r["row_number"],
                OrderOutcome(r["outcome"]),
                r["member_id"] or "",
                r["reason"],
                r["detail"],
            )
            for r in rows
        ]
