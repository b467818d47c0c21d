"""Carrying out member imports, in every replica (`import_jobs.ImportJobs`: the lease, the
chunks, the checkpoint): a chunk's rows go through `imports.import_chunk`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from loyalty_kit import metrics
from loyalty_kit.clock import Clock

from loyalty_identity.adapters.imports import ImportStore
from loyalty_identity.adapters.row_process import ProcessRowSource, member_row
from loyalty_identity.domain.identities import IdentityType
from loyalty_identity.domain.import_file import FileReader
from loyalty_identity.domain.imports import ImportSpec, ParsedRow, RejectedRow
from loyalty_identity.domain.member_import import Counts, MemberImport
from loyalty_identity.service_layer import imports
from loyalty_identity.service_layer.import_jobs import ImportJobs, ProcessSlots, RowSource
from loyalty_identity.service_layer.uow import IdentityUnitOfWork
from loyalty_identity.settings import ImportSettings

Row = ParsedRow | RejectedRow
ROWS = "loyalty_member_import_rows"
ROWS_HELP = "Rows of member imports committed, by unit and outcome."

ReaderFactory = Callable[[ImportSpec, Mapping[str, IdentityType], datetime, str], RowSource[Row]]


def file_reader(
    spec: ImportSpec, types: Mapping[str, IdentityType], now: datetime, time_zone: str
) -> RowSource[Row]:
    reader: RowSource[Row] = FileReader(spec, types, now=now, time_zone=ZoneInfo(time_zone))
    return reader


class ImportWorker(ImportJobs[MemberImport, Row, Counts, None]):
    """Takes member imports and carries them out, one at a time."""

    kind = "member import"
    logger = "loyalty.identity.imports"
    chunk_attempts = 5  # a chunk that met a concurrent registration runs again, this often

    def __init__(
        self,
        uow: Callable[..., IdentityUnitOfWork],
        settings: ImportSettings,
        clock: Clock,
        *,
        reader: ReaderFactory = file_reader,
        owner: str = "",
        processes: ProcessSlots | None = None,
    ) -> None:
        super().__init__(uow, settings, clock, owner=owner, processes=processes)
        self.reader = reader

    def store(self, uow: IdentityUnitOfWork) -> ImportStore:
        return uow.imports

    def chunk_rows(self) -> int:
        return self.settings.chunk_rows

    async def source(self, job: MemberImport, in_process: bool) -> RowSource[Row]:
        async with self.uow(read_only=True) as uow:
            types = await uow.members.identity_types()
            keyring = uow.keyring
        time_zone = self.settings.time_zone
        if in_process and self.reader is file_reader:
            args = (job.spec, dict(types), job.created_at, time_zone)
            sealing = (keyring.active_key_id, keyring.master_keys[keyring.active_key_id])
            return ProcessRowSource("member", args, keyring.index_key, member_row, sealing)
        return self.reader(job.spec, types, job.created_at, time_zone)

    async def import_chunk(
        self,
        uow: IdentityUnitOfWork,
        job: MemberImport,
        rows: Sequence[Row],
        bytes_read: int,
        *,
        last: bool,
        ahead: None,
    ) -> Counts:
        return await imports.import_chunk(uow, job, rows, bytes_read, self.clock(), last=last)

    async def ended(self, uow: IdentityUnitOfWork, job: MemberImport) -> None:
        await imports.ended(uow, job)

    def count(self, unit: str, counts: Counts) -> None:
        for outcome, rows in counts.by_outcome().items():
            if rows:
                metrics.add(ROWS, ROWS_HELP, {"unit": unit, "outcome": outcome.value}, rows)
