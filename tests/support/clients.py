"""Generated gRPC stubs over real channels, calling as a given business-unit client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from loyalty_kit.caller import Caller


class As:
    """`As(stub_class, channel, caller).Method(request)`: every call carries the caller's
    metadata and a deadline."""

    def __init__(self, stub_class: Any, channel: grpc.aio.Channel, caller: Caller) -> None:
        self._stub_class, self._channel = stub_class, channel
        self._stub = stub_class(channel)
        self._metadata = caller.metadata()

    def with_caller(self, caller: Caller) -> As:
        """The same service on the same channel, called as another client."""
        return As(self._stub_class, self._channel, caller)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._stub, name)

        def call(request: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", 15)
            return method(request, metadata=self._metadata, **kwargs)

        return call
