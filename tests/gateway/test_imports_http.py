"""Member imports over HTTP: a unit's API client uploads its legacy file to `POST
/v1/memberImports` (the spec in `X-Import-Spec`, the file as the streamed body) and reads the
import, its report and its candidates from the annotated routes; another unit, a client
without the scope and a caller without a token are refused; a malformed spec is 400 naming the
fields; an upload past the gateway's limit is 413 and leaves nothing behind.

The identity service is the session's, shared with other tests that import generated files
too, so the assertions hold whatever members are there already (every row read, none
rejected), not exact counts (tests/admin/test_imports.py has those, on a suite of its own)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from loyalty_devstack import legacy_files
from loyalty_kit.server import RunningService

from tests.gateway.conftest import Gateway
from tests.gateway.test_http import error_of, fields_of, reason_of

pytestmark = pytest.mark.asyncio(loop_scope="session")

IMPORT = "members:import"


def mall_file(rows: int = 120, seed: int = 4242) -> tuple[bytes, int]:
    """The mall's GB18030 CSV of generated accounts, and its rows."""
    truth = legacy_files.accounts(rows, overlap=0.3, seed=seed)
    return b"".join(legacy_files.lines(truth, "mall")), truth.rows("mall")


def spec_header(**over: Any) -> str:
    """The mall's spec as JSON, non-ASCII escaped (a header is ASCII)."""
    spec: dict[str, Any] = {
        "unit": "mall",
        "encoding": "gb18030",
        "mapping": legacy_files.MAPPINGS["mall"],
        "tier_mapping": legacy_files.TIER_MAPPINGS["mall"],
        "fileName": f"mall-{uuid.uuid4().hex[:8]}.csv",
    }
    spec.update(over)
    return json.dumps(spec)


async def streamed(data: bytes, piece: int = 16 * 1024) -> AsyncIterator[bytes]:
    """The body without a declared length (chunked), as a large upload is sent."""
    for start in range(0, len(data), piece):
        yield data[start : start + piece]


async def upload(
    http: httpx.AsyncClient,
    data: bytes | AsyncIterator[bytes],
    spec: str | bytes,
    *,
    request_id: str = "",
    content_type: str = "text/csv; charset=gb18030",
    collection: str = "memberImports",
) -> httpx.Response:
    return await http.post(
        f"/v1/{collection}",
        params={"requestId": request_id or uuid.uuid4().hex},
        headers=[
            (b"X-Import-Spec", spec if isinstance(spec, bytes) else spec.encode()),
            (b"Content-Type", content_type.encode()),
        ],
        content=data,
    )


async def until_ended(http: httpx.AsyncClient, name: str) -> dict[str, Any]:
    """The import (a member or an order import) once it has ended."""
    field = "memberImport" if name.startswith("memberImports/") else "orderImport"
    for _ in range(600):
        found = await http.get(f"/v1/{name}")
        assert found.status_code == 200, found.text
        ended: dict[str, Any] = found.json()[field]
        if ended["state"] != "STATE_RUNNING":
            return ended
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} did not end")


async def test_a_unit_uploads_its_members_and_reads_the_import_over_http(
    gateway: Gateway,
) -> None:
    data, rows = mall_file()
    request_id, spec = uuid.uuid4().hex, spec_header()
    async with await gateway.session("mall", IMPORT) as http:
        created = await upload(http, streamed(data), spec, request_id=request_id)
        assert created.status_code == 201, created.text
        member_import = created.json()["memberImport"]
        name = member_import["name"]
        assert name.startswith("memberImports/")
        assert member_import["fileBytes"] == str(len(data))
        assert member_import["fileSha256"] == hashlib.sha256(data).hexdigest()
        assert member_import["spec"]["format"] == "IMPORT_FORMAT_CSV"  # from the Content-Type
        assert member_import["spec"]["mapping"]["legacyNumber"] == "卡号"

        ended = await until_ended(http, name)
        assert ended["state"] == "STATE_SUCCEEDED", ended
        progress = ended["progress"]
        assert progress["rowsRead"] == str(rows) and progress["rejected"] == "0"
        outcomes = ("created", "linked", "unchanged", "candidates", "merged", "rejected")
        assert sum(int(progress[o]) for o in outcomes) == rows
        assert progress["percent"] == 100

        assert rows > 10
        page = await http.get(f"/v1/{name}/rows", params={"pageSize": 10})
        assert page.status_code == 200, page.text
        assert [r["rowNumber"] for r in page.json()["rows"]] == [str(n) for n in range(1, 11)]
        assert page.json()["nextPageToken"]
        # no phone in the report (a mainland mobile's 11 digits; "139" alone may be in an id)
        assert not re.search(r"(?<!\d)1[3-9]\d{9}(?!\d)", json.dumps(page.json()["rows"]))

        listed = await http.get("/v1/memberImports", params={"unit": "mall"})
        assert listed.status_code == 200, listed.text
        assert name in [i["name"] for i in listed.json()["memberImports"]]
        candidates = await http.get("/v1/mergeCandidates", params={"memberImport": name})
        assert candidates.status_code == 200, candidates.text

        # The same request again: the first import, nothing stored again; the same request id
        # for another spec is refused.
        again = await upload(http, data, spec, request_id=request_id)
        assert again.status_code == 201, again.text
        assert again.json()["memberImport"]["name"] == name
        other = await upload(http, data, spec_header(), request_id=request_id)
        assert other.status_code == 400 and reason_of(other) == "REQUEST_ID_REUSED"


