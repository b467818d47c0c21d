"""Use cases of the order imports: creating one (its file stored by the servicer in the same
unit of work), reading, listing and cancelling it, its report, and one chunk of rows (the
worker's transaction, `order_import_worker.py`). As the member imports' (`imports.py`), over
the order imports' store.

Each runs inside one unit of work that the caller opens and commits; none knows gRPC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from loyalty_kit.caller import check_unit
from loyalty_kit.errors import FieldViolation, InvalidArgument
from loyalty_kit.idempotency import request_id_reused
from loyalty_kit.kernel.money import Amount

from loyalty_identity.domain.events import LegacyOrdersImported
from loyalty_identity.domain.import_spec import DEFAULT_MAX_REJECTED_PERCENT
from loyalty_identity.domain.imports import RejectedRow
from loyalty_identity.domain.member_import import new_id
from loyalty_identity.domain.order_file import OrderRow as Row
from loyalty_identity.domain.order_file import known_currency
from loyalty_identity.domain.order_import import (
    ImportedOrder,
    OrderCounts,
    OrderImport,
    OrderImportNotFound,
    OrderImportSpec,
    OrderOutcome,
    OrderRow,
    ParsedOrder,
    validate_order_spec,
)
from loyalty_identity.service_layer.commands import Operator
from loyalty_identity.service_layer.ports import OrderImportWork

UNKNOWN_MEMBER = "no member holds its legacy number or phone (import the members first)"
DUPLICATE_BEFORE = "this order ID of the unit was carried over before"


# --- creating, reading, cancelling ---------------------------------------------------------------
async def create(
    work: OrderImportWork,
    spec: OrderImportSpec,
    operator: Operator,
    request_id: str,
    fingerprint: str,
    now: datetime,
) -> tuple[OrderImport, bool]:
    """A new import, RUNNING once its file is stored (the caller stores it in this unit of
    work), and True; or, for a request id this client used already, that import and False."""
    validate_order_spec(spec, known_currency(spec.currency))
    known = await work.members.programme_units()
    if known and spec.unit not in known:
        raise InvalidArgument(
            f"spec.unit: {spec.unit} is not a business unit of the programme",
            reason="UNKNOWN_UNIT",
            metadata={"unit": spec.unit},
            field_violations=[FieldViolation("spec.unit", "a business unit of the programme")],
        )
    job = OrderImport(
        import_id=new_id(),
        spec=replace(
            spec, max_rejected_percent=spec.max_rejected_percent or DEFAULT_MAX_REJECTED_PERCENT
        ),
        created_by=operator.client_id,
        request_id=request_id,
        created_at=now,
        updated_at=now,
        fingerprint=fingerprint,
    )
    if not await work.order_imports.add(job):
        first = await work.order_imports.by_request(operator.client_id, request_id)
        assert first is not None  # the import that took the request id committed
        if first.fingerprint != fingerprint:
            raise request_id_reused(request_id)
        return first, False
    await work.imports.audit(
        job.import_id,
        "create",
        None,
        (operator.unit, operator.client_id),
        "",
        {
            "kind": "orders",
            "unit": spec.unit,
            "file_name": spec.file_name,
            "format": spec.format.value,
            "mode": spec.mode.value,
        },
        now,
    )
    return job, True


async def uploaded(
    work: OrderImportWork, job: OrderImport, file_bytes: int, sha256: str, now: datetime
) -> OrderImport:
    job.file_bytes, job.file_sha256, job.updated_at = file_bytes, sha256, now
    await work.order_imports.save(job)
    return job


async def get(work: OrderImportWork, import_id: str, confined_to: str | None) -> OrderImport:
    job = await work.order_imports.get(import_id)
    if job is None:
        raise OrderImportNotFound(import_id)
    check_unit(job.unit, confined_to)
    return job


async def listed(
    work: OrderImportWork, unit: str | None, after: tuple[str, str] | None, limit: int
) -> tuple[list[OrderImport], tuple[str, str] | None]:
    found = await work.order_imports.listed(unit, after, limit + 1)
    page = found[:limit]
    more = len(found) > limit and page
    return page, ((page[-1].created_at.isoformat(), page[-1].import_id) if more else None)


async def cancel(
    work: OrderImportWork,
    import_id: str,
    operator: Operator,
    confined_to: str | None,
    now: datetime,
) -> OrderImport:
    """Stop an import: at once when no replica holds it, else after its chunk."""
    job = await work.order_imports.get(import_id, lock=True)
    if job is None:
        raise OrderImportNotFound(import_id)
    check_unit(job.unit, confined_to)
    if not job.running:
        job.request_cancel(now, taken=False)  # cancelled already: nothing; ended: refused
        return job
    taken = bool(job.lease_owner) and job.leased_until is not None and job.leased_until > now
    job.request_cancel(now, taken=taken)
    await ended(work, job)
    await work.imports.audit(
        job.import_id,
        "cancel",
        None,
        (operator.unit, operator.client_id),
        "",
        {"kind": "orders", "rows_read": job.counts.rows_read, "state": job.state.value},
        now,
    )
    return job


async def report(
    work: OrderImportWork,
    import_id: str,
    confined_to: str | None,
    outcome: OrderOutcome | None,
    after: int,
    limit: int,
) -> tuple[list[OrderRow], int | None]:
    await get(work, import_id, confined_to)
    rows = await work.order_imports.report(import_id, outcome, after, limit + 1)
    page = rows[:limit]
    return page, (page[-1].row_number if len(rows) > limit and page else None)


async def ended(work: OrderImportWork, job: OrderImport) -> None:
    """Save the import; once it has ended, its file goes unless the operator keeps it."""
    if not job.running and not job.file_kept:
        await work.order_imports.drop_file(job.import_id)
    await work.order_imports.save(job)


# --- a chunk ------------------------------------------------------------------------------------
def decide(
    orders: Sequence[ParsedOrder], members: Sequence[str | None]
) -> tuple[list[tuple[ParsedOrder, str]], list[OrderRow]]:
    """Each parsed order with its member (`members`: the member of each order's identities in
    turn, None where nobody holds one): the orders to carry over, first row of an order ID
    in the chunk first, and the report rows of the others (unknown member, the same order ID
    again in the chunk)."""
    carry: list[tuple[ParsedOrder, str]] = []
    report: list[OrderRow] = []
    seen: dict[str, int] = {}
    at = 0
    for order in orders:
        held = members[at : at + len(order.identities)]
        at += len(order.identities)
        member = next((m for m in held if m), None)
        if member is None:
            report.append(
                OrderRow(
                    order.number, OrderOutcome.UNKNOWN_MEMBER, "", "UNKNOWN_MEMBER", UNKNOWN_MEMBER
                )
            )
            continue
        first = seen.get(order.order_id)
        if first is not None:
            report.append(
                OrderRow(
                    order.number,
                    OrderOutcome.DUPLICATE,
                    member,
                    "DUPLICATE",
                    f"the order ID of row {first} again",
                )
            )
            continue
        seen[order.order_id] = order.number
        carry.append((order, member))
    return carry, report


async def import_chunk(
    work: OrderImportWork,
    job: OrderImport,
    rows: Sequence[Row],
    bytes_read: int,
    now: datetime,
    *,
    last: bool,
) -> OrderCounts:
    """One chunk of rows in this unit of work: its members resolved in one query, its new
    orders claimed (unique per unit and order ID), the report of the rows not carried over,
    one LegacyOrdersImported for the chunk, the counters and checkpoint moved; the import ends
    here when the file is read (`last`), most of it was refused, or an operator asked it to
    stop."""
    parsed = [r for r in rows if isinstance(r, ParsedOrder)]
    members = await work.order_imports.members_of([i for r in parsed for i in r.identities])
    carry, report = decide(parsed, members)
    new = await work.order_imports.claim_orders(
        job.unit, job.import_id, [(o.order_id, m, o.number) for o, m in carry]
    )
    counts = OrderCounts()
    carried: list[ImportedOrder] = []
    for order, member in carry:
        if order.order_id in new:
            counts.count(OrderOutcome.IMPORTED)
            carried.append(
                ImportedOrder(
                    member, order.order_id, Amount(order.currency, order.amount), order.occurred_at
                )
            )
        else:
            report.append(
                OrderRow(
                    order.number, OrderOutcome.DUPLICATE, member, "DUPLICATE", DUPLICATE_BEFORE
                )
            )
    for refused in (r for r in rows if isinstance(r, RejectedRow)):
        report.append(
            OrderRow(refused.number, OrderOutcome.REJECTED, "", refused.reason, refused.detail)
        )
    for row in report:
        counts.count(row.outcome)
    report.sort(key=lambda r: r.row_number)
    await work.order_imports.add_report(job.import_id, report)
    if carried:
        work.record(LegacyOrdersImported(job.name, job.unit, job.spec.mode, tuple(carried), now))

    job.advance(counts, max((r.number for r in rows), default=job.checkpoint), bytes_read, now)
    failure = job.mostly_rejected()
    if failure is not None:
        job.fail(failure, now)
    elif last:
        job.succeed(bytes_read, now)
    elif job.cancel_requested:
        job.cancel(now)
    await ended(work, job)
    return counts
