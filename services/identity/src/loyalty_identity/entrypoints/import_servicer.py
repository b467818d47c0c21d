"""The MemberImportService over gRPC: request -> use case -> response.

CreateMemberImport is a client stream: the spec first, then the file in parts. The whole upload
is one transaction (the import, its file's parts sealed as they arrive, its audit entry): a
stream that breaks before its end leaves nothing behind, and memory holds a part at a time
whatever the file's size. A retry with the same request id answers the first import.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from datetime import datetime

import grpc
from loyalty.identity.v1 import member_import_pb2 as pb
from loyalty.identity.v1.member_import_pb2_grpc import MemberImportServiceServicer
from loyalty_kit.caller import confining_unit, current_caller
from loyalty_kit.errors import FieldViolation, InvalidArgument
from loyalty_kit.idempotency import validate_request_id
from loyalty_kit.pagination import next_token, read_page
from loyalty_kit.scopes import MEMBERS_MANAGE
from loyalty_kit.servicers import UnitOfWorkServicer

from loyalty_identity.bootstrap import Identity
from loyalty_identity.entrypoints import import_convert as convert
from loyalty_identity.service_layer import imports
from loyalty_identity.service_layer.commands import Operator
from loyalty_identity.service_layer.ports import ImportWork
from loyalty_identity.service_layer.uow import IdentityUnitOfWork

SERVICE = "loyalty.identity.v1.MemberImportService"
PART_BYTES = 1024 * 1024  # the file is stored in parts of this size (the last one shorter)


class Upload:
    """The file as it streams in: counted, hashed and stored part by part."""

    def __init__(self, work: ImportWork, import_id: str, max_bytes: int) -> None:
        self.work, self.import_id, self.max_bytes = work, import_id, max_bytes
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
        await self.work.imports.add_part(self.import_id, self.parts, part)
        self.parts += 1


class MemberImportServicer(UnitOfWorkServicer[IdentityUnitOfWork], MemberImportServiceServicer):
    service = SERVICE

    def __init__(self, app: Identity) -> None:
        super().__init__(app.uow, app.clock)
        self.app = app

    async def CreateMemberImport(
        self,
        request_iterator: AsyncIterator[pb.CreateMemberImportRequest],
        context: grpc.aio.ServicerContext,
    ) -> pb.CreateMemberImportResponse:
        messages = aiter(request_iterator)
        first = await anext(messages, None)
        if first is None or not first.HasField("spec"):
            raise InvalidArgument.of(
                [FieldViolation("spec", "required in the first message, with the request id")]
            )
        validate_request_id(first.request_id)
        spec = convert.spec_from(first.spec)
        settings = self.app.import_settings
        now = self.clock()
        async with self.uow() as uow:
            job, fresh = await imports.create(
                uow,
                spec,
                _operator(),
                first.request_id,
                self._fingerprint(first),
                now,
                settings.time_zone,
            )
            if not fresh:  # a retry: the first import, nothing stored again
                return pb.CreateMemberImportResponse(member_import=convert.import_message(job, now))
            upload = Upload(uow, job.import_id, settings.max_file_bytes)
            await upload.add(first.content)
            async for message in messages:
                if message.HasField("spec") or message.request_id:
                    raise InvalidArgument.of(
                        [FieldViolation("spec", "only the first message names the spec")]
                    )
                await upload.add(message.content)
            await upload.close()
            job = await imports.uploaded(uow, job, upload.size, upload.digest.hexdigest(), now)
            await uow.commit()
        self.app.imports_waiting()
        return pb.CreateMemberImportResponse(member_import=convert.import_message(job, now))

    def _fingerprint(self, first: pb.CreateMemberImportRequest) -> str:
        """Of what the first message asks (the spec): a retry must ask the same. Keyed, as
        the kit's request fingerprints of requests that may hold personal data are."""
        body = first.spec.SerializeToString(deterministic=True)
        return hmac.new(self.app.keyring.index_key, body, hashlib.sha256).hexdigest()

    async def GetMemberImport(
        self, request: pb.GetMemberImportRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMemberImportResponse:
        import_id = convert.import_id_of(request.name)
        confined = confining_unit()
        job = await self._read(lambda uow: imports.get(uow, import_id, confined))
        return pb.GetMemberImportResponse(member_import=convert.import_message(job, self.clock()))

    async def ListMemberImports(
        self, request: pb.ListMemberImportsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMemberImportsResponse:
        unit = confining_unit() or request.unit.strip() or None
        filters = {"unit": unit or ""}
        page = read_page(request.page_size, request.page_token, filters, default=50, maximum=500)
        after = tuple(page.after) if page.after else None
        found, position = await self._read(
            lambda uow: imports.listed(uow, unit, after, page.size)  # type: ignore[arg-type]
        )
        now = self.clock()
        response = pb.ListMemberImportsResponse(
            member_imports=[convert.import_message(job, now) for job in found]
        )
        if position is not None:
            response.next_page_token = next_token(list(position), filters)
        return response

    async def CancelMemberImport(
        self, request: pb.CancelMemberImportRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelMemberImportResponse:
        import_id = convert.import_id_of(request.name)
        confined, operator = confining_unit(), _operator()
        now = self.clock()
        async with self.uow() as uow:
            job = await imports.cancel(uow, import_id, operator, confined, now)
            await uow.commit()
        return pb.CancelMemberImportResponse(member_import=convert.import_message(job, now))

    async def ListMemberImportRows(
        self, request: pb.ListMemberImportRowsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMemberImportRowsResponse:
        import_id = convert.import_id_of(request.parent, "parent")
        outcome = convert.outcome_from(request.outcome)
        filters = {"parent": import_id, "outcome": outcome.value if outcome else ""}
        page = read_page(request.page_size, request.page_token, filters, default=100, maximum=1000)
        confined = confining_unit()
        rows, after = await self._read(
            lambda uow: imports.report(
                uow, import_id, confined, outcome, page.after or 0, page.size
            )
        )
        response = pb.ListMemberImportRowsResponse(rows=[convert.row_message(r) for r in rows])
        if after is not None:
            response.next_page_token = next_token(after, filters)
        return response

    async def ListMergeCandidates(
        self, request: pb.ListMergeCandidatesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMergeCandidatesResponse:
        import_id = (
            convert.import_id_of(request.member_import, "member_import")
            if request.member_import
            else None
        )
        state = convert.candidate_state_from(request.state)
        # The group's member operators see every unit's; a unit's importer its own unit's.
        caller = current_caller()
        confined = None if caller.may(MEMBERS_MANAGE) else caller.unit
        filters = {"import": import_id or "", "state": state.value if state else ""}
        page = read_page(request.page_size, request.page_token, filters, default=50, maximum=500)
        after = tuple(page.after) if page.after else None
        found, position = await self._read(
            lambda uow: imports.candidates(
                uow,
                import_id,
                state,
                confined,
                after,
                page.size,  # type: ignore[arg-type]
            )
        )
        response = pb.ListMergeCandidatesResponse(
            merge_candidates=[convert.candidate_message(c) for c in found]
        )
        if position is not None:
            response.next_page_token = next_token(list(position), filters)
        return response

    async def ResolveMergeCandidate(
        self, request: pb.ResolveMergeCandidateRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResolveMergeCandidateResponse:
        candidate_id = convert.candidate_id_of(request.name)
        survivor = convert.member_id_of(request.survivor_member_id, "survivor_member_id")
        _reason(request.reason)
        operator = _operator()

        async def work(uow: IdentityUnitOfWork, now: datetime) -> pb.ResolveMergeCandidateResponse:
            decided = await imports.resolve(
                uow, candidate_id, survivor, request.merge, operator, request.reason, now
            )
            return pb.ResolveMergeCandidateResponse(
                merge_candidate=convert.candidate_message(decided)
            )

        return await self._mutate(
            "ResolveMergeCandidate", request, pb.ResolveMergeCandidateResponse, work
        )

    async def DismissMergeCandidate(
        self, request: pb.DismissMergeCandidateRequest, context: grpc.aio.ServicerContext
    ) -> pb.DismissMergeCandidateResponse:
        candidate_id = convert.candidate_id_of(request.name)
        _reason(request.reason)
        operator = _operator()

        async def work(uow: IdentityUnitOfWork, now: datetime) -> pb.DismissMergeCandidateResponse:
            decided = await imports.dismiss(uow, candidate_id, operator, request.reason, now)
            return pb.DismissMergeCandidateResponse(
                merge_candidate=convert.candidate_message(decided)
            )

        return await self._mutate(
            "DismissMergeCandidate", request, pb.DismissMergeCandidateResponse, work
        )


def _operator() -> Operator:
    caller = current_caller()
    return Operator(unit=caller.unit, client_id=caller.client_id)


def _reason(reason: str) -> None:
    if len(reason) > 512:
        raise InvalidArgument.of([FieldViolation("reason", "at most 512 characters")])
