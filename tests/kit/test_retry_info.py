"""A refusal that says when to try again (a rate limit's) carries a google.rpc.RetryInfo beside
its ErrorInfo; others carry none."""

from __future__ import annotations

from google.rpc import code_pb2, error_details_pb2
from loyalty_kit.errors import ResourceExhausted
from loyalty_kit.status import status_of


def _retry_infos(status: object) -> list[error_details_pb2.RetryInfo]:
    found = []
    for detail in status.details:  # type: ignore[attr-defined]
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            found.append(info)
    return found


def test_a_refusal_with_a_wait_says_when_to_try_again() -> None:
    error = ResourceExhausted("slow down", reason="SLOW_DOWN")
    error.retry_after_seconds = 42.5
    status = status_of(error, "identity")
    assert status.code == code_pb2.RESOURCE_EXHAUSTED
    (info,) = _retry_infos(status)
    assert (info.retry_delay.seconds, info.retry_delay.nanos) == (42, 500_000_000)
    assert _retry_infos(status_of(ResourceExhausted("full"), "identity")) == []
