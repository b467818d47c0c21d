"""The webhook channel's HTTP client (httpx): one connection pool for the process, a timeout on
every request, redirects not followed (a signed message goes where the unit said, nowhere
else)."""

from __future__ import annotations

import httpx


class HttpSender:
    def __init__(self, timeout_seconds: float) -> None:
        self._client = httpx.AsyncClient(timeout=timeout_seconds, follow_redirects=False)

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str]:
        try:
            response = await self._client.post(url, content=body, headers=headers)
        except httpx.TimeoutException:
            return None, "timeout"
        except httpx.HTTPError as error:
            return None, type(error).__name__
        if 200 <= response.status_code < 300:
            return response.status_code, ""
        return response.status_code, f"HTTP {response.status_code}"

    async def close(self) -> None:
        await self._client.aclose()
