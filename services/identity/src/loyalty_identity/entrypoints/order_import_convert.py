"""Order imports: protobuf <-> domain (the formats, encodings, states and failures as the
member imports' converter reads and writes them)."""

from __future__ import annotations

from datetime import datetime

from loyalty.identity.v1 import order_import_pb2 as pb
from loyalty_kit.errors import FieldViolation, InvalidArgument
from loyalty_kit.timestamps import timestamp

from loyalty_identity.domain.order_import import (
    DEFAULT_CURRENCY,
    ORDER_IMPORTS,
    OrderColumnMapping,
    OrderImport,
    OrderImportMode,
    OrderImportSpec,
    OrderOutcome,
    OrderRow,
    order_import_name,
)
from loyalty_identity.entrypoints import import_convert
from loyalty_identity.entrypoints.import_convert import _ENCODINGS, _FORMATS, _STATES, _chosen

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
    counts, progress = job.counts, job.progress(now)
    message = pb.OrderImport(
        name=order_import_name(job.import_id),
        spec=spec_message(job.spec),
        state=_STATES[job.state],
        progress=pb.OrderImportProgress(
            bytes_read=job.bytes_read,
            rows_read=counts.rows_read,
            imported=counts.imported,
            unknown_member=counts.unknown_member,
            duplicates=counts.duplicates,
            rejected=counts.rejected,
            percent=progress.percent,
            rows_per_second=progress.rows_per_second,
            eta_seconds=progress.eta_seconds,
        ),
        create_time=timestamp(job.created_at),
        update_time=timestamp(job.updated_at),
        file_bytes=job.file_bytes,
        file_sha256=job.file_sha256,
        file_kept=job.file_kept,
        created_by=job.created_by,
    )
    if job.failure is not None:
        message.error.CopyFrom(import_convert.failure_status(job.failure))
    if job.ended_at is not None:
        message.end_time.CopyFrom(timestamp(job.ended_at))
    return message


def row_message(row: OrderRow) -> pb.OrderImportRow:
    return pb.OrderImportRow(
        row_number=row.row_number,
        outcome=_OUTCOMES[row.outcome],
        member_id=row.member_id,
        reason=row.reason,
        detail=row.detail,
    )
