"""The audit log in the gateway's database (`audit_log`, migration 0004): the entries every
service publishes (`loyalty.audit.v1.AuditEntryRecorded`), kept once each, listed newest first
and exported whole.

The table is append-only (its trigger refuses UPDATE, DELETE and TRUNCATE): this module only
inserts and reads. PostgreSQL's text holds no NUL character, which a hostile request can carry
(a refused call's entry quotes it): each is kept as U+FFFD, so the entry is stored all the same."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from loyalty.audit.v1.audit_pb2 import AuditEntryRecorded
from loyalty_kit.db import driver_connection
from loyalty_kit.timestamps import moment
from loyalty_kit.uow import UnitOfWork
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

COLUMNS = (
    "entry_id, at, service, method, outcome, unit, client_id, operator_id, reason, request_id, "
    "target, before, after, request"
)
INSERT = (
    f"INSERT INTO audit_log ({COLUMNS}) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13::jsonb, $14::jsonb) "
    "ON CONFLICT (entry_id) DO NOTHING"
)


@dataclass(frozen=True)
class AuditRow:
    entry_id: str
    at: datetime
    service: str
    method: str
    outcome: str
    unit: str
    client_id: str
    operator_id: str
    reason: str
    request_id: str
    target: str
    before: str  # JSON text, "" when unknown
    after: str
    request: str

    def as_json(self) -> dict[str, Any]:
        """The row as JSON data (one line of the JSON Lines export)."""
        return {
            "entry_id": self.entry_id,
            "at": self.at.isoformat(),
            "service": self.service,
            "method": self.method,
            "outcome": self.outcome,
            "unit": self.unit,
            "client_id": self.client_id,
            "operator_id": self.operator_id,
            "reason": self.reason,
            "request_id": self.request_id,
            "target": self.target,
            "before": json.loads(self.before) if self.before else None,
            "after": json.loads(self.after) if self.after else None,
            "request": json.loads(self.request) if self.request else {},
        }


@dataclass(frozen=True)
class AuditFilter:
    target: str = ""
    operator_id: str = ""
    method: str = ""
    start: datetime | None = None
    end: datetime | None = None

    def key(self) -> dict[str, Any]:
        """What a page token is tied to."""
        return {
            "target": self.target,
            "operator": self.operator_id,
            "method": self.method,
            "start": self.start.isoformat() if self.start else "",
            "end": self.end.isoformat() if self.end else "",
        }


NUL = "\x00"
REPLACEMENT = "\ufffd"


def _text(text: str) -> str:
    return text.replace(NUL, REPLACEMENT)


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, dict):
        return {_text(str(k)): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value


def _json(text: str) -> str:
    """A JSON text jsonb accepts: a NUL in any string (escaped `\\u0000`) as U+FFFD."""
    if NUL not in text and "\\u0000" not in text:
        return text
    try:
        return json.dumps(_storable(json.loads(text)), sort_keys=True)
    except ValueError:
        return json.dumps({"unreadable": _text(text)})


def _nullable(text: str) -> str | None:
    return _json(text) if text else None


async def record(uow: UnitOfWork, entry: AuditEntryRecorded) -> None:
    """Keep an entry (once: a redelivered one changes nothing)."""
    conn = await driver_connection(uow.session)
    await conn.execute(*insert_args(entry))


def insert_args(entry: AuditEntryRecorded) -> tuple[Any, ...]:
    return (
        INSERT,
        uuid.UUID(entry.entry_id),
        moment(entry.at, "at") if entry.HasField("at") else datetime.now(UTC),
        *(
            _text(text)
            for text in (
                entry.service,
                entry.method,
                entry.outcome,
                entry.unit,
                entry.client_id,
                entry.operator_id,
                entry.reason,
                entry.request_id,
                entry.target,
            )
        ),
        _nullable(entry.before_json),
        _nullable(entry.after_json),
        _json(entry.request_json or "{}"),
    )


def _where(chosen: AuditFilter, after: tuple[datetime, str] | None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []

    def add(clause: str, value: Any) -> None:
        args.append(value)
        clauses.append(clause.replace("?", f"${len(args)}"))

    if chosen.target:
        add("target = ?", chosen.target)
    if chosen.operator_id:
        add("operator_id = ?", chosen.operator_id)
    if chosen.method:
        add("method = ?", chosen.method)
    if chosen.start is not None:
        add("at >= ?", chosen.start)
    if chosen.end is not None:
        add("at < ?", chosen.end)
    if after is not None:
        args.extend([after[0], uuid.UUID(after[1])])
        clauses.append(f"(at, entry_id) < (${len(args) - 1}, ${len(args)})")
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def _row(found: Any) -> AuditRow:
    def text(value: Any) -> str:
        if value is None:
            return ""
        return value if isinstance(value, str) else json.dumps(value, sort_keys=True)

    return AuditRow(
        entry_id=str(found["entry_id"]),
        at=found["at"],
        service=found["service"],
        method=found["method"],
        outcome=found["outcome"],
        unit=found["unit"],
        client_id=found["client_id"],
        operator_id=found["operator_id"],
        reason=found["reason"],
        request_id=found["request_id"],
        target=found["target"],
        before=text(found["before"]),
        after=text(found["after"]),
        request=text(found["request"]),
    )


class AuditLog:
    """Reads of the audit log (newest first)."""

    def __init__(self, uow: Callable[[], UnitOfWork]) -> None:
        self.uow = uow

    async def page(
        self, chosen: AuditFilter, size: int, after: tuple[datetime, str] | None
    ) -> tuple[list[AuditRow], bool]:
        """Up to `size` entries after a position, and whether more follow."""
        where, args = _where(chosen, after)
        args.append(size + 1)
        async with self.uow() as uow:
            conn = await driver_connection(uow.session)
            rows = await conn.fetch(
                f"SELECT {COLUMNS} FROM audit_log{where} "
                f"ORDER BY at DESC, entry_id DESC LIMIT ${len(args)}",
                *args,
            )
        found = [_row(r) for r in rows]
        return found[:size], len(found) > size

    async def every(self, chosen: AuditFilter, chunk: int = 500) -> AsyncIterator[AuditRow]:
        """Every entry the filter keeps, newest first, read a chunk at a time."""
        after: tuple[datetime, str] | None = None
        while True:
            rows, more = await self.page(chosen, chunk, after)
            for row in rows:
                yield row
            if not more or not rows:
                return
            after = (rows[-1].at, rows[-1].entry_id)


def direct_writer(
    sessions: async_sessionmaker[AsyncSession],
) -> Callable[[AuditEntryRecorded], Any]:
    """How the gateway audits its own calls: straight into its log (it has no outbox)."""

    async def write(entry: AuditEntryRecorded) -> None:
        async with sessions() as session, session.begin():
            conn = await driver_connection(session)
            await conn.execute(*insert_args(entry))

    return write