async def test_a_unit_imports_only_its_own_members(gateway: Gateway) -> None:
    data, _ = mall_file(rows=10, seed=4243)
    async with await gateway.session("mall", IMPORT) as mall:
        # The spec's non-ASCII as UTF-8 bytes in the header, as curl sends it.
        raw = json.dumps(json.loads(spec_header()), ensure_ascii=False).encode()
        assert "卡号".encode() in raw
        made = await upload(mall, data, raw)
        assert made.status_code == 201, made.text
        assert made.json()["memberImport"]["spec"]["mapping"]["legacyNumber"] == "卡号"
        name = made.json()["memberImport"]["name"]
    async with await gateway.session("hotel", IMPORT) as hotel:
        refused = await upload(hotel, data, spec_header())
        assert refused.status_code == 403, refused.text
        assert reason_of(refused) == "UNIT_MISMATCH"
        read = await hotel.get(f"/v1/{name}")
        assert read.status_code in (403, 404), read.text
        listed = await hotel.get("/v1/memberImports")
        assert name not in [i["name"] for i in listed.json()["memberImports"]]
    async with await gateway.session("mall", "earn") as unscoped:
        refused = await upload(unscoped, data, spec_header())
        assert refused.status_code == 403 and reason_of(refused) == "SCOPE_REQUIRED"
    async with httpx.AsyncClient(base_url=gateway.url, timeout=15) as anonymous:
        refused = await upload(anonymous, data, spec_header())
        assert refused.status_code == 401 and reason_of(refused) == "TOKEN_MISSING"


async def test_a_malformed_spec_is_400_naming_the_fields(gateway: Gateway) -> None:
    data, _ = mall_file(rows=10, seed=4244)
    async with await gateway.session("mall", IMPORT) as http:
        no_number = await upload(http, data, spec_header(mapping={"phone": "手机号"}))
        assert no_number.status_code == 400, no_number.text
        assert error_of(no_number)["status"] == "INVALID_ARGUMENT"
        assert any("legacy_number" in f or "legacyNumber" in f for f in fields_of(no_number))

        unknown = await upload(http, data, spec_header(colour="red"))
        assert unknown.status_code == 400 and fields_of(unknown) == ["X-Import-Spec"]
        assert "colour" in error_of(unknown)["message"]

        not_json = await upload(http, data, "{unit: mall")
        assert not_json.status_code == 400 and fields_of(not_json) == ["X-Import-Spec"]

        contradiction = await upload(
            http, data, spec_header(format="IMPORT_FORMAT_JSON_LINES"), content_type="text/csv"
        )
        assert contradiction.status_code == 400 and fields_of(contradiction) == ["Content-Type"]

        pdf = await upload(http, data, spec_header(), content_type="application/pdf")
        assert pdf.status_code == 415 and reason_of(pdf) == "UNSUPPORTED_MEDIA_TYPE"


async def test_an_upload_past_the_limit_is_413_and_nothing_is_stored(
    gateway: Gateway, gateway_service: RunningService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway_service.root.config, "max_upload_bytes", 16 * 1024)
    data, _ = mall_file(rows=3000, seed=4245)
    assert len(data) > 16 * 1024
    async with await gateway.session("mall", IMPORT) as http:
        declared = await upload(http, data, spec_header())
        assert declared.status_code == 413, declared.text
        assert reason_of(declared) == "BODY_TOO_LARGE"
        assert error_of(declared)["status"] == "RESOURCE_EXHAUSTED"

        spec = spec_header()
        file_name = json.loads(spec)["fileName"]
        try:
            chunked = await upload(http, streamed(data), spec)
        except httpx.TransportError:
            pass  # the gateway answered and closed while the body was still being sent
        else:
            assert chunked.status_code == 413, chunked.text
            assert reason_of(chunked) == "BODY_TOO_LARGE"
        listed = await http.get("/v1/memberImports", params={"unit": "mall", "pageSize": 500})
        assert file_name not in [i["spec"]["fileName"] for i in listed.json()["memberImports"]]

        monkeypatch.undo()
        within = await upload(http, data, spec_header())
        assert within.status_code == 201, within.text


async def test_the_upload_is_in_the_openapi_document(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        document = (await http.get("/openapi.json")).json()
    imports = document["paths"]["/v1/memberImports"]
    assert imports["get"]["operationId"] == "MemberImportService_ListMemberImports"
    assert imports["post"]["operationId"] == "MemberImportService_CreateMemberImport"
    assert imports["post"]["parameters"][0]["name"] == "X-Import-Spec"
    assert "/v1/memberImports/{memberImportId}/rows" in document["paths"]
