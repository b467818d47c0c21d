"""Hostile HTTP input is refused before it costs memory or time: bodies past the limit (declared
or streamed), JSON nested past the limit, text with control, bidirectional or invisible
characters, and page sizes past any list's maximum."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.gateway.conftest import Gateway
from tests.gateway.test_http import error_of, fields_of, reason_of, register

pytestmark = pytest.mark.asyncio(loop_scope="session")

MIB = 1024 * 1024


def registration(full_name: str = "") -> dict[str, object]:
    return {
        "requestId": uuid.uuid4().hex,
        "unit": "mall",
        "channel": "CHANNEL_POS",
        "identities": [{"type": "phone", "value": f"137{uuid.uuid4().int % 10**8:08d}"}],
        "profile": {"fullName": full_name},
    }


async def test_a_body_declared_larger_than_the_limit_is_413_unread(gateway: Gateway) -> None:
    async with await gateway.session("mall", "earn") as http:
        started = time.perf_counter()
        response = await http.post(
            "/v1/members:register",
            content=b"{" + b" " * (2 * MIB) + b"}",
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 413, response.text
        assert reason_of(response) == "BODY_TOO_LARGE"
        assert error_of(response)["status"] == "RESOURCE_EXHAUSTED"
        assert error_of(response)["code"] == 413
        assert "Retry-After" not in response.headers
        assert time.perf_counter() - started < 5
        # The connection is usable (or replaced) and the gateway answers the next request.
        assert (await http.post("/v1/members:register", json=registration())).status_code == 200


async def test_a_streamed_body_is_refused_as_soon_as_it_passes_the_limit(gateway: Gateway) -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while sent < 64 * MIB:  # the test's own bound: the gateway must stop long before
            sent += 64 * 1024
            yield b" " * (64 * 1024)

    async with await gateway.session("mall", "earn") as http:
        try:
            response = await http.post(
                "/v1/members:register",
                content=endless(),
                headers={"Content-Type": "application/json"},
            )
        except httpx.TransportError:
            pass  # the gateway answered and closed while the client was still sending
        else:
            assert response.status_code == 413, response.text
            assert reason_of(response) == "BODY_TOO_LARGE"
        assert sent < 64 * MIB  # the gateway closed the connection rather than drain it all


async def test_the_token_endpoint_bounds_its_body_too(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=15) as http:
        response = await http.post(
            "/v1/token",
            content=b"grant_type=client_credentials&client_id=" + b"x" * (2 * MIB),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 413 and reason_of(response) == "BODY_TOO_LARGE"
        deep = await http.post(
            "/v1/token",
            content=b"[" * 10_000 + b"]" * 10_000,
            headers={"Content-Type": "application/json"},
        )
        assert deep.status_code == 400 and reason_of(deep) == "MALFORMED_REQUEST"


@pytest.mark.parametrize(
    "body",
    ['{"profile":' * 65 + "{}" + "}" * 65, "[" * 500_000 + "]" * 500_000],
    ids=["65 objects", "500,000 arrays"],
)
async def test_json_nested_past_the_limit_is_400_malformed_request(
    gateway: Gateway, body: str
) -> None:
    async with await gateway.session("mall", "earn") as http:
        started = time.perf_counter()
        response = await http.post(
            "/v1/members:register", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400, response.text
        assert reason_of(response) == "MALFORMED_REQUEST"
        assert fields_of(response) == ["body"]
        assert time.perf_counter() - started < 5


async def test_json_within_the_limit_is_read_as_before(gateway: Gateway) -> None:
    """Nesting that a contract message really has, with brackets inside strings that are not
    nesting at all."""
    async with await gateway.session("mall", "earn") as http:
        response = await http.post(
            "/v1/members:register", json=registration("[[[[ {{{{ 王芳 ]]]] }}}}" * 4)
        )
        assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "name",
    [
        "Wang\u202eFang",  # right-to-left override
        "Li\u2066Ming\u2069",  # isolates
        "Ali\u200dce",  # a zero width joiner between Latin letters
        "Chen\u200bJing",  # zero width space
        "Zhao\tLei",  # a tab
        "Zhao\x1b[31mLei",  # a terminal escape
        "Zhao\x85Lei",  # C1 next line
        "Zhao\x00Lei",  # NUL
    ],
)
async def test_a_name_with_control_bidi_or_invisible_characters_is_refused(
    gateway: Gateway, name: str
) -> None:
    async with await gateway.session("mall", "earn") as http:
        response = await http.post("/v1/members:register", json=registration(name))
        assert response.status_code == 400, response.text
        assert reason_of(response) == "INVALID_CHARACTERS"
        assert fields_of(response) == ["profile.full_name"]
        assert name not in response.text  # the refusal says where, not what


@pytest.mark.parametrize(
    "name", ["王芳", "Zhao Lei", "José Müller-Łukasiewicz", "محمد", "👩\u200d👩\u200d👧", "金 智秀"]
)
async def test_names_in_any_script_are_text(gateway: Gateway, name: str) -> None:
    async with await gateway.session("mall", "earn", "personal_data:read") as http:
        response = await http.post("/v1/members:register", json=registration(name))
        assert response.status_code == 200, response.text


async def test_free_text_of_any_request_is_checked_alike(gateway: Gateway) -> None:
    """A reason, a tag and an order id: the same rule wherever text enters."""
    async with await gateway.session("mall", "earn", "members:manage") as http:
        member = await register(http)
        suspend = await http.post(f"/v1/{member}:suspend", json={"reason": "fraud\u202e"})
        tags = await http.post(
            f"/v1/{member}/tags:update",
            json={"requestId": uuid.uuid4().hex, "addTags": ["bu:mall", "bu:\u200bmall"]},
        )
        earn = await http.post(
            f"/v1/{member}/points:earn",
            json={
                "requestId": uuid.uuid4().hex,
                "unit": "mall",
                "orderId": "A-1\r\nSet-Cookie: x",
                "lines": [{"lineId": "1", "amount": {"currencyCode": "CNY", "amount": "1"}}],
            },
        )
        for response, field in ((suspend, "reason"), (tags, "add_tags[1]"), (earn, "order_id")):
            assert response.status_code == 400, response.text
            assert reason_of(response) == "INVALID_CHARACTERS"
            assert fields_of(response) == [field]


async def test_a_huge_page_size_is_clamped(gateway: Gateway) -> None:
    async with await gateway.session("mall", "earn", "members:manage") as http:
        member = await register(http)
        for path, items, maximum in (
            (f"/v1/{member}/postings", "postings", 500),
            ("/v1/members", "members", 1000),
            ("/v1/identityTypes", "identityTypes", 1000),
        ):
            response = await http.get(path, params={"pageSize": str(2**31 - 1)})
            assert response.status_code == 200, response.text
            assert len(response.json()[items]) <= maximum
            negative = await http.get(path, params={"pageSize": "-1"})
            assert negative.status_code == 400 and fields_of(negative) == ["page_size"]
