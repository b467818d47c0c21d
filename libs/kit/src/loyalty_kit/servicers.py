"""The read/write template every servicer follows, written once.

A servicer is thin: it turns the request into a command, runs one use case in a unit of work and
turns the result into the response. Reads run in a read-only unit of work (autocommit); writes
run once per request_id and caller through `idempotency.run_idempotent` (a retry gets the first
answer), with the time of the attempt from the service's clock.

    class PointsServicer(UnitOfWorkServicer[PointsUnitOfWork], PointsServiceServicer):
        service = "loyalty.points.v1.PointsService"
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import ClassVar, Generic, Protocol, TypeVar

from google.protobuf.message import Message

from loyalty_kit.clock import Clock
from loyalty_kit.idempotency import request_scope, run_idempotent
from loyalty_kit.uow import UnitOfWork

U = TypeVar("U", bound=UnitOfWork)
U_co = TypeVar("U_co", bound=UnitOfWork, covariant=True)
M = TypeVar("M", bound=Message)
T = TypeVar("T")


class UnitOfWorkFactory(Protocol[U_co]):
    """Opens a unit of work of a service: `uow()` to write, `uow(read_only=True)` to read."""

    def __call__(self, *, read_only: bool = False) -> U_co: ...


class UnitOfWorkServicer(Generic[U]):
    # The full gRPC service name (`loyalty.points.v1.PointsService`): request ids are unique
    # per service, method and caller.
    service: ClassVar[str]

    def __init__(self, uow: UnitOfWorkFactory[U], clock: Clock) -> None:
        self.uow = uow
        self.clock = clock

    async def _read(self, work: Callable[[U], Awaitable[T]]) -> T:
        """`work` in a read-only unit of work."""
        async with self.uow(read_only=True) as uow:
            return await work(uow)

    async def _mutate(
        self,
        method: str,
        request: Message,
        response_type: type[M],
        work: Callable[[U, datetime], Awaitable[M]],
    ) -> M:
        """A mutating call, once per request_id and caller: `work(uow, now)` runs, its answer
        is stored with the request_id and committed in one transaction."""
        scope = request_scope(self.service, method)
        return await run_idempotent(
            self.uow, scope, request, response_type, lambda uow: work(uow, self.clock())
        )

    async def _settled(self, method: str, request_id: str, response_type: type[M]) -> M | None:
        """The answer `method` gave this caller's request_id, never taking anything (a call
        still in flight is waited for): for a caller that lost the answer."""
        async with self.uow() as uow:  # rolled back: the look-up leaves nothing behind
            return await uow.idempotency.settled(
                request_scope(self.service, method), request_id, response_type
            )
