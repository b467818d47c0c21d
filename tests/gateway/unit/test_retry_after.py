"""`Retry-After` over HTTP: a rate limit's RetryInfo in whole seconds (rounded up), a passing
outage's second, nothing for other refusals."""

from __future__ import annotations

from loyalty_gateway.http.errors import error_body, retry_after
from loyalty_kit.errors import InvalidArgument, ResourceExhausted, Unavailable
from loyalty_kit.status import status_of


def test_a_rate_limits_wait_becomes_retry_after() -> None:
    limited = ResourceExhausted("slow down", reason="SIGN_IN_RATE_LIMITED")
    limited.retry_after_seconds = 41.2
    status = status_of(limited, "identity")
    assert retry_after(status) == "42"
    body = error_body(status)["error"]
    assert body["code"] == 429
    assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "41.200s"} in (
        body["details"]
    )
    assert retry_after(status_of(Unavailable("down"), "identity")) == "1"
    assert retry_after(status_of(InvalidArgument("bad"), "identity")) is None
