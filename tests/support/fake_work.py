"""What the fast tests' fake units of work share: a transaction over stores kept in memory as
`tables`, put back as they were when the unit of work is left without a commit."""

from __future__ import annotations

import copy
from types import TracebackType
from typing import Any, Protocol, Self


class InMemory(Protocol):
    tables: Any


class SnapshotWork:
    """Subclasses say what a transaction begins with (`begin`) and what a commit publishes
    (`publish`)."""

    def __init__(self, store: InMemory) -> None:
        self.store = store
        self.commits = 0
        self._before: Any = None

    def begin(self) -> None: ...

    def publish(self) -> None: ...

    async def __aenter__(self) -> Self:
        self._before = copy.deepcopy(self.store.tables)
        self.begin()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._before is not None:  # left without a commit: roll back
            self.store.tables = self._before
        self._before = None
        self.begin()  # what was recorded and not committed is dropped

    async def commit(self) -> None:
        self.publish()
        self.commits += 1
        self._before = copy.deepcopy(self.store.tables)
