"""Generated gRPC stubs over real channels, calling as a given business-unit client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from loyalty_devstack.testing import metadata_for
from loyalty_kit.caller import Caller


class As:
    """`As(stub_class, channel, caller).Method(request)`: every call carries the caller's
    bearer token and a deadline. `caller` may also be chosen per request (the till of the
    request's unit, say)."""

    def __init__(
        self, stub_class: Any, channel: grpc.aio.Channel, caller: Caller | Callable[[Any], Caller]
    ) -> None:
        self._stub_class, self._channel = stub_class, channel
        self._stub = stub_class(channel)
        self._caller = caller

    def with_caller(self, caller: Caller | Callable[[Any], Caller]) -> As:
        """The same service on the same channel, called as another client."""
        return As(self._stub_class, self._channel, caller)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._stub, name)

        def call(request: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", 15)
            caller = self._caller if isinstance(self._caller, Caller) else self._caller(request)
            return method(request, metadata=metadata_for(caller), **kwargs)

        return call
