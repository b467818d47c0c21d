"""The WeChat login exchange against a local HTTP server that answers as WeChat's
`jscode2session` does: the openid and unionid for a good code, errcode 40029 for a bad one,
-1 while busy; nothing answering is UNAVAILABLE."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import pytest
import pytest_asyncio
from loyalty_identity.adapters.wechat import DevelopmentWeChatFake, WeChatJsCode2Session
from loyalty_identity.service_layer.sign_in import WeChatAccount, WeChatCodeRefused
from loyalty_kit.errors import FailedPrecondition, Unavailable

APP_ID, SECRET = "wx0123456789abcdef", "s3cr3t-of-the-mini-program"


@dataclass
class FakeWeChat:
    """Answers as WeChat: `good-*` codes sign in, `busy` is -1, anything else 40029."""

    asked: list[dict[str, list[str]]] = field(default_factory=list)
    server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/sns/jscode2session"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await reader.readline()).decode()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            query = parse_qs(urlsplit(request_line.split(" ")[1]).query)
            self.asked.append(query)
            code = query.get("js_code", [""])[0]
            if query.get("appid") != [APP_ID] or query.get("secret") != [SECRET]:
                answer = {"errcode": 40125, "errmsg": "invalid appsecret"}
            elif code.startswith("good-"):
                answer = {
                    "openid": f"oPenId{code[5:]}",
                    "session_key": "c2Vzc2lvbi1rZXk=",
                    "unionid": f"oUnIoN{code[5:]}",
                }
            elif code == "busy":
                answer = {"errcode": -1, "errmsg": "system error"}
            else:
                answer = {"errcode": 40029, "errmsg": "invalid code"}
            body = json.dumps(answer).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        finally:
            writer.close()


@pytest_asyncio.fixture(loop_scope="session")
async def wechat() -> AsyncIterator[FakeWeChat]:
    fake = FakeWeChat()
    fake.server = await asyncio.start_server(fake.serve, "127.0.0.1", 0)
    yield fake
    fake.server.close()
    await fake.server.wait_closed()


async def test_a_good_code_is_exchanged_for_the_openid_and_unionid(wechat: FakeWeChat) -> None:
    exchange = WeChatJsCode2Session(APP_ID, SECRET, wechat.url)
    try:
        account = await exchange.exchange("good-0000000000000001")
    finally:
        await exchange.close()
    assert account == WeChatAccount("oPenId0000000000000001", "oUnIoN0000000000000001")
    (asked,) = wechat.asked
    assert asked["grant_type"] == ["authorization_code"]
    assert asked["js_code"] == ["good-0000000000000001"]


async def test_refused_busy_and_unreachable_wechat_answer_their_own_way(
    wechat: FakeWeChat,
) -> None:
    exchange = WeChatJsCode2Session(APP_ID, SECRET, wechat.url)
    wrong_secret = WeChatJsCode2Session(APP_ID, "not-the-secret", wechat.url)
    nowhere = WeChatJsCode2Session(APP_ID, SECRET, "http://127.0.0.1:9/sns", timeout=1)
    try:
        with pytest.raises(WeChatCodeRefused):
            await exchange.exchange("stale")
        with pytest.raises(Unavailable):
            await exchange.exchange("busy")
        with pytest.raises(Unavailable):
            await nowhere.exchange("good-1")
        with pytest.raises(FailedPrecondition) as raised:
            await wrong_secret.exchange("good-1")
        refused = raised.value
        assert (refused.reason, refused.metadata) == ("WECHAT_REFUSED", {"errcode": "40125"})
    finally:
        for each in (exchange, wrong_secret, nowhere):
            await each.close()


async def test_the_development_fake_takes_only_its_own_codes() -> None:
    fake = DevelopmentWeChatFake()
    assert await fake.exchange("dev-oABCDEFGHIJKLMNOP") == WeChatAccount(
        "oABCDEFGHIJKLMNOP", "dev-union-oABCDEFGHIJKLMNOP"
    )
    for code in ("oABCDEFGHIJKLMNOP", "dev-"):
        with pytest.raises(WeChatCodeRefused):
            await fake.exchange(code)
