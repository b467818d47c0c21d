"""The identity service's imports as `loyalty-admin` calls them, with the admin's metadata.

The upload streams the file in parts of at most 1 MiB (never the whole file in memory) behind
the spec; it may take as long as the file takes to send, so it has a deadline of its own. Every
other call is an ordinary one. Lists are read to the end, a page at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message
from loyalty.identity.v1 import member_import_pb2 as import_pb
from loyalty.identity.v1 import member_import_pb2_grpc
from loyalty_kit.channels import channel
from loyalty_kit.settings import Settings

from loyalty_admin.imports.kinds import PART_BYTES, Kind, Resource
from loyalty_admin.live import admin_metadata

# An upload ends when the file is stored; a slow link to a big file takes a while.
UPLOAD_DEADLINE_SECONDS = 3600.0
CALL_DEADLINE_SECONDS = 30.0
PAGE_SIZE = 500


async def file_parts(
    path: Path, sent: Callable[[int], None], part_bytes: int = PART_BYTES
) -> AsyncIterator[bytes]:
    """The file a part at a time, read off the event loop; `sent(n)` after each part."""
    with path.open("rb") as file:
        while part := await asyncio.to_thread(file.read, part_bytes):
            yield part
            sent(len(part))


class Imports:
    """Stubs of the imports' services on one channel to the identity service."""

    def __init__(self, settings: Settings, channel_: grpc.aio.Channel) -> None:
        self.metadata = admin_metadata(settings)
        self.channel = channel_
        self.candidates = member_import_pb2_grpc.MemberImportServiceStub(channel_)

    async def _call(self, kind: Kind, method: str, request: Message) -> Any:
        rpc = getattr(kind.stub(self.channel), method.format(kind.resource))
        return await rpc(request, metadata=self.metadata, timeout=CALL_DEADLINE_SECONDS)

    async def create(
        self,
        kind: Kind,
        spec: Message,
        request_id: str,
        parts: AsyncIterator[bytes],
    ) -> Resource:
        """Upload the file: the spec first, then its parts; the import as created."""
        request = kind.message("Create{}Request")

        async def messages() -> AsyncIterator[Message]:
            yield request(request_id=request_id, spec=spec)
            async for part in parts:
                yield request(content=part)

        rpc = getattr(kind.stub(self.channel), f"Create{kind.resource}")
        response = await rpc(messages(), metadata=self.metadata, timeout=UPLOAD_DEADLINE_SECONDS)
        return getattr(response, kind.field)

    async def get(self, kind: Kind, name: str) -> Resource:
        response = await self._call(kind, "Get{}", kind.message("Get{}Request")(name=name))
        return getattr(response, kind.field)

    async def cancel(self, kind: Kind, name: str) -> Resource:
        response = await self._call(kind, "Cancel{}", kind.message("Cancel{}Request")(name=name))
        return getattr(response, kind.field)

    async def list(self, kind: Kind, unit: str = "") -> AsyncIterator[Resource]:
        request = kind.message("List{}sRequest")
        token = ""
        while True:
            page = await self._call(
                kind, "List{}s", request(unit=unit, page_size=PAGE_SIZE, page_token=token)
            )
            for found in getattr(page, f"{kind.field}s"):
                yield found
            token = page.next_page_token
            if not token:
                return

    async def rows(self, kind: Kind, name: str, outcome: int = 0) -> AsyncIterator[Message]:
        request = kind.message("List{}RowsRequest")
        token = ""
        while True:
            page = await self._call(
                kind,
                "List{}Rows",
                request(parent=name, outcome=outcome, page_size=1000, page_token=token),
            )
            for row in page.rows:
                yield row
            token = page.next_page_token
            if not token:
                return

    async def merge_candidates(
        self, member_import: str = "", state: int = 0
    ) -> AsyncIterator[import_pb.MergeCandidate]:
        token = ""
        while True:
            page = await self.candidates.ListMergeCandidates(
                import_pb.ListMergeCandidatesRequest(
                    member_import=member_import,
                    state=state,  # type: ignore[arg-type]
                    page_size=PAGE_SIZE,
                    page_token=token,
                ),
                metadata=self.metadata,
                timeout=CALL_DEADLINE_SECONDS,
            )
            for candidate in page.merge_candidates:
                yield candidate
            token = page.next_page_token
            if not token:
                return

    async def resolve(
        self, request: import_pb.ResolveMergeCandidateRequest
    ) -> import_pb.MergeCandidate:
        answer = await self.candidates.ResolveMergeCandidate(
            request, metadata=self.metadata, timeout=CALL_DEADLINE_SECONDS
        )
        candidate: import_pb.MergeCandidate = answer.merge_candidate
        return candidate

    async def dismiss(
        self, request: import_pb.DismissMergeCandidateRequest
    ) -> import_pb.MergeCandidate:
        answer = await self.candidates.DismissMergeCandidate(
            request, metadata=self.metadata, timeout=CALL_DEADLINE_SECONDS
        )
        candidate: import_pb.MergeCandidate = answer.merge_candidate
        return candidate


@contextlib.asynccontextmanager
async def connected(settings: Settings) -> AsyncIterator[Imports]:
    """The identity service's imports (the channel allows the upload's long deadline)."""
    ch = channel(
        settings.target_of("identity"),
        default_deadline=CALL_DEADLINE_SECONDS,
        max_deadline=UPLOAD_DEADLINE_SECONDS,
    )
    try:
        yield Imports(settings, ch)
    finally:
        await ch.close()
