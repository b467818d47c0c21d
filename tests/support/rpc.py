"""Reading google.rpc.Status off a failed call, for assertions."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from loyalty_kit.status import bad_request, error_info, from_rpc_error


@dataclass
class Failure:
    code: grpc.StatusCode
    reason: str
    domain: str
    metadata: dict[str, str]
    fields: list[str] = field(default_factory=list)
    message: str = ""


async def fails(call: Awaitable[Any]) -> Failure:
    """Await a call that must fail; its status, ErrorInfo and field violations."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    error = raised.value
    status = from_rpc_error(error)
    assert status is not None, f"no google.rpc.Status in {error}"
    info = error_info(status)
    assert info is not None, f"no ErrorInfo in {status}"
    violations = bad_request(status)
    return Failure(
        code=error.code(),
        reason=info.reason,
        domain=info.domain,
        metadata=dict(info.metadata),
        fields=[v.field for v in violations.field_violations] if violations else [],
        message=status.message,
    )
