"""Member imports in PostgreSQL: the imports, their files (sealed), reports and merge
candidates, the leases replicas take on them; a chunk's members go through `member_bulk.py`.

Personal data is sealed as the members' is (`crypto.py`): each import has its own data key,
wrapped by the master key, which seals the file's parts and the rows of its merge candidates.
A chunk's report goes in with COPY: no round trip per row.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_identity.adapters.crypto import Keyring, seal_bytes, unseal_bytes
from loyalty_identity.adapters.identity_types import IdentityTypeCache
from loyalty_identity.adapters.import_documents import (
    CANDIDATE_COLUMNS,
    COUNTERS,
    candidate_of,
    import_of,
    row_document,
    row_of,
    spec_document,
)
from loyalty_identity.adapters.import_operations import OperationStore
from loyalty_identity.adapters.member_bulk import ChunkMembers
from loyalty_identity.domain.file_records import LEGACY_NUMBER
from loyalty_identity.domain.identities import ChannelIdentity
from loyalty_identity.domain.imports import ParsedRow, RowOutcome, legacy_type
from loyalty_identity.domain.member_import import (
    CandidateState,
    ImportedConsent,
    Joining,
    MemberImport,
    MergeCandidate,
    ReportRow,
    import_name,
)

LEGACY_PATTERN = LEGACY_NUMBER.pattern  # what the file reader takes as a legacy number
_REPORT_COLUMNS = (
    "import_id",
    "row_number",
    "outcome",
    "member_id",
    "reason",
    "detail",
    "legacy_key",
    "merge_candidate_id",
)


class ImportStore(OperationStore[MemberImport]):
    table = "member_imports"
    parts_table = "import_file_parts"
    counters = COUNTERS

    def __init__(self, session: AsyncSession, keyring: Keyring, types: IdentityTypeCache) -> None:
        super().__init__(session, keyring)
        self.types = types
        self._chunk: ChunkMembers | None = None  # the members' side of a chunk

    def spec_document(self, job: MemberImport) -> dict[str, Any]:
        return spec_document(job.spec)

    def job_of(self, row: Any) -> MemberImport:
        return import_of(row)

    def _name(self, import_id: str) -> str:
        return import_name(import_id)

    async def rewrap_keys(self, limit: int) -> int:
        """Re-wrap up to `limit` imports' data keys not yet under the active master key (a
        master key's rotation, as the members' keys are)."""
        conn = await self._conn()
        rows = await conn.fetch(
            "SELECT import_id::text AS import_id, key_id, wrapped_key FROM member_imports "
            "WHERE key_id <> $1 LIMIT $2 FOR UPDATE SKIP LOCKED",
            self.keyring.active_key_id,
            limit,
        )
        for row in rows:
            name = import_name(row["import_id"])
            key = self.keyring.unwrap(name, row["key_id"], row["wrapped_key"])
            key_id, wrapped = self.keyring.wrap(name, key)
            await conn.execute(
                "UPDATE member_imports SET key_id = $2, wrapped_key = $3 WHERE import_id = $1",
                row["import_id"],
                key_id,
                wrapped,
            )
        return len(rows)

    async def register_legacy_type(self, unit: str) -> None:
        """The identity type of the unit's legacy numbers, on its first import (an admin may
        change its description later; the import never overwrites it)."""
        inserted = await (await self._conn()).fetchval(
            "INSERT INTO identity_types (code, kind, pattern, description) "
            "VALUES ($1, 'token', $2, $3) ON CONFLICT (code) DO NOTHING RETURNING true",
            legacy_type(unit),
            LEGACY_PATTERN,
            f"{unit}'s legacy member number (member imports)",
        )
        if inserted:
            self.types.invalidate()

    # --- what a chunk reads -------------------------------------------------------------------
    def legacy_key(self, identity: ChannelIdentity) -> str:
        return self._index(identity).hex()

    async def earlier_legacy(
        self, import_id: str, legacy: Sequence[ChannelIdentity]
    ) -> dict[ChannelIdentity, int]:
        by_key = {self._index(i): i for i in legacy}
        if not by_key:
            return {}
        # One probe of the (import, legacy key) index each, in its order: as `= ANY` of a
        # chunk's thousands of keys the planner scans every import's report rows instead.
        rows = await (await self._conn()).fetch(
            "SELECT w.legacy_key, r.first FROM unnest($2::bytea[]) AS w(legacy_key) "
            "CROSS JOIN LATERAL (SELECT min(row_number) AS first FROM import_rows r "
            "  WHERE r.import_id = $1 AND r.legacy_key = w.legacy_key) r "
            "WHERE r.first IS NOT NULL",
            import_id,
            sorted(by_key),
        )
        return {by_key[bytes(r["legacy_key"])]: r["first"] for r in rows}

    async def _members(self) -> ChunkMembers:
        if self._chunk is None:
            self._chunk = ChunkMembers(await self._conn(), self.keyring, self._index)
        return self._chunk

    async def owners(self, identities: Sequence[ChannelIdentity]) -> dict[ChannelIdentity, str]:
        """The members holding these identities, locked against a merge or an erasure until
        the chunk commits."""
        return await (await self._members()).owners(identities)

    async def names(self, member_ids: Iterable[str]) -> dict[str, str]:
        return await (await self._members()).names(member_ids)

    # --- what a chunk writes ------------------------------------------------------------------
    async def join(
        self, unit: str, joinings: Sequence[Joining], now: datetime
    ) -> dict[str, tuple[ImportedConsent, ...]]:
        """The chunk's new members, and every row's identities, profile, consents and tags;
        the consents given, by member."""
        return await (await self._members()).join(unit, joinings, now)

    async def add_report(self, import_id: str, rows: Sequence[ReportRow]) -> None:
        if not rows:
            return
        await (await self._conn()).copy_records_to_table(
            "import_rows",
            records=[
                (
                    import_id,
                    r.row_number,
                    r.outcome.value,
                    r.member_id or None,
                    r.reason,
                    r.detail,
                    bytes.fromhex(r.legacy_key) if r.legacy_key else None,
                    r.merge_candidate_id or None,
                )
                for r in rows
            ],
            columns=_REPORT_COLUMNS,
        )

    async def add_candidate(self, candidate: MergeCandidate, row: ParsedRow) -> str:
        """The candidate, its row sealed; the id of the one already open for the same legacy
        account if there is one (the same file imported again)."""
        key = await self.data_key(candidate.import_id)
        sealed = seal_bytes(
            key, json.dumps(row_document(row)).encode(), self._row_context(candidate)
        )
        imported = candidate.imported
        legacy_key = bytes.fromhex(imported.legacy_key)
        conn = await self._conn()
        added = await conn.fetchval(
            "INSERT INTO merge_candidates (candidate_id, import_id, row_number, unit, "
            "legacy_key, evidence, row_sealed, legacy_points, points_expire_at, tier_code, "
            "tier_ends_at, birthday_month, birthday_day, state, created_at) "
            "VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11, $12, $13, $14, $15) "
            "ON CONFLICT (unit, legacy_key) WHERE state = 'open' DO NOTHING "
            "RETURNING candidate_id::text",
            candidate.candidate_id,
            candidate.import_id,
            candidate.row_number,
            candidate.unit,
            legacy_key,
            json.dumps(
                [[e.member_id, e.identity_type, e.masked_value] for e in candidate.evidence]
            ),
            sealed,
            imported.legacy_points,
            imported.legacy_points_expire_at,
            imported.tier_code,
            imported.tier_ends_at,
            imported.birthday_month,
            imported.birthday_day,
            candidate.state.value,
            candidate.created_at,
        )
        if added is not None:
            return str(added)
        return str(
            await conn.fetchval(
                "SELECT candidate_id::text FROM merge_candidates "
                "WHERE unit = $1 AND legacy_key = $2 AND state = 'open'",
                candidate.unit,
                legacy_key,
            )
        )

    @staticmethod
    def _row_context(candidate: MergeCandidate) -> str:
        return f"{import_name(candidate.import_id)}/candidates/{candidate.candidate_id}"

    # --- reports and candidates ---------------------------------------------------------------
    async def report(
        self, import_id: str, outcome: RowOutcome | None, after: int, limit: int
    ) -> list[ReportRow]:
        args: list[Any] = [import_id, after, limit]
        where = "import_id = $1 AND row_number > $2"
        if outcome is not None:
            args.append(outcome.value)
            where += " AND outcome = $4"
        rows = await (await self._conn()).fetch(
            "SELECT row_number, outcome, member_id::text AS member_id, reason, detail, "
            "legacy_key, merge_candidate_id::text AS candidate FROM import_rows "
            f"WHERE {where} ORDER BY row_number LIMIT $3",
            *args,
        )
        return [
            ReportRow(
                r["row_number"],
                RowOutcome(r["outcome"]),
                r["member_id"] or "",
                r["reason"],
                r["detail"],
                bytes(r["legacy_key"]).hex() if r["legacy_key"] else "",
                r["candidate"] or "",
            )
            for r in rows
        ]

    async def candidate(self, candidate_id: str, *, lock: bool = False) -> MergeCandidate | None:
        row = await (await self._conn()).fetchrow(
            f"SELECT {CANDIDATE_COLUMNS} FROM merge_candidates WHERE candidate_id = $1"
            + (" FOR UPDATE" if lock else ""),
            candidate_id,
        )
        return candidate_of(row) if row is not None else None

    async def candidate_row(self, candidate: MergeCandidate) -> ParsedRow | None:
        sealed = await (await self._conn()).fetchval(
            "SELECT row_sealed FROM merge_candidates WHERE candidate_id = $1",
            candidate.candidate_id,
        )
        if sealed is None:
            return None
        key = await self.data_key(candidate.import_id)
        return row_of(json.loads(unseal_bytes(key, sealed, self._row_context(candidate))))

    async def save_candidate(self, candidate: MergeCandidate) -> None:
        """Its state; a decided candidate's row is deleted (nothing is left to do with it)."""
        await (await self._conn()).execute(
            "UPDATE merge_candidates SET state = $2, survivor = $3, resolved_at = $4, "
            "row_sealed = CASE WHEN $2 = 'open' THEN row_sealed END WHERE candidate_id = $1",
            candidate.candidate_id,
            candidate.state.value,
            candidate.survivor or None,
            candidate.resolved_at,
        )

    async def settle_candidate_rows(
        self, candidate_id: str, outcome: RowOutcome, member_id: str, reason: str
    ) -> None:
        """Report rows that were this candidate take its decision, and their imports' counts
        follow (a candidate fewer, a row merged or refused more)."""
        column = {RowOutcome.MERGED: "merged", RowOutcome.REJECTED: "rejected"}[outcome]
        detail = {
            RowOutcome.MERGED: "an operator resolved the merge candidate",
            RowOutcome.REJECTED: "an operator dismissed the merge candidate",
        }[outcome]
        points = "c.n * m.points" if outcome is RowOutcome.MERGED else "0"
        await (await self._conn()).execute(
            "WITH changed AS (UPDATE import_rows SET outcome = $2, member_id = $3, reason = $4, "
            "  detail = $5 WHERE merge_candidate_id = $1 AND outcome = 'merge_candidate' "
            "  RETURNING import_id), "
            "counted AS (SELECT import_id, count(*) AS n FROM changed GROUP BY import_id), "
            "m AS (SELECT legacy_points AS points FROM merge_candidates WHERE candidate_id = $1) "
            f"UPDATE member_imports i SET candidates = i.candidates - c.n, "
            f"{column} = i.{column} + c.n, legacy_points = i.legacy_points + {points} "
            "FROM counted c, m WHERE i.import_id = c.import_id",
            candidate_id,
            outcome.value,
            member_id or None,
            reason,
            detail,
        )

    async def candidates(
        self,
        import_id: str | None,
        state: CandidateState | None,
        unit: str | None,
        after: tuple[str, int, str] | None,
        limit: int,
    ) -> list[MergeCandidate]:
        where: list[str] = ["true"]
        args: list[Any] = []
        for column, value in (("import_id", import_id), ("state", state), ("unit", unit)):
            if value is not None:
                args.append(value.value if isinstance(value, CandidateState) else value)
                where.append(f"{column} = ${len(args)}")
        if after is not None:
            args += [datetime.fromisoformat(after[0]), int(after[1]), after[2]]
            where.append(
                f"(created_at, row_number, candidate_id) > "
                f"(${len(args) - 2}, ${len(args) - 1}, ${len(args)}::uuid)"
            )
        args.append(limit)
        rows = await (await self._conn()).fetch(
            f"SELECT {CANDIDATE_COLUMNS} FROM merge_candidates WHERE {' AND '.join(where)} "
            f"ORDER BY created_at, row_number, candidate_id LIMIT ${len(args)}",
            *args,
        )
        return [candidate_of(row) for row in rows]

    async def audit(
        self,
        import_id: str,
        action: str,
        candidate_id: str | None,
        operator: tuple[str, str],
        reason: str,
        detail: dict[str, Any],
        at: datetime,
    ) -> None:
        """Append to the imports' audit log (no personal data in `detail`)."""
        unit, client_id = operator
        await (await self._conn()).execute(
            "INSERT INTO import_audit (import_id, action, candidate_id, unit, client_id, reason, "
            "detail, at) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8)",
            import_id,
            action,
            candidate_id,
            unit,
            client_id,
            reason,
            json.dumps(detail),
            at,
        )
