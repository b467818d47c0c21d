"""A webhook receiver for the tests: a tiny asyncio HTTP/1.1 server on a free port that checks
each request's signature as the README tells a receiver to, records it, and answers with the
statuses it is told (in turn; the last one from then on)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from loyalty_engagement.domain.channels import (
    ATTEMPT_HEADER,
    MESSAGE_ID_HEADER,
    SIGNATURE_HEADER,
    verify,
)

REASONS = {200: "OK", 400: "Bad Request", 500: "Internal Server Error", 503: "Unavailable"}


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    signed: bool  # the signature verified with the endpoint's secret
    answered: int

    @property
    def payload(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.body)
        return found

    @property
    def message_id(self) -> str:
        return self.headers[MESSAGE_ID_HEADER.lower()]

    @property
    def attempt(self) -> int:
        return int(self.headers[ATTEMPT_HEADER.lower()])


@dataclass
class Receiver:
    secret: str
    answers: list[int] = field(default_factory=lambda: [200])
    received: list[Received] = field(default_factory=list)
    server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hooks/messages"

    def answer_with(self, *statuses: int) -> None:
        self.answers = list(statuses)

    async def start(self) -> Receiver:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readline()  # the request line
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            status = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
            signed = verify(
                self.secret, headers.get(SIGNATURE_HEADER.lower(), ""), body, int(time.time())
            )
            self.received.append(Received(headers, body, signed, status))
            writer.write(
                f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\n"
                "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
        finally:
            writer.close()
