"""An import's file read in a worker process of its own: the second core parses and normalises
the rows and makes their identities' blind indexes while the service runs the chunk before in
its transaction (`service_layer/import_jobs.py` holds at most a few batches of rows, so the
process waits when the service is behind: memory stays flat in the file's size).

The process is fed the file's parts on request, over a pipe, as the reader in the service's
thread is; rows cross back as plain tuples in batches (pickled dataclasses cost as much to
load as the row costs to parse), each with the bytes read up to its end, and become the
kind's rows again here. The blind-index key goes to the process, and for member imports the
active master key: each parsed row's data is sealed there for the new member it would make (an
id, a data key made and wrapped, the identities, name and birthday sealed), which the service
uses when the row does make that member (`member_bulk.py`); rows that join a member seal there as
before. Neither key is logged or sent back; nothing sealed ahead outlives the chunk's
transaction (a chunk run again, or after a takeover, is read and sealed again).
The process ends with the reading: at the file's end, on an error, or when the feed is closed
(a cancel, a takeover, the service stopping); a process that outlives its parent is killed
with it (daemonic).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from multiprocessing.connection import Connection
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo

from loyalty_identity.adapters.blind_index import blind_index
from loyalty_identity.adapters.crypto import AheadSealer, sealed_as
from loyalty_identity.domain.identities import ChannelIdentity, IdentityType
from loyalty_identity.domain.import_file import FileReader
from loyalty_identity.domain.imports import (
    ImportFileError,
    ImportSpec,
    ParsedRow,
    RejectedRow,
    RowConsent,
    SealedAhead,
)
from loyalty_identity.domain.member import Gender, new_member_id
from loyalty_identity.domain.order_file import OrderFileReader
from loyalty_identity.domain.order_import import OrderImportSpec, ParsedOrder

R = TypeVar("R")
BATCH = 1000  # rows a message carries
Plain = tuple[Any, ...]
Sealing = tuple[str, bytes]  # the active master key's id and the key
_SPAWN = multiprocessing.get_context("spawn")  # never fork a process with threads and a loop


# --- the rows as plain tuples -------------------------------------------------------------------
# A refused row is (number, reason, detail); a parsed one (number, identities as (type, value)
# pairs, the kind's own values..., the identities' blind indexes); a member's then its data
# sealed ahead (or None).
def _plain(
    row: ParsedRow | ParsedOrder | RejectedRow, index_key: bytes, values: Callable[[Any], Plain]
) -> Plain:
    if isinstance(row, RejectedRow):
        return (row.number, row.reason, row.detail)
    ids = row.identities
    return (
        row.number,
        tuple((i.type, i.value) for i in ids),
        *values(row),
        tuple(blind_index(index_key, i) for i in ids),
    )


def seal_ahead(row: ParsedRow, sealer: AheadSealer) -> Plain:
    """The row's data sealed for the new member it would make, as `member_bulk` seals it."""
    member_id = new_member_id()
    data_key, wrapped, cipher = sealer.new_key(member_id)
    seal = sealer.seal
    birthday = row.birthday
    return (
        member_id,
        data_key,
        sealer.key_id,
        wrapped,
        tuple(
            seal(cipher, i.value, sealed_as(member_id, f"identity/{i.type}"))
            for i in row.identities
        ),
        seal(cipher, row.name, sealed_as(member_id, "full_name")) if row.name else None,
        seal(cipher, birthday.isoformat(), sealed_as(member_id, "birthday")) if birthday else None,
    )


def _row(plain: Plain, make: Callable[..., R]) -> R | RejectedRow:
    if len(plain) == 3:
        return RejectedRow(*plain)
    number, ids, *values, indexes = plain
    return make(number, tuple(ChannelIdentity(t, v) for t, v in ids), *values, indexes)


def member_plain(
    row: ParsedRow | RejectedRow, index_key: bytes, sealer: AheadSealer | None = None
) -> Plain:
    plain = _plain(row, index_key, _member_values)
    if isinstance(row, RejectedRow):
        return plain
    return (*plain, seal_ahead(row, sealer) if sealer is not None else None)


def _member_values(row: ParsedRow) -> Plain:
    return (
        row.name,
        row.gender.value,
        row.birthday,
        row.region,
        row.tags,
        tuple((c.purpose, c.granted, c.changed_at) for c in row.consents),
        row.legacy_points,
        row.points_expire_at,
        row.legacy_tier,
        row.tier_code,
        row.joined_at,
        row.notes,
    )


def member_row(plain: Plain) -> ParsedRow | RejectedRow:
    if len(plain) == 3:
        return RejectedRow(*plain)
    number, ids, *values, indexes, sealed = plain
    return _parsed_member(
        number,
        tuple(ChannelIdentity(t, v) for t, v in ids),
        *values,
        indexes,
        SealedAhead(*sealed) if sealed is not None else None,
    )


def _parsed_member(
    number: int,
    identities: tuple[ChannelIdentity, ...],
    name: str,
    gender: str,
    birthday: date | None,
    region: str,
    tags: tuple[str, ...],
    consents: tuple[tuple[str, bool, datetime | None], ...],
    *rest: Any,
) -> ParsedRow:
    return ParsedRow(
        number,
        identities,
        name,
        Gender(gender),
        birthday,
        region,
        tags,
        tuple(RowConsent(p, g, at) for p, g, at in consents),
        *rest,
    )


def order_plain(
    row: ParsedOrder | RejectedRow, index_key: bytes, sealer: AheadSealer | None = None
) -> Plain:
    return _plain(row, index_key, _order_values)


