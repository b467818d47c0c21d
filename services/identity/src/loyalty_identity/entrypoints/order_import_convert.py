"""Order imports: protobuf <-> domain (the formats, encodings, states and failures as the
member imports' converter reads and writes them)."""

from __future__ import annotations

from datetime import datetime

from loyalty.identity.v1 import order_import_pb2 as pb
from loyalty_kit.errors import FieldViolation, InvalidArgument

from loyalty_identity.domain.order_import import (
    DEFAULT_CURRENCY,
    ORDER_IMPORTS,
    OrderColumnMapping,
    OrderImport,
    OrderImportMode,
    OrderImportSpec,
    OrderOutcome,
    OrderRow,
)
from loyalty_identity.entrypoints import import_convert
from loyalty_identity.entrypoints.import_convert import (
    _ENCODINGS,
    _FORMATS,
    _chosen,
    operation_fields,
)

_MODES = {
    pb.ORDER_IMPORT_MODE_UNSPECIFIED: OrderImportMode.ACTIVITY_ONLY,
    pb.ORDER_IMPORT_MODE_ACTIVITY_ONLY: OrderImportMode.ACTIVITY_ONLY,
    pb.ORDER_IMPORT_MODE_REPLAY: OrderImportMode.REPLAY,
}
_OUTCOMES = {
    OrderOutcome.IMPORTED: pb.ORDER_ROW_OUTCOME_IMPORTED,
    OrderOutcome.UNKNOWN_MEMBER: pb.ORDER_ROW_OUTCOME_UNKNOWN_MEMBER,
    OrderOutcome.DUPLICATE: pb.ORDER_ROW_OUTCOME_DUPLICATE,
    OrderOutcome.REJECTED: pb.ORDER_ROW_OUTCOME_REJECTED,
}


def spec_from(message: pb.OrderImportSpec) -> OrderImportSpec:
    given = message.mapping
    encoding = message.encoding.strip().lower().replace("_", "-") or "utf-8"
    return OrderImportSpec(
        unit=message.unit.strip(),
        mapping=OrderColumnMapping(
            order_id=given.order_id,
            amount=given.amount,
            occurred_at=given.occurred_at,
            legacy_number=given.legacy_number,
            phone=given.phone,
            currency=given.currency,
        ),
        format=_chosen(_FORMATS, message.format, "spec.format"),
        encoding=_ENCODINGS.get(encoding, encoding),
        mode=_chosen(_MODES, message.mode, "spec.mode"),
        currency=message.currency.strip().upper() or DEFAULT_CURRENCY,
        default_region=message.default_region.strip().upper() or "CN",
        keep_file=message.keep_file,
        file_name=message.file_name.strip(),
        max_rejected_percent=message.max_rejected_percent,
    )


def import_id_of(name: str, field: str = "name") -> str:
    return import_convert.id_of(name, ORDER_IMPORTS, field)


def outcome_from(value: int) -> OrderOutcome | None:
    if value == pb.ORDER_ROW_OUTCOME_UNSPECIFIED:
        return None
    found = next((o for o, v in _OUTCOMES.items() if v == value), None)
    if found is None:
        raise InvalidArgument.of([FieldViolation("outcome", "not one of the contract's values")])
    return found


def spec_message(spec: OrderImportSpec) -> pb.OrderImportSpec:
    return pb.OrderImportSpec(
        unit=spec.unit,
        format=next(v for v, f in _FORMATS.items() if f is spec.format and v),
        encoding=spec.encoding,
        mapping=pb.OrderColumnMapping(**spec.mapping.named()),
        mode=next(v for v, m in _MODES.items() if m is spec.mode and v),
        currency=spec.currency,
        default_region=spec.default_region,
        keep_file=spec.keep_file,
        file_name=spec.file_name,
        max_rejected_percent=spec.max_rejected_percent,
    )


def import_message(job: OrderImport, now: datetime) -> pb.OrderImport:
    fields = operation_fields(job, now)
    counts = job.counts
    progress = pb.OrderImportProgress(
        **fields.pop("progress"),
        imported=counts.imported,
        unknown_member=counts.unknown_member,
        duplicates=counts.duplicates,
    )
    return pb.OrderImport(**fields, spec=spec_message(job.spec), progress=progress)


def row_message(row: OrderRow) -> pb.OrderImportRow:
    return pb.OrderImportRow(
        row_number=row.row_number,
        outcome=_OUTCOMES[row.outcome],
        member_id=row.member_id,
        reason=row.reason,
        detail=row.detail,
    )
