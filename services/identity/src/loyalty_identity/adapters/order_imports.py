"""Order imports in PostgreSQL: the imports, their files and leases (`import_operations.py`,
as a member import's), the report of the rows not carried over and the orders carried over
(once per unit and order ID). A chunk makes three round trips whatever its size: its members
resolved in one query (ahead of its transaction, on a connection of its own), its orders
claimed in one COPY (one insert when some were claimed before), its report COPYed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from loyalty_identity.adapters.import_operations import (
    OperationStore,
    json_of,
    operation_fields,
)
from loyalty_identity.domain.identities import ChannelIdentity
from loyalty_identity.domain.imports import ImportFormat
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

_CLAIM_COLUMNS = ("unit", "order_id", "member_id", "import_id", "row_number")
_REPORT_COLUMNS = ("import_id", "row_number", "outcome", "member_id", "reason", "detail")
# Who holds an identity now: its member, or the member it was merged into; erased and merged
# members' identities are gone, so an identity held by no live member is unknown. Each identity
# is looked up on its own (the unique index of (identity_type, blind_index), then the member's
# key): `LIMIT 1` keeps the lateral subquery a parameterised index lookup per identity, whatever
# the planner believes of the tables. Joined as plain tables, a stale estimate (right after a
# bulk member import) made it sort every identity on disk for each chunk: 135 ms a chunk of
# 5,000 over 40,000 identities, growing with the table, against a few ms this way.
_RESOLVE = (
    "SELECT w.n, h.member_id "
    "FROM unnest($1::text[], $2::bytea[]) WITH ORDINALITY AS w(identity_type, blind_index, n) "
    "CROSS JOIN LATERAL ("
    "  SELECT CASE WHEN m.state = 'merged' THEN m.merged_into ELSE m.member_id END::text "
    "    AS member_id "
    "  FROM identities i JOIN members m ON m.member_id = i.member_id "
    "  WHERE i.identity_type = w.identity_type AND i.blind_index = w.blind_index "
    "    AND (m.state IN ('active', 'suspended') "
    "      OR (m.state = 'merged' AND m.merged_into IS NOT NULL)) "
    "  LIMIT 1"
    ") AS h"
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
    return OrderImport(
        **operation_fields(row),
        spec=spec_of(json_of(row["spec"])),
        counts=OrderCounts(*(row[name] for name in COUNTERS)),
    )


class OrderImportStore(OperationStore[OrderImport]):
    table = "order_imports"
    parts_table = "order_import_parts"
    counters = COUNTERS

    def spec_document(self, job: OrderImport) -> dict[str, Any]:
        return spec_document(job.spec)

    def job_of(self, row: Any) -> OrderImport:
        return import_of(row)

    def _name(self, import_id: str) -> str:
        return order_import_name(import_id)

    # --- a chunk ------------------------------------------------------------------------------
    async def members_of(self, identities: Sequence[ChannelIdentity]) -> list[str | None]:
        """The live member holding each identity (a merged member's survivor), None where
        none does: one query for the chunk."""
        if not identities:
            return []
        index = self._index
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
        others were carried over before, by any import of the unit). The order IDs must be
        distinct. They are COPYed, the fastest way in, as a chunk's usually are all new;
        should any have been carried over before (or be claimed by another transaction
        meanwhile), the COPY is undone (a savepoint) and one INSERT ... ON CONFLICT claims the
        others. In order-ID order either way: two imports sharing orders wait for each other,
        never deadlock."""
        if not orders:
            return set()
        conn = await self._conn()
        orders = sorted(orders)
        try:
            async with conn.transaction():  # a savepoint
                await conn.copy_records_to_table(
                    "imported_orders",
                    columns=_CLAIM_COLUMNS,
                    records=[(unit, o, m, import_id, r) for o, m, r in orders],
                )
            return {o for o, _, _ in orders}
        except asyncpg.UniqueViolationError:
            pass
        order_ids, members, rows = (list(column) for column in zip(*orders, strict=True))
        taken = await conn.fetch(
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
