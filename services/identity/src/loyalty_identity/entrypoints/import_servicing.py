"""What the import services share over gRPC (MemberImportService, OrderImportService): the
upload of an import's file, and the create, list, cancel and report steps each kind's servicer
names its messages around.

Create is a client stream: the spec first, then the file in parts. The whole upload is one
transaction (the import, its file's parts sealed as they arrive, its audit entry): a stream that
breaks before its end leaves nothing behind, and memory holds a part at a time whatever the
file's size. A retry with the same request id answers the first import.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from loyalty_kit.caller import confining_unit, current_caller
from loyalty_kit.errors import FieldViolation, InvalidArgument
from loyalty_kit.idempotency import validate_request_id
from loyalty_kit.pagination import next_token, read_page
from loyalty_kit.servicers import UnitOfWorkServicer

from loyalty_identity.bootstrap import Identity
from loyalty_identity.service_layer.commands import Operator
from loyalty_identity.service_layer.uow import IdentityUnitOfWork

PART_BYTES = 1024 * 1024  # the file is stored in parts of this size (the last one shorter)
Job = TypeVar("Job")
Spec = TypeVar("Spec")
Row = TypeVar("Row")
Outcome = TypeVar("Outcome")


class FileParts(Protocol):
    async def add_part(self, import_id: str, seq: int, content: bytes) -> None: ...


class Upload:
    """The file as it streams in: counted, hashed and stored part by part."""

    def __init__(self, store: FileParts, import_id: str, max_bytes: int) -> None:
        self.store, self.import_id, self.max_bytes = store, import_id, max_bytes
        self.size, self.parts = 0, 0
        self.digest = hashlib.sha256()
        self._buffer = bytearray()

    async def add(self, content: bytes) -> None:
        self.size += len(content)
        if self.size > self.max_bytes:
            raise InvalidArgument(
                f"the file is larger than {self.max_bytes} bytes, the most an import takes",
                reason="FILE_TOO_LARGE",
                metadata={"max_file_bytes": str(self.max_bytes)},
                field_violations=[FieldViolation("content", f"at most {self.max_bytes} bytes")],
            )
        self.digest.update(content)
        self._buffer += content
        while len(self._buffer) >= PART_BYTES:
            await self._store(bytes(self._buffer[:PART_BYTES]))
            del self._buffer[:PART_BYTES]

    async def close(self) -> None:
        if self._buffer:
            await self._store(bytes(self._buffer))
            self._buffer.clear()
        if self.size == 0:
            raise InvalidArgument.of([FieldViolation("content", "the file is empty")])

    async def _store(self, part: bytes) -> None:
        await self.store.add_part(self.import_id, self.parts, part)
        self.parts += 1


def operator() -> Operator:
    caller = current_caller()
    return Operator(unit=caller.unit, client_id=caller.client_id)


Create = Callable[
    [IdentityUnitOfWork, Spec, Operator, str, str, datetime], Awaitable[tuple[Job, bool]]
]
Uploaded = Callable[[IdentityUnitOfWork, Job, int, str, datetime], Awaitable[Job]]


class ImportServicer(UnitOfWorkServicer[IdentityUnitOfWork]):
    """A kind's servicer: its RPCs convert their messages and call these steps."""

    def __init__(self, app: Identity) -> None:
        super().__init__(app.uow, app.clock)
        self.app = app

    async def _create(
        self,
        request_iterator: AsyncIterator[Any],  # a kind's Create...Request messages
        spec_from: Callable[[Any], Spec],
        create: Create[Spec, Job],
        store: Callable[[IdentityUnitOfWork], FileParts],
        uploaded: Uploaded[Job],
    ) -> tuple[Job, datetime, bool]:
        """The import the stream creates (or the first one, for a retry: `fresh` False), and
        the time it was answered at."""
        messages = aiter(request_iterator)
        first = await anext(messages, None)
        if first is None or not first.HasField("spec"):
            raise InvalidArgument.of(
                [FieldViolation("spec", "required in the first message, with the request id")]
            )
        validate_request_id(first.request_id)
        spec = spec_from(first.spec)
        now = self.clock()
        async with self.uow() as uow:
            job, fresh = await create(
                uow, spec, operator(), first.request_id, self._fingerprint(first), now
            )
            if not fresh:  # a retry: the first import, nothing stored again
                return job, now, False
            upload = Upload(store(uow), _import_id(job), self.app.import_settings.max_file_bytes)
            await upload.add(first.content)
            async for message in messages:
                if message.HasField("spec") or message.request_id:
                    raise InvalidArgument.of(
                        [FieldViolation("spec", "only the first message names the spec")]
                    )
                await upload.add(message.content)
            await upload.close()
            job = await uploaded(uow, job, upload.size, upload.digest.hexdigest(), now)
            await uow.commit()
        return job, now, True

    def _fingerprint(self, first: Any) -> str:
        """Of what the first message asks (the spec): a retry must ask the same. Keyed, as
        the kit's request fingerprints of requests that may hold personal data are."""
        body = first.spec.SerializeToString(deterministic=True)
        return hmac.new(self.app.keyring.index_key, body, hashlib.sha256).hexdigest()

    async def _get(
        self,
        import_id: str,
        get: Callable[[IdentityUnitOfWork, str, str | None], Awaitable[Job]],
    ) -> tuple[Job, datetime]:
        confined = confining_unit()
        job = await self._read(lambda uow: get(uow, import_id, confined))
        return job, self.clock()

    async def _listed(
        self,
        requested_unit: str,
        page_size: int,
        page_token: str,
        listed: Callable[
            [IdentityUnitOfWork, str | None, tuple[str, str] | None, int],
            Awaitable[tuple[list[Job], tuple[str, str] | None]],
        ],
    ) -> tuple[list[Job], str]:
        """A page of imports (a unit's importer sees its own unit's) and the next page's token
        ("" at the end)."""
        unit = confining_unit() or requested_unit.strip() or None
        filters = {"unit": unit or ""}
        page = read_page(page_size, page_token, filters, default=50, maximum=500)
        after = (page.after[0], page.after[1]) if page.after else None
        found, position = await self._read(lambda uow: listed(uow, unit, after, page.size))
        return found, (next_token(list(position), filters) if position is not None else "")

    async def _cancel(
        self,
        import_id: str,
        cancel: Callable[[IdentityUnitOfWork, str, Operator, str | None, datetime], Awaitable[Job]],
    ) -> tuple[Job, datetime]:
        confined, by = confining_unit(), operator()
        now = self.clock()
        async with self.uow() as uow:
            job = await cancel(uow, import_id, by, confined, now)
            await uow.commit()
        return job, now

    async def _rows(
        self,
        import_id: str,
        outcome: Outcome | None,
        outcome_name: str,
        page_size: int,
        page_token: str,
        report: Callable[
            [IdentityUnitOfWork, str, str | None, Outcome | None, int, int],
            Awaitable[tuple[Sequence[Row], int | None]],
        ],
    ) -> tuple[Sequence[Row], str]:
        """A page of an import's report and the next page's token ("" at the end)."""
        filters = {"parent": import_id, "outcome": outcome_name}
        page = read_page(page_size, page_token, filters, default=100, maximum=1000)
        confined = confining_unit()
        rows, after = await self._read(
            lambda uow: report(uow, import_id, confined, outcome, page.after or 0, page.size)
        )
        return rows, (next_token(after, filters) if after is not None else "")


def _import_id(job: Any) -> str:
    return str(job.import_id)
