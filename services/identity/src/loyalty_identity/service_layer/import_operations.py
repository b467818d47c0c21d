"""The use cases every kind of import shares (member and order imports: `imports.py`,
`order_imports.py`): taking a request once, the stored file's size, reading, listing and
cancelling an import, its report, and saving it after a chunk. Each runs inside the caller's
unit of work, over the kind's store; none knows gRPC."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from loyalty_kit.caller import check_unit
from loyalty_kit.errors import FieldViolation, InvalidArgument, NotFound
from loyalty_kit.idempotency import request_id_reused

from loyalty_identity.domain.import_operation import ImportCounts, ImportOperation, new_id
from loyalty_identity.service_layer.commands import Operator
from loyalty_identity.service_layer.ports import ImportWork, Operations

Job = TypeVar("Job", bound=ImportOperation[Any, Any])
Work = TypeVar("Work", bound=ImportWork)
Outcome = TypeVar("Outcome")
ReportRow = TypeVar("ReportRow", bound="Numbered")


class Numbered(Protocol):
    @property
    def row_number(self) -> int: ...


async def check_programme_unit(work: ImportWork, unit: str) -> None:
    """The spec's unit is one of the programme's (none known yet: no programme to judge by)."""
    known = await work.members.programme_units()
    if known and unit not in known:
        raise InvalidArgument(
            f"spec.unit: {unit} is not a business unit of the programme",
            reason="UNKNOWN_UNIT",
            metadata={"unit": unit},
            field_violations=[FieldViolation("spec.unit", "a business unit of the programme")],
        )


async def add_once(
    store: Operations[Job, Any, Any],
    kind: Callable[..., Job],
    spec: Any,
    operator: Operator,
    request_id: str,
    fingerprint: str,
    now: datetime,
) -> tuple[Job, bool]:
    """A new import of `kind` (RUNNING once its file is stored) and True; or, for a request id
    its client used already, that import and False (a different request under that id is
    refused)."""
    job = kind(
        import_id=new_id(),
        spec=spec,
        created_by=operator.client_id,
        request_id=request_id,
        created_at=now,
        updated_at=now,
        fingerprint=fingerprint,
    )
    if await store.add(job):
        return job, True
    first = await store.by_request(job.created_by, job.request_id)
    assert first is not None  # the import that took the request id committed
    if first.fingerprint != fingerprint:
        raise request_id_reused(job.request_id)
    return first, False


async def uploaded(
    store: Operations[Job, Any, Any], job: Job, file_bytes: int, sha256: str, now: datetime
) -> Job:
    """The file is stored: its size and digest."""
    job.file_bytes, job.file_sha256, job.updated_at = file_bytes, sha256, now
    await store.save(job)
    return job


async def get(
    store: Operations[Job, Any, Any],
    import_id: str,
    confined_to: str | None,
    not_found: Callable[[str], NotFound],
    *,
    lock: bool = False,
) -> Job:
    job = await store.get(import_id, lock=lock)
    if job is None:
        raise not_found(import_id)
    check_unit(job.unit, confined_to)
    return job


async def listed(
    store: Operations[Job, Any, Any], unit: str | None, after: tuple[str, str] | None, limit: int
) -> tuple[list[Job], tuple[str, str] | None]:
    """A page of imports, newest first, and the position after it (None at the end)."""
    found = await store.listed(unit, after, limit + 1)
    page = found[:limit]
    more = len(found) > limit and page
    return page, ((page[-1].created_at.isoformat(), page[-1].import_id) if more else None)


async def cancel(
    work: ImportWork,
    store: Operations[Job, Any, Any],
    job: Job,
    operator: Operator,
    now: datetime,
    audited: dict[str, Any],
) -> Job:
    """Stop an import (read locked): at once when no replica holds it, else after its chunk;
    the audit log says who, with `audited` (the kind) and where it stopped."""
    if not job.running:
        job.request_cancel(now, taken=False)  # cancelled already: nothing; ended: refused
        return job
    job.request_cancel(now, taken=job.held_at(now))
    await ended(store, job)
    await work.imports.audit(
        job.import_id,
        "cancel",
        None,
        (operator.unit, operator.client_id),
        "",
        {**audited, "rows_read": job.counts.rows_read, "state": job.state.value},
        now,
    )
    return job


async def report(
    store: Operations[Any, Outcome, ReportRow],
    import_id: str,
    outcome: Outcome | None,
    after: int,
    limit: int,
) -> tuple[list[ReportRow], int | None]:
    """A page of an import's report (its import read first, for its unit) and the row after."""
    rows = await store.report(import_id, outcome, after, limit + 1)
    page = list(rows[:limit])
    return page, (page[-1].row_number if len(rows) > limit and page else None)


async def chunk_done(
    store: Operations[Job, Any, Any],
    job: Job,
    counts: ImportCounts,
    rows: Sequence[Any],
    bytes_read: int,
    now: datetime,
    *,
    last: bool,
) -> None:
    """A chunk's rows counted and the checkpoint moved; the import ends here when most of it
    was refused, the file is read (`last`) or an operator asked it to stop; then saved."""
    job.advance(counts, max((r.number for r in rows), default=job.checkpoint), bytes_read, now)
    job.finish_chunk(last, bytes_read, now)
    await ended(store, job)


async def ended(store: Operations[Job, Any, Any], job: Job) -> None:
    """Save the import; once it has ended, its file goes unless the operator keeps it."""
    if not job.running and not job.file_kept:
        await store.drop_file(job.import_id)
    await store.save(job)


@dataclass(frozen=True)
class Kind(Generic[Work, Job, Outcome, ReportRow]):
    """The shared use cases over one kind's store (`imports.KIND`, `order_imports.KIND`):
    `not_found` refuses an unknown import, `audited` marks the kind in the audit log."""

    store: Callable[[Work], Operations[Job, Outcome, ReportRow]]
    not_found: Callable[[str], NotFound]
    audited: dict[str, Any] = field(default_factory=dict)

    async def uploaded(
        self, work: Work, job: Job, file_bytes: int, sha256: str, now: datetime
    ) -> Job:
        """The file is stored: its size and digest."""
        return await uploaded(self.store(work), job, file_bytes, sha256, now)

    async def get(self, work: Work, import_id: str, confined_to: str | None) -> Job:
        return await get(self.store(work), import_id, confined_to, self.not_found)

    async def listed(
        self, work: Work, unit: str | None, after: tuple[str, str] | None, limit: int
    ) -> tuple[list[Job], tuple[str, str] | None]:
        """A page of imports, newest first, and the position after it (None at the end)."""
        return await listed(self.store(work), unit, after, limit)

    async def cancel(
        self,
        work: Work,
        import_id: str,
        operator: Operator,
        confined_to: str | None,
        now: datetime,
    ) -> Job:
        """Stop an import: at once when no replica holds it, else after its chunk."""
        store = self.store(work)
        job = await get(store, import_id, confined_to, self.not_found, lock=True)
        return await cancel(work, store, job, operator, now, self.audited)

    async def report(
        self,
        work: Work,
        import_id: str,
        confined_to: str | None,
        outcome: Outcome | None,
        after: int,
        limit: int,
    ) -> tuple[list[ReportRow], int | None]:
        """A page of an import's report (the import read first: its unit is checked)."""
        await self.get(work, import_id, confined_to)
        return await report(self.store(work), import_id, outcome, after, limit)

    async def ended(self, work: Work, job: Job) -> None:
        """Save the import; once it has ended, its file goes unless the operator keeps it."""
        await ended(self.store(work), job)
