"""The gateway's uploads, without a server: which methods are uploads and where, the body cut
into parts and stopped at the limit, the Content-Type read as the spec's format and encoding,
the spec header read with the contract's rules, and the OpenAPI operation."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from loyalty.identity.v1 import identity_service_pb2, member_import_pb2, order_import_pb2
from loyalty_gateway.adapters.backends import exposed_services
from loyalty_gateway.http import openapi
from loyalty_gateway.http.errors import http_code, status_of_error
from loyalty_gateway.http.transcoding import routes_of
from loyalty_gateway.http.uploads import (
    SPEC_HEADER,
    Upload,
    first_message,
    is_upload,
    parts,
    uploads_of,
)
from loyalty_gateway.settings import GatewaySettings
from loyalty_identity.settings import ImportSettings
from loyalty_kit.errors import DomainError, InvalidArgument, ResourceExhausted
from loyalty_kit.settings import MAX_IMPORT_FILE_BYTES
from starlette.requests import Request

IMPORTS = [
    *member_import_pb2.DESCRIPTOR.services_by_name.values(),
    *order_import_pb2.DESCRIPTOR.services_by_name.values(),
]
MIB = 1024 * 1024


def _request(headers: dict[str, str], query: str = "") -> Request:
    return Request(
        {
            "type": "http",
            "method": "POST",
            "path": "/v1/memberImports",
            "query_string": query.encode(),
            "headers": [(k.lower().encode(), v.encode("utf-8")) for k, v in headers.items()],
        }
    )


def _upload() -> Upload:
    (found,) = [u for u in uploads_of(IMPORTS) if u.path == "/v1/memberImports"]
    return found


def test_each_import_is_uploaded_to_its_collection() -> None:
    found = {u.path: u.method.full_name for u in uploads_of(IMPORTS)}
    assert found == {
        "/v1/memberImports": "loyalty.identity.v1.MemberImportService.CreateMemberImport",
        "/v1/orderImports": "loyalty.identity.v1.OrderImportService.CreateOrderImport",
    }
    # Beside the annotated routes of the same collection (GET lists, POST uploads).
    templates = {(r.verb, r.template.text) for r in routes_of(IMPORTS)}
    assert ("get", "/v1/memberImports") in templates
    assert ("get", "/v1/orderImports") in templates
    assert not any(
        is_upload(m)
        for m in identity_service_pb2.DESCRIPTOR.services_by_name["IdentityService"].methods
    )


def test_every_client_stream_the_gateway_exposes_is_an_upload() -> None:
    """A client-streaming method the routes cannot carry must not go unreachable by HTTP."""
    services = [s for found in exposed_services().values() for s in found]
    streams = {m.full_name for s in services for m in s.methods if m.client_streaming}
    assert streams == {u.method.full_name for u in uploads_of(services)}


async def _body(sizes: list[int], read: list[int]) -> AsyncIterator[bytes]:
    for size in sizes:
        read.append(size)
        yield b"x" * size


async def test_the_body_goes_on_in_parts_of_one_mebibyte() -> None:
    read: list[int] = []
    sent = [len(p) async for p in parts(_body([700_000] * 4, read), limit=10 * MIB)]
    assert sent == [MIB, MIB, 2_800_000 - 2 * MIB]
    assert [len(p) async for p in parts(_body([], []), limit=MIB)] == []


async def test_a_body_past_the_limit_stops_at_the_chunk_that_passes_it() -> None:
    read: list[int] = []
    with pytest.raises(ResourceExhausted) as refused:
        async for _ in parts(_body([400_000] * 100, read), limit=MIB):
            pass
    assert refused.value.reason == "BODY_TOO_LARGE"
    assert len(read) == 3  # 1.2 MB read of the 40 MB sent
    assert http_code(status_of_error(refused.value)) == 413


def _refusal(headers: dict[str, str], query: str = "") -> DomainError:
    with pytest.raises(DomainError) as refused:
        first_message(_upload(), _request(headers, query), 64)
    return refused.value


def test_the_spec_comes_from_its_header_and_the_format_from_the_body_type() -> None:
    message = first_message(
        _upload(),
        _request(
            {
                SPEC_HEADER: '{"unit": "mall", "mapping": {"legacyNumber": "卡号"}, '
                '"tier_mapping": {"\\u91d1\\u5361": "gold"}}',
                "Content-Type": "text/csv; charset=GB18030",
            },
            "requestId=r-1",
        ),
        64,
    )
    assert isinstance(message, member_import_pb2.CreateMemberImportRequest)
    assert message.request_id == "r-1"
    assert message.spec.mapping.legacy_number == "卡号"  # raw UTF-8 in the header
    assert dict(message.spec.tier_mapping) == {"金卡": "gold"}  # JSON escapes
    assert message.spec.format == member_import_pb2.IMPORT_FORMAT_CSV
    assert message.spec.encoding == "gb18030"
    lines = first_message(
        _upload(),
        _request({SPEC_HEADER: '{"unit": "hotel"}', "Content-Type": "application/x-ndjson"}),
        64,
    )
    assert lines.spec.format == member_import_pb2.IMPORT_FORMAT_JSON_LINES  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("headers", "query", "fields"),
    [
        ({"Content-Type": "text/csv"}, "", [SPEC_HEADER]),
        ({SPEC_HEADER: "{not json", "Content-Type": "text/csv"}, "", [SPEC_HEADER]),
        ({SPEC_HEADER: '["unit"]', "Content-Type": "text/csv"}, "", [SPEC_HEADER]),
        ({SPEC_HEADER: '{"unit": "mall", "colour": 1}'}, "", [SPEC_HEADER]),
        (
            {SPEC_HEADER: '{"format": "IMPORT_FORMAT_CSV"}', "Content-Type": "application/jsonl"},
            "",
            ["Content-Type"],
        ),
        (
            {SPEC_HEADER: '{"encoding": "utf-8"}', "Content-Type": "text/csv; charset=gb18030"},
            "",
            ["Content-Type"],
        ),
        ({SPEC_HEADER: '{"unit": "mall"}'}, "unit=mall", ["unit"]),
    ],
    ids=["no spec", "not JSON", "not an object", "unknown field", "format", "charset", "query"],
)
def test_a_malformed_spec_is_invalid_argument_naming_what(
    headers: dict[str, str], query: str, fields: list[str]
) -> None:
    refused = _refusal(headers, query)
    assert isinstance(refused, InvalidArgument)
    assert [v.field for v in refused.field_violations] == fields
    assert http_code(status_of_error(refused)) == 400


def test_a_body_that_is_no_import_file_is_415() -> None:
    refused = _refusal({SPEC_HEADER: '{"unit": "mall"}', "Content-Type": "application/pdf"})
    assert refused.reason == "UNSUPPORTED_MEDIA_TYPE"
    assert http_code(status_of_error(refused)) == 415


def test_the_upload_is_in_the_openapi_document() -> None:
    document = openapi.document(routes_of(IMPORTS), uploads_of(IMPORTS))
    upload = document["paths"]["/v1/memberImports"]["post"]
    assert document["paths"]["/v1/memberImports"]["get"]["operationId"] == (
        "MemberImportService_ListMemberImports"
    )
    assert upload["operationId"] == "MemberImportService_CreateMemberImport"
    header, request_id = upload["parameters"]
    assert (header["name"], header["in"], header["required"]) == (SPEC_HEADER, "header", True)
    spec = header["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
    assert spec == "loyalty.identity.v1.MemberImportSpec"
    assert "tierMapping" in document["components"]["schemas"][spec]["properties"]
    assert (request_id["name"], request_id["in"]) == ("requestId", "query")
    assert set(upload["requestBody"]["content"]) >= {"text/csv", "application/x-ndjson"}
    assert set(upload["responses"]) == {"201", "413", "415", "default"}
    assert "X-Import-Spec" in upload["description"]


def test_the_gateway_lets_through_the_largest_file_identity_takes() -> None:
    """One default for both: a file identity would import is never refused at the gateway."""
    gateway, identity = GatewaySettings(), ImportSettings()
    assert gateway.max_upload_bytes == identity.max_file_bytes == MAX_IMPORT_FILE_BYTES
    assert MAX_IMPORT_FILE_BYTES == 2 * 1024**3