def _order_values(row: ParsedOrder) -> Plain:
    return (row.order_id, str(row.amount), row.currency, row.occurred_at)


def order_row(plain: Plain) -> ParsedOrder | RejectedRow:
    return _row(plain, _parsed_order)


def _parsed_order(
    number: int,
    identities: tuple[ChannelIdentity, ...],
    order_id: str,
    amount: str,
    currency: str,
    occurred_at: datetime,
    indexes: tuple[bytes, ...],
) -> ParsedOrder:
    return ParsedOrder(
        number, identities, order_id, Decimal(amount), currency, occurred_at, indexes
    )


# --- the kinds' readers, as the process makes them ---------------------------------------------
def member_reader(
    spec: ImportSpec, types: Mapping[str, IdentityType], now: datetime, time_zone: str
) -> FileReader:
    return FileReader(spec, types, now=now, time_zone=ZoneInfo(time_zone))


def order_reader(spec: OrderImportSpec, now: datetime, time_zone: str) -> OrderFileReader:
    return OrderFileReader(spec, now=now, time_zone=ZoneInfo(time_zone))


KINDS: dict[str, tuple[Callable[..., Any], Callable[[Any, bytes, AheadSealer | None], Plain]]] = {
    "member": (member_reader, member_plain),
    "order": (order_reader, order_plain),
}


# --- the process ----------------------------------------------------------------------------
def _serve(
    conn: Connection,
    kind: str,
    args: tuple[Any, ...],
    index_key: bytes,
    sealing: Sealing | None = None,
) -> None:
    """The process: read the file, asking for its parts, and send its rows back in batches
    (then "end"), or the error that stopped the reading."""
    make, plain = KINDS[kind]
    sealer = AheadSealer(*sealing) if sealing is not None else None

    def parts() -> Iterator[bytes]:
        while True:
            conn.send(("part",))
            part = conn.recv()
            if part is None:
                return
            yield part

    try:
        reader = make(*args)
        batch: list[Plain] = []
        ends: list[int] = []
        for row in reader.rows(parts()):
            batch.append(plain(row, index_key, sealer))
            ends.append(reader.bytes_read)
            if len(batch) >= BATCH:
                conn.send(("rows", batch, ends))
                batch, ends = [], []
        conn.send(("rows", batch, ends))
        conn.send(("end",))
    except ImportFileError as error:
        conn.send(("file", error.reason, error.detail))
    except (BrokenPipeError, EOFError):  # the service closed the feed
        pass
    except Exception as error:  # the reader failed: the service fails the import
        # Its type only: the text may quote a row's values (personal data).
        conn.send(("error", type(error).__name__))
    finally:
        conn.close()


class WorkerLost(Exception):
    """The import reader's worker process ended without a word (killed, out of memory): the
    import carries on from its checkpoint, read in the service's process."""

    def __init__(self, exitcode: int | None) -> None:
        super().__init__(f"the import's worker process ended (exit code {exitcode})")
        self.exitcode = exitcode


class WorkerFailed(Exception):
    """The import reader's worker process stopped on an unexpected error: named by its type
    alone (its text may quote a row's values, which must reach neither the import's status nor
    the logs)."""

    def __init__(self, error_type: str) -> None:
        super().__init__(f"the import's worker process failed ({error_type})")
        self.error_type = error_type


class ProcessRowSource(Generic[R]):
    """A kind's file reader in a worker process, as the import worker uses a reader (`rows`
    once, `bytes_read` up to the end of the last row handed over)."""

    def __init__(
        self,
        kind: str,
        args: tuple[Any, ...],
        index_key: bytes,
        row_of: Callable[[Plain], R],
        sealing: Sealing | None = None,
    ) -> None:
        self.kind, self.args, self.index_key, self.row_of = kind, args, index_key, row_of
        self.sealing = sealing
        self.bytes_read = 0

    def rows(self, parts: Iterable[bytes]) -> Iterator[R]:
        feed = iter(parts)
        mine, theirs = _SPAWN.Pipe()
        process = _SPAWN.Process(
            target=_serve,
            args=(theirs, self.kind, self.args, self.index_key, self.sealing),
            name=f"identity-{self.kind}-import-rows",
            daemon=True,
        )
        process.start()
        theirs.close()
        try:
            while True:
                try:
                    message = mine.recv()
                except (EOFError, ConnectionError, OSError):
                    raise WorkerLost(process.exitcode) from None
                what = message[0]
                if what == "part":
                    part = next(feed, None)
                    try:
                        mine.send(part)
                    except (ConnectionError, OSError):
                        raise WorkerLost(process.exitcode) from None
                elif what == "rows":
                    row_of = self.row_of
                    for plain, end in zip(message[1], message[2], strict=True):
                        self.bytes_read = end
                        yield row_of(plain)
                elif what == "end":
                    return
                elif what == "file":
                    raise ImportFileError(message[1], message[2])
                else:
                    raise WorkerFailed(message[1])
        finally:
            mine.close()
            if process.is_alive():
                process.kill()
            process.join(5)


def prepared(rows: Sequence[object]) -> dict[ChannelIdentity, bytes]:
    """The blind indexes a worker process made with these rows, by identity."""
    found: dict[ChannelIdentity, bytes] = {}
    for row in rows:
        if isinstance(row, ParsedRow | ParsedOrder) and row.indexes:
            found.update(zip(row.identities, row.indexes, strict=True))
    return found
