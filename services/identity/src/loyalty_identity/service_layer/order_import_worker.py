"""Carrying out order imports, in every replica, as member imports are carried out
(`import_jobs.ImportJobs`: the lease, the chunks, the checkpoint): a chunk's rows go through
`order_imports.import_chunk`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from loyalty_kit import metrics
from loyalty_kit.clock import Clock

from loyalty_identity.adapters.order_imports import OrderImportStore
from loyalty_identity.adapters.row_process import ProcessRowSource, order_row, prepared
from loyalty_identity.domain.order_file import OrderFileReader, OrderRow
from loyalty_identity.domain.order_import import (
    COUNTERS,
    OrderCounts,
    OrderImport,
    OrderImportSpec,
)
from loyalty_identity.service_layer import order_imports
from loyalty_identity.service_layer.import_jobs import ImportJobs, ProcessSlots, RowSource
from loyalty_identity.service_layer.uow import IdentityUnitOfWork
from loyalty_identity.settings import ImportSettings

ROWS = "loyalty_order_import_rows"
ROWS_HELP = "Rows of order imports committed, by unit and outcome."

OrderReaderFactory = Callable[[OrderImportSpec, datetime, str], RowSource[OrderRow]]


def order_file_reader(spec: OrderImportSpec, now: datetime, time_zone: str) -> RowSource[OrderRow]:
    return OrderFileReader(spec, now=now, time_zone=ZoneInfo(time_zone))


class OrderImportWorker(ImportJobs[OrderImport, OrderRow, OrderCounts, list[str | None]]):
    """Takes order imports and carries them out, one at a time: each chunk's members are
    resolved ahead (`look_ahead`), while the chunk before is written."""

    kind = "order import"
    logger = "loyalty.identity.order_imports"
    chunk_attempts = 3

    def __init__(
        self,
        uow: Callable[..., IdentityUnitOfWork],
        settings: ImportSettings,
        clock: Clock,
        *,
        reader: OrderReaderFactory = order_file_reader,
        owner: str = "",
        processes: ProcessSlots | None = None,
    ) -> None:
        super().__init__(uow, settings, clock, owner=owner, processes=processes)
        self.reader = reader

    def store(self, uow: IdentityUnitOfWork) -> OrderImportStore:
        return uow.order_imports

    def chunk_rows(self) -> int:
        return self.settings.order_chunk_rows

    async def source(self, job: OrderImport, in_process: bool) -> RowSource[OrderRow]:
        time_zone = self.settings.time_zone
        if in_process and self.reader is order_file_reader:
            async with self.uow(read_only=True) as uow:
                index_key = uow.keyring.index_key
            args = (job.spec, job.created_at, time_zone)
            return ProcessRowSource("order", args, index_key, order_row)
        return self.reader(job.spec, job.created_at, time_zone)

    async def look_ahead(self, job: OrderImport, rows: Sequence[OrderRow]) -> list[str | None]:
        """The members of the chunk's parsed orders' identities (its blind indexes made here
        too), on a connection of their own: the chunk before does not change who holds an
        identity."""
        async with self.uow(read_only=True) as uow:
            store = uow.order_imports
            store.remember_indexes(prepared(rows))
            return await order_imports.members_of(store, rows)

    async def import_chunk(
        self,
        uow: IdentityUnitOfWork,
        job: OrderImport,
        rows: Sequence[OrderRow],
        bytes_read: int,
        *,
        last: bool,
        ahead: list[str | None] | None,
    ) -> OrderCounts:
        return await order_imports.import_chunk(
            uow, job, rows, bytes_read, self.clock(), last=last, members=ahead
        )

    async def ended(self, uow: IdentityUnitOfWork, job: OrderImport) -> None:
        await order_imports.ended(uow, job)

    def count(self, unit: str, counts: OrderCounts) -> None:
        for name in COUNTERS:
            rows = getattr(counts, name)
            if rows:
                metrics.add(ROWS, ROWS_HELP, {"unit": unit, "outcome": name}, rows)
