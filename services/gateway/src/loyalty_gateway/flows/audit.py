"""The audit log as the gateway's `ListAuditEntries` answers it: filters by target, operator,
method and time, newest first, paged (AIP-158: a token tied to the filters)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from loyalty.gateway.v1 import gateway_service_pb2 as pb
from loyalty_kit.errors import FieldViolation, InvalidArgument
from loyalty_kit.pagination import next_token, read_page
from loyalty_kit.timestamps import moment_of, timestamp

from loyalty_gateway.adapters.audit_log import AuditFilter, AuditLog, AuditRow
from loyalty_gateway.adapters.services import Metadata
from loyalty_gateway.flows.service import method

DEFAULT_PAGE = 50
MAX_PAGE = 500


def filter_of(request: pb.ListAuditEntriesRequest) -> AuditFilter:
    chosen = AuditFilter(
        target=request.target.strip().removeprefix("members/"),
        operator_id=request.operator_id.strip(),
        method=request.method.strip(),
        start=moment_of(request, "start_time"),
        end=moment_of(request, "end_time"),
    )
    if chosen.start and chosen.end and chosen.end <= chosen.start:
        raise InvalidArgument.of([FieldViolation("end_time", "must be after start_time")])
    return chosen


def position_of(after: Any) -> tuple[datetime, str] | None:
    """The position a page token carried: (at, entry id); anything else is refused."""
    if after is None:
        return None
    try:
        at, entry_id = after
        uuid.UUID(str(entry_id))
        return datetime.fromisoformat(str(at)), str(entry_id)
    except (TypeError, ValueError):
        raise InvalidArgument.of(
            [FieldViolation("page_token", "not a token this list gave")]
        ) from None


def entry_message(row: AuditRow) -> pb.AuditEntry:
    return pb.AuditEntry(
        entry_id=row.entry_id,
        at=timestamp(row.at),
        service=row.service,
        method=row.method,
        outcome=row.outcome,
        unit=row.unit,
        client_id=row.client_id,
        operator_id=row.operator_id,
        reason=row.reason,
        request_id=row.request_id,
        target=row.target,
        before_json=row.before,
        after_json=row.after,
        request_json=row.request,
    )


@dataclass(frozen=True)
class AuditEntries:
    METHOD = method("ListAuditEntries")

    log: AuditLog

    async def __call__(
        self, request: pb.ListAuditEntriesRequest, _metadata: Metadata
    ) -> pb.ListAuditEntriesResponse:
        chosen = filter_of(request)
        key = chosen.key()
        page = read_page(
            request.page_size, request.page_token, key, default=DEFAULT_PAGE, maximum=MAX_PAGE
        )
        rows, more = await self.log.page(chosen, page.size, position_of(page.after))
        token = ""
        if more and rows:
            token = next_token([rows[-1].at.isoformat(), rows[-1].entry_id], key)
        return pb.ListAuditEntriesResponse(
            entries=[entry_message(r) for r in rows], next_page_token=token
        )
