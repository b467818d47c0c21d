"""The audit log exported whole, for admins: `GET /v1/auditEntries:export?format=csv|jsonl`,
with ListAuditEntries' filters as query parameters (`target`, `operator_id`, `method`,
`start_time`, `end_time` in RFC 3339). Rows stream newest first, read a chunk at a time."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator

from google.protobuf import json_format
from loyalty.gateway.v1 import gateway_service_pb2 as pb
from loyalty_kit.access import authorise
from loyalty_kit.auth import TokenVerifier, caller_of_claims
from loyalty_kit.caller import set_current_caller
from loyalty_kit.errors import FieldViolation, InvalidArgument
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from loyalty_gateway.adapters.audit_log import AuditFilter, AuditLog, AuditRow
from loyalty_gateway.entrypoints.access import ACCESS
from loyalty_gateway.flows.audit import filter_of
from loyalty_gateway.http.contracts import RateLimits, bearer
from loyalty_gateway.http.exchange import Exchange
from loyalty_gateway.http.metrics import note_route

PATH = "/v1/auditEntries:export"
FIELDS = (
    "entry_id",
    "at",
    "service",
    "method",
    "outcome",
    "unit",
    "client_id",
    "operator_id",
    "reason",
    "request_id",
    "target",
    "before",
    "after",
    "request",
)
FILTERS = ("target", "operator_id", "method", "start_time", "end_time")
FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/jsonl; charset=utf-8"}


def chosen_filter(request: Request) -> tuple[str, AuditFilter]:
    query = request.query_params
    unknown = sorted(set(query) - {*FILTERS, "format"})
    if unknown:
        raise InvalidArgument.of([FieldViolation(unknown[0], "not a filter of this export")])
    kind = query.get("format", "csv")
    if kind not in FORMATS:
        raise InvalidArgument.of([FieldViolation("format", "csv or jsonl")])
    message = pb.ListAuditEntriesRequest()
    try:
        json_format.ParseDict({k: query[k] for k in FILTERS if query.get(k)}, message)
    except json_format.ParseError as error:
        raise InvalidArgument.of([FieldViolation("query", str(error)[:200])]) from None
    return kind, filter_of(message)


def csv_line(values: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(values)
    return out.getvalue()


def csv_row(row: AuditRow) -> str:
    data = row.as_json()
    return csv_line(
        [
            json.dumps(data[f], sort_keys=True, ensure_ascii=False)
            if isinstance(data[f], dict)
            else ("" if data[f] is None else str(data[f]))
            for f in FIELDS
        ]
    )


async def lines(log: AuditLog, chosen: AuditFilter, kind: str) -> AsyncIterator[str]:
    if kind == "csv":
        yield csv_line(list(FIELDS))
    async for row in log.every(chosen):
        if kind == "csv":
            yield csv_row(row)
        else:
            yield json.dumps(row.as_json(), sort_keys=True, ensure_ascii=False) + "\n"


class AuditExport:
    def __init__(self, log: AuditLog, verifier: TokenVerifier, limits: RateLimits) -> None:
        self.log = log
        self.verifier = verifier
        self.limits = limits

    async def answer(self, request: Request) -> Response:
        exchange = Exchange(request)
        note_route(request, PATH)
        try:
            _token, claims = bearer(request, self.verifier)
            exchange.called_by(str(claims["sub"]))
            set_current_caller(caller_of_claims(claims))
            await self.limits.hit(claims)
            authorise(ACCESS, "ListAuditEntries", None)
            kind, chosen = chosen_filter(request)
        except Exception as error:
            return exchange.failed(error, PATH)
        name = f"audit-log.{kind}"
        return exchange.finish(
            StreamingResponse(
                lines(self.log, chosen, kind),
                media_type=FORMATS[kind],
                headers={"Content-Disposition": f'attachment; filename="{name}"'},
            )
        )
