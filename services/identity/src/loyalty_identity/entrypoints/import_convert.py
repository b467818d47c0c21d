"""Member imports: protobuf <-> domain. Nothing personal goes out: the report's details and
the candidates' evidence are masked where they are made."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from loyalty.identity.v1 import member_import_pb2 as pb
from loyalty_kit.errors import FieldViolation, InvalidArgument
from loyalty_kit.status import error_domain
from loyalty_kit.timestamps import timestamp

from loyalty_identity.domain.import_operation import Failure, ImportOperation, ImportState
from loyalty_identity.domain.imports import (
    AutoMerge,
    ColumnMapping,
    ConsentColumns,
    ImportFormat,
    ImportSpec,
    RowOutcome,
)
from loyalty_identity.domain.member_import import (
    CANDIDATES,
    IMPORTS,
    CandidateState,
    MemberImport,
    MergeCandidate,
    ReportRow,
    candidate_name,
    import_name,
)

SERVICE = "identity"
_FORMATS = {
    pb.IMPORT_FORMAT_UNSPECIFIED: ImportFormat.CSV,
    pb.IMPORT_FORMAT_CSV: ImportFormat.CSV,
    pb.IMPORT_FORMAT_JSON_LINES: ImportFormat.JSON_LINES,
}
_AUTO_MERGE = {
    pb.AUTO_MERGE_RULE_UNSPECIFIED: AutoMerge.NONE,
    pb.AUTO_MERGE_RULE_PHONE_AND_NAME: AutoMerge.PHONE_AND_NAME,
}
_STATES = {
    ImportState.RUNNING: pb.MemberImport.STATE_RUNNING,
    ImportState.SUCCEEDED: pb.MemberImport.STATE_SUCCEEDED,
    ImportState.FAILED: pb.MemberImport.STATE_FAILED,
    ImportState.CANCELLED: pb.MemberImport.STATE_CANCELLED,
}
_OUTCOMES = {
    RowOutcome.CREATED: pb.IMPORT_ROW_OUTCOME_CREATED,
    RowOutcome.LINKED: pb.IMPORT_ROW_OUTCOME_LINKED,
    RowOutcome.UNCHANGED: pb.IMPORT_ROW_OUTCOME_UNCHANGED,
    RowOutcome.MERGE_CANDIDATE: pb.IMPORT_ROW_OUTCOME_MERGE_CANDIDATE,
    RowOutcome.MERGED: pb.IMPORT_ROW_OUTCOME_MERGED,
    RowOutcome.REJECTED: pb.IMPORT_ROW_OUTCOME_REJECTED,
}
_CANDIDATE_STATES = {
    CandidateState.OPEN: pb.MergeCandidate.STATE_OPEN,
    CandidateState.RESOLVED: pb.MergeCandidate.STATE_RESOLVED,
    CandidateState.DISMISSED: pb.MergeCandidate.STATE_DISMISSED,
}
# As the spec may name them; GBK and GB2312 files are read as GB18030, which extends both.
_ENCODINGS = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "gb18030": "gb18030",
    "gbk": "gb18030",
    "gb2312": "gb18030",
}


# --- requests -----------------------------------------------------------------------------------
T = TypeVar("T")


def _chosen(table: Mapping[Any, T], value: int, field: str) -> T:
    if value not in table:
        raise InvalidArgument.of([FieldViolation(field, "not one of the contract's values")])
    return table[value]


def spec_from(message: pb.MemberImportSpec) -> ImportSpec:
    given = message.mapping
    mapping = ColumnMapping(
        legacy_number=given.legacy_number,
        phone=given.phone,
        email=given.email,
        wechat_unionid=given.wechat_unionid,
        wechat_openid=given.wechat_openid,
        card_number=given.card_number,
        name=given.name,
        gender=given.gender,
        birthday=given.birthday,
        region=given.region,
        tags=given.tags,
        points_balance=given.points_balance,
        points_expire_at=given.points_expire_at,
        tier=given.tier,
        joined_at=given.joined_at,
        consents=tuple(
            ConsentColumns(c.purpose.strip(), c.granted, c.changed_at) for c in given.consents
        ),
        tag_separator=given.tag_separator or ";",
    )
    encoding = message.encoding.strip().lower().replace("_", "-") or "utf-8"
    return ImportSpec(
        unit=message.unit.strip(),
        mapping=mapping,
        format=_chosen(_FORMATS, message.format, "spec.format"),
        encoding=_ENCODINGS.get(encoding, encoding),
        default_region=message.default_region.strip().upper() or "CN",
        tier_mapping=dict(message.tier_mapping),
        tier_grant_ends_at=_time(message),
        auto_merge=_chosen(_AUTO_MERGE, message.auto_merge, "spec.auto_merge"),
        keep_file=message.keep_file,
        file_name=message.file_name.strip(),
        max_rejected_percent=message.max_rejected_percent,
    )


def _time(message: pb.MemberImportSpec) -> datetime | None:
    if not message.HasField("tier_grant_ends_at"):
        return None
    return message.tier_grant_ends_at.ToDatetime(tzinfo=UTC)


def id_of(name: str, prefix: str, field: str) -> str:
    """The id of a resource name ("memberImports/{id}"), or INVALID_ARGUMENT naming `field`."""
    text = name.strip().removeprefix(prefix)
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise InvalidArgument.of(
            [FieldViolation(field, f"a name such as {prefix}{{id}}")]
        ) from None


def import_id_of(name: str, field: str = "name") -> str:
    return id_of(name, IMPORTS, field)


def candidate_id_of(name: str, field: str = "name") -> str:
    return id_of(name, CANDIDATES, field)


def member_id_of(text: str, field: str) -> str:
    return id_of(text, "members/", field)


def outcome_from(value: int) -> RowOutcome | None:
    if value == pb.IMPORT_ROW_OUTCOME_UNSPECIFIED:
        return None
    found = next((o for o, v in _OUTCOMES.items() if v == value), None)
    if found is None:
        raise InvalidArgument.of([FieldViolation("outcome", "not one of the contract's values")])
    return found


def candidate_state_from(value: int) -> CandidateState | None:
    if value == pb.MergeCandidate.STATE_UNSPECIFIED:
        return None
    found = next((s for s, v in _CANDIDATE_STATES.items() if v == value), None)
    if found is None:
        raise InvalidArgument.of([FieldViolation("state", "not one of the contract's values")])
    return found


# --- responses ----------------------------------------------------------------------------------
def spec_message(spec: ImportSpec) -> pb.MemberImportSpec:
    mapping = spec.mapping
    message = pb.MemberImportSpec(
        unit=spec.unit,
        format=next(v for v, f in _FORMATS.items() if f is spec.format and v),
        encoding=spec.encoding,
        default_region=spec.default_region,
        tier_mapping=spec.tier_mapping,
        auto_merge=next(v for v, a in _AUTO_MERGE.items() if a is spec.auto_merge),
        keep_file=spec.keep_file,
        file_name=spec.file_name,
        max_rejected_percent=spec.max_rejected_percent,
        mapping=pb.ColumnMapping(
            **{
                name: getattr(mapping, name)
                for name in ColumnMapping.__dataclass_fields__
                if name != "consents"
            },
            consents=[
                pb.ConsentColumns(purpose=c.purpose, granted=c.granted, changed_at=c.changed_at)
                for c in mapping.consents
            ],
        ),
    )
    if spec.tier_grant_ends_at is not None:
        message.tier_grant_ends_at.CopyFrom(timestamp(spec.tier_grant_ends_at))
    return message


def failure_status(failure: Failure) -> status_pb2.Status:
    """Why an import failed, as a google.rpc.Status: the file's fault is INVALID_ARGUMENT, an
    unexpected error INTERNAL (with the reference of its log line)."""
    code = code_pb2.INTERNAL if failure.reason == "IMPORT_ERROR" else code_pb2.INVALID_ARGUMENT
    info = error_details_pb2.ErrorInfo(
        reason=failure.reason, domain=error_domain(SERVICE), metadata=failure.metadata
    )
    packed = any_pb2.Any()
    packed.Pack(info)
    return status_pb2.Status(code=code, message=failure.message, details=[packed])


def operation_fields(job: ImportOperation[Any, Any], now: datetime) -> dict[str, Any]:
    """An import's message fields that every kind has: its name, state, times and file, and
    its progress's (as keyword arguments, the progress's under "progress")."""
    progress = job.progress(now)
    fields: dict[str, Any] = {
        "name": job.name,
        "state": _STATES[job.state],
        "create_time": timestamp(job.created_at),
        "update_time": timestamp(job.updated_at),
        "file_bytes": job.file_bytes,
        "file_sha256": job.file_sha256,
        "file_kept": job.file_kept,
        "created_by": job.created_by,
        "progress": {
            "bytes_read": job.bytes_read,
            "rows_read": job.counts.rows_read,
            "rejected": job.counts.rejected,
            "percent": progress.percent,
            "rows_per_second": progress.rows_per_second,
            "eta_seconds": progress.eta_seconds,
        },
    }
    if job.failure is not None:
        fields["error"] = failure_status(job.failure)
    if job.ended_at is not None:
        fields["end_time"] = timestamp(job.ended_at)
    return fields


def import_message(job: MemberImport, now: datetime) -> pb.MemberImport:
    fields = operation_fields(job, now)
    counts = job.counts
    progress = pb.MemberImportProgress(
        **fields.pop("progress"),
        created=counts.created,
        linked=counts.linked,
        unchanged=counts.unchanged,
        candidates=counts.candidates,
        merged=counts.merged,
        legacy_points=counts.legacy_points,
    )
    return pb.MemberImport(**fields, spec=spec_message(job.spec), progress=progress)


def row_message(row: ReportRow) -> pb.MemberImportRow:
    return pb.MemberImportRow(
        row_number=row.row_number,
        outcome=_OUTCOMES[row.outcome],
        member_id=row.member_id,
        reason=row.reason,
        detail=row.detail,
        merge_candidate=candidate_name(row.merge_candidate_id) if row.merge_candidate_id else "",
    )


def candidate_message(candidate: MergeCandidate) -> pb.MergeCandidate:
    message = pb.MergeCandidate(
        name=candidate_name(candidate.candidate_id),
        member_import=import_name(candidate.import_id),
        row_number=candidate.row_number,
        unit=candidate.unit,
        evidence=[
            pb.MergeEvidence(
                member_id=e.member_id, identity_type=e.identity_type, masked_value=e.masked_value
            )
            for e in candidate.evidence
        ],
        state=_CANDIDATE_STATES[candidate.state],
        create_time=timestamp(candidate.created_at),
        survivor_member_id=candidate.survivor,
    )
    if candidate.resolved_at is not None:
        message.resolve_time.CopyFrom(timestamp(candidate.resolved_at))
    return message
