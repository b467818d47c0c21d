"""An import of a unit's past orders as a long-running operation (pure: no I/O).

The orders of members brought in by a member import: each row names its member by the unit's
legacy number (the `legacy:<unit>` identity) or by phone, and carries the order's ID, amount
and time. A row comes to one of four outcomes: IMPORTED (its member found, its order new),
UNKNOWN_MEMBER (no live member holds the legacy number or phone: import the members first),
DUPLICATE (the same unit and order ID was carried over before, by this import or an earlier
one) or REJECTED (the row cannot be read; a reason each). The imported orders go out on
`LegacyOrdersImported`, one event per chunk: tiers (and analytics) count them as activity.

An order import runs as a member import does (states, chunks, checkpoint, lease, cancel, the
mostly-bad stop; `member_import.py`), over its own counters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from loyalty_kit.errors import FailedPrecondition, InvalidArgument, NotFound, Violations
from loyalty_kit.kernel.money import Amount

from loyalty_identity.domain.identities import ChannelIdentity, is_phone_region
from loyalty_identity.domain.import_spec import (
    DEFAULT_MAX_REJECTED_PERCENT,
    ENCODINGS,
    MAX_COLUMN_LENGTH,
    MAX_FILE_NAME_LENGTH,
)
from loyalty_identity.domain.imports import ImportFormat
from loyalty_identity.domain.member import validate_unit
from loyalty_identity.domain.member_import import (
    FIRST_CHUNK_ROWS,
    Failure,
    ImportState,
    Progress,
)

ORDER_IMPORTS = "orderImports/"
ORDER_ID = re.compile(r"[0-9A-Za-z_.:-]{1,64}")
DEFAULT_CURRENCY = "CNY"


def order_import_name(import_id: str) -> str:
    return f"{ORDER_IMPORTS}{import_id}"


class OrderImportMode(StrEnum):
    """What the orders count for (the contract's OrderImportMode)."""

    ACTIVITY_ONLY = "activity_only"  # qualifying activity, no points (the default)
    REPLAY = "replay"  # offline receipts under the points rules then in force


class OrderOutcome(StrEnum):
    IMPORTED = "imported"
    UNKNOWN_MEMBER = "unknown_member"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


@dataclass(frozen=True)
class OrderColumnMapping:
    """Which column (CSV header, or JSON key) holds what; "" = not in the file."""

    order_id: str
    amount: str
    occurred_at: str
    legacy_number: str = ""
    phone: str = ""
    currency: str = ""

    def named(self) -> dict[str, str]:
        return {
            "legacy_number": self.legacy_number,
            "phone": self.phone,
            "order_id": self.order_id,
            "amount": self.amount,
            "currency": self.currency,
            "occurred_at": self.occurred_at,
        }


@dataclass(frozen=True)
class OrderImportSpec:
    unit: str
    mapping: OrderColumnMapping
    format: ImportFormat = ImportFormat.CSV
    encoding: str = "utf-8"  # or "gb18030" (CSV only)
    mode: OrderImportMode = OrderImportMode.ACTIVITY_ONLY
    currency: str = DEFAULT_CURRENCY  # of amounts when no column says
    default_region: str = "CN"
    keep_file: bool = False
    file_name: str = ""
    max_rejected_percent: int = DEFAULT_MAX_REJECTED_PERCENT


def validate_order_spec(spec: OrderImportSpec, known_currency: bool) -> None:
    """Every problem of a spec at once, as field violations named as in the request
    (`known_currency`: the spec's currency is an ISO 4217 code, judged by the caller)."""
    problems = Violations()
    try:
        validate_unit(spec.unit, "spec.unit")
    except InvalidArgument as error:
        problems.items.extend(error.field_violations)
    mapping = spec.mapping
    if not mapping.legacy_number and not mapping.phone:
        problems.add("spec.mapping.legacy_number", "required: a legacy number or a phone column")
    for name in ("order_id", "amount", "occurred_at"):
        if not getattr(mapping, name):
            problems.add(f"spec.mapping.{name}", "required: the column that holds it")
    for name, column in mapping.named().items():
        if len(column) > MAX_COLUMN_LENGTH:
            problems.add(f"spec.mapping.{name}", f"at most {MAX_COLUMN_LENGTH} characters")
    if spec.encoding not in ENCODINGS:
        problems.add("spec.encoding", "utf-8 or gb18030")
    elif spec.encoding == "gb18030" and spec.format is not ImportFormat.CSV:
        problems.add("spec.encoding", "gb18030 is for CSV files; JSON Lines are UTF-8")
    if not known_currency:
        problems.add("spec.currency", "an ISO 4217 code such as CNY")
    if not is_phone_region(spec.default_region):
        problems.add("spec.default_region", "a region code such as CN or HK")
    if not 0 <= spec.max_rejected_percent <= 100:
        problems.add("spec.max_rejected_percent", "0 to 100 (0: 50)")
    name = spec.file_name
    if len(name) > MAX_FILE_NAME_LENGTH or "/" in name or "\\" in name:
        problems.add("spec.file_name", f"a file name without a path, {MAX_FILE_NAME_LENGTH} max")
    problems.raise_if_any()


@dataclass(frozen=True)
class ParsedOrder:
    """An order row read and valid: who (the legacy number first when the row has one, then
    the phone), which order, how much, when."""

    number: int
    identities: tuple[ChannelIdentity, ...]
    order_id: str
    amount: Decimal
    currency: str
    occurred_at: datetime


@dataclass(frozen=True)
class OrderRow:
    """One row of an order import's report (only rows not carried over are kept)."""

    row_number: int
    outcome: OrderOutcome
    member_id: str = ""
    reason: str = ""
    detail: str = ""


@dataclass(frozen=True)
class ImportedOrder:
    """An order carried over, as LegacyOrdersImported carries it (no personal data)."""

    member_id: str
    order_id: str
    amount: Amount
    occurred_at: datetime


@dataclass
class OrderCounts:
    imported: int = 0
    unknown_member: int = 0
    duplicates: int = 0
    rejected: int = 0

    @property
    def rows_read(self) -> int:
        return self.imported + self.unknown_member + self.duplicates + self.rejected

    def count(self, outcome: OrderOutcome) -> None:
        name = _COUNTED[outcome]
        setattr(self, name, getattr(self, name) + 1)

    def plus(self, other: OrderCounts) -> OrderCounts:
        return OrderCounts(*(getattr(self, n) + getattr(other, n) for n in COUNTERS))


COUNTERS = ("imported", "unknown_member", "duplicates", "rejected")
_COUNTED = {
    OrderOutcome.IMPORTED: "imported",
    OrderOutcome.UNKNOWN_MEMBER: "unknown_member",
    OrderOutcome.DUPLICATE: "duplicates",
    OrderOutcome.REJECTED: "rejected",
}


@dataclass
class OrderImport:
    """The operation (as `member_import.MemberImport`, with an order import's counters)."""

    import_id: str
    spec: OrderImportSpec
    created_by: str
    request_id: str
    created_at: datetime
    updated_at: datetime
    fingerprint: str = ""
    file_bytes: int = 0
    file_sha256: str = ""
    file_kept: bool = True
    state: ImportState = ImportState.RUNNING
    counts: OrderCounts = field(default_factory=OrderCounts)
    checkpoint: int = 0
    bytes_read: int = 0
    failure: Failure | None = None
    cancel_requested: bool = False
    started_at: datetime | None = None
    ended_at: datetime | None = None
    lease_owner: str = ""
    leased_until: datetime | None = None

    @property
    def name(self) -> str:
        return order_import_name(self.import_id)

    @property
    def unit(self) -> str:
        return self.spec.unit

    @property
    def running(self) -> bool:
        return self.state is ImportState.RUNNING

    def progress(self, now: datetime) -> Progress:
        """Percent of the file read, rows a second over its running time, seconds left."""
        if self.state is ImportState.SUCCEEDED:
            percent = 100.0
        elif self.file_bytes:
            percent = min(100.0, round(self.bytes_read * 100 / self.file_bytes, 2))
        else:
            percent = 0.0
        seconds = (
            ((self.ended_at or now) - self.started_at).total_seconds() if self.started_at else 0
        )
        rate = self.counts.rows_read / seconds if seconds > 0 else 0.0
        eta = 0
        if self.running and seconds > 0 and self.bytes_read > 0:
            eta = max(0, round((self.file_bytes - self.bytes_read) * seconds / self.bytes_read))
        return Progress(percent, round(rate, 1), eta)

    def first_chunk_rows(self, chunk_rows: int) -> int:
        """The first chunk takes at most 1,000 rows: a mostly bad file is judged on them."""
        return min(chunk_rows, FIRST_CHUNK_ROWS) if self.counts.rows_read == 0 else chunk_rows

    def mostly_rejected(self) -> Failure | None:
        total = self.counts
        limit = self.spec.max_rejected_percent or DEFAULT_MAX_REJECTED_PERCENT
        if total.rows_read == 0 or total.rejected * 100 <= limit * total.rows_read:
            return None
        return Failure(
            "MOSTLY_REJECTED",
            f"{total.rejected} of the first {total.rows_read} rows were refused (more than "
            f"{limit}%): the import stopped; the report says why each was refused",
            {
                "rows_read": str(total.rows_read),
                "rejected": str(total.rejected),
                "max_rejected_percent": str(limit),
            },
        )

    def advance(self, chunk: OrderCounts, last_row: int, bytes_read: int, now: datetime) -> None:
        self.ensure_running()
        self.counts = self.counts.plus(chunk)
        self.checkpoint = max(self.checkpoint, last_row)
        self.bytes_read = max(self.bytes_read, bytes_read)
        self.updated_at = now

    def ensure_running(self) -> None:
        if not self.running:
            raise OrderImportEnded(self.import_id, self.state)

    def succeed(self, bytes_read: int, now: datetime) -> None:
        self.ensure_running()
        self.bytes_read = max(self.bytes_read, bytes_read)
        self._end(ImportState.SUCCEEDED, now)

    def fail(self, failure: Failure, now: datetime) -> None:
        self.ensure_running()
        self.failure = failure
        self._end(ImportState.FAILED, now)

    def request_cancel(self, now: datetime, *, taken: bool) -> None:
        """At once when no replica holds it (`taken` False), else after the chunk under way."""
        if self.state is ImportState.CANCELLED:
            return
        self.ensure_running()
        self.cancel_requested = True
        self.updated_at = now
        if not taken:
            self.cancel(now)

    def cancel(self, now: datetime) -> None:
        self.ensure_running()
        self._end(ImportState.CANCELLED, now)

    def _end(self, state: ImportState, now: datetime) -> None:
        self.state = state
        self.ended_at = self.updated_at = now
        self.lease_owner, self.leased_until = "", None
        if not self.spec.keep_file:
            self.file_kept = False


# --- errors -------------------------------------------------------------------------------------
class OrderImportNotFound(NotFound):
    reason = "ORDER_IMPORT_NOT_FOUND"

    def __init__(self, import_id: str) -> None:
        super().__init__(
            f"order import {import_id} was not found", metadata={"order_import": import_id}
        )


class OrderImportEnded(FailedPrecondition):
    reason = "ORDER_IMPORT_ENDED"

    def __init__(self, import_id: str, state: ImportState) -> None:
        super().__init__(
            f"order import {import_id} has ended ({state.value})",
            metadata={"order_import": import_id, "state": state.value},
        )
