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
from decimal import Decimal

from loyalty_kit.kernel.money import Amount

from loyalty_identity.domain.events import LegacyOrdersImported
from loyalty_identity.domain.import_spec import DEFAULT_MAX_REJECTED_PERCENT
from loyalty_identity.domain.imports import RejectedRow
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
from loyalty_identity.service_layer import import_operations as operations
from loyalty_identity.service_layer.commands import Operator
from loyalty_identity.service_layer.ports import OrderImports, OrderImportWork

UNKNOWN_MEMBER = "no member holds its legacy number or phone (import the members first)"
DUPLICATE_BEFORE = "this order ID of the unit was carried over before"


KIND: operations.Kind[OrderImportWork, OrderImport, OrderOutcome, OrderRow] = operations.Kind(
    lambda work: work.order_imports, OrderImportNotFound, {"kind": "orders"}
)
uploaded = KIND.uploaded
get = KIND.get
listed = KIND.listed
cancel = KIND.cancel
report = KIND.report
ended = KIND.ended


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
    await operations.check_programme_unit(work, spec.unit)
    spec = replace(
        spec, max_rejected_percent=spec.max_rejected_percent or DEFAULT_MAX_REJECTED_PERCENT
    )
    job, fresh = await operations.add_once(
        work.order_imports, OrderImport, spec, operator, request_id, fingerprint, now
    )
    if not fresh:
        return job, False
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
        count = len(order.identities)
        # Most orders name their member one way: no slice to search.
        member = (
            members[at] if count == 1 else next((m for m in members[at : at + count] if m), None)
        )
        at += count
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


async def members_of(store: OrderImports, rows: Sequence[Row]) -> list[str | None]:
    """The member holding each identity of the rows' parsed orders, in turn (None where
    nobody does), as `decide` takes them: one query."""
    return await store.members_of(
        [i for r in rows if isinstance(r, ParsedOrder) for i in r.identities]
    )


async def import_chunk(
    work: OrderImportWork,
    job: OrderImport,
    rows: Sequence[Row],
    bytes_read: int,
    now: datetime,
    *,
    last: bool,
    members: Sequence[str | None] | None = None,
) -> OrderCounts:
    """One chunk of rows in this unit of work: its members resolved in one query (unless
    given: `members_of` the same rows, looked up just before), its new orders claimed (unique
    per unit and order ID), the report of the rows not carried over, one LegacyOrdersImported
    for the chunk, the counters and checkpoint moved; the import ends here when the file is
    read (`last`), most of it was refused, or an operator asked it to stop."""
    parsed = [r for r in rows if isinstance(r, ParsedOrder)]
    if members is None:
        members = await members_of(work.order_imports, rows)
    carry, report = decide(parsed, members)
    new = await work.order_imports.claim_orders(
        job.unit, job.import_id, [(o.order_id, m, o.number) for o, m in carry]
    )
    counts = OrderCounts()
    carried: list[ImportedOrder] = []
    amounts: dict[tuple[str, Decimal], Amount] = {}  # one Amount a price, not one an order
    for order, member in carry:
        if order.order_id in new:
            amount = amounts.get((order.currency, order.amount))
            if amount is None:
                amount = amounts[order.currency, order.amount] = Amount(
                    order.currency, order.amount
                )
            carried.append(ImportedOrder(member, order.order_id, amount, order.occurred_at))
        else:
            report.append(
                OrderRow(
                    order.number, OrderOutcome.DUPLICATE, member, "DUPLICATE", DUPLICATE_BEFORE
                )
            )
    counts.imported = len(carried)
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

    await operations.chunk_done(work.order_imports, job, counts, rows, bytes_read, now, last=last)
    return counts
