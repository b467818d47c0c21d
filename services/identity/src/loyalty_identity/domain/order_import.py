"""An import of a unit's past orders as a long-running operation (pure: no I/O).

The orders of members brought in by a member import: each row names its member by the unit's
legacy number (the `legacy:<unit>` identity) or by phone, and carries the order's ID, amount
and time. A row comes to one of four outcomes: IMPORTED (its member found, its order new),
UNKNOWN_MEMBER (no live member holds the legacy number or phone: import the members first),
DUPLICATE (the same unit and order ID was carried over before, by this import or an earlier
one) or REJECTED (the row cannot be read; a reason each). The imported orders go out on
`LegacyOrdersImported`, one event per chunk: tiers (and analytics) count them as activity.

An order import runs as a member import does (states, chunks, checkpoint, lease, cancel, the
mostly-bad stop; `import_operation.py`), over its own counters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import ClassVar

from loyalty_kit.errors import FailedPrecondition, InvalidArgument, NotFound, Violations
from loyalty_kit.kernel.money import Amount

from loyalty_identity.domain.identities import ChannelIdentity, is_phone_region
from loyalty_identity.domain.import_operation import ImportOperation, ImportState
from loyalty_identity.domain.import_spec import (
    DEFAULT_MAX_REJECTED_PERCENT,
    ENCODINGS,
    MAX_COLUMN_LENGTH,
    MAX_FILE_NAME_LENGTH,
)
from loyalty_identity.domain.imports import ImportFormat
from loyalty_identity.domain.member import validate_unit

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
    # The identities' blind indexes, in order, when a worker process made them with the row
    # (opaque here; not part of what the row is).
    indexes: tuple[bytes, ...] = field(default=(), compare=False, repr=False)


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


@dataclass
class OrderImport(ImportOperation[OrderImportSpec, OrderCounts]):
    """An order import (`import_operation.ImportOperation` over an order import's counts)."""

    collection: ClassVar[str] = ORDER_IMPORTS
    ended_error: ClassVar[type[FailedPrecondition]] = OrderImportEnded
    counts: OrderCounts = field(default_factory=OrderCounts)
