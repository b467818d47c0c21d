"""The MemberImportService over gRPC: request -> use case -> response (the upload and the
steps every kind of import shares: `import_servicing.py`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import grpc
from loyalty.identity.v1 import member_import_pb2 as pb
from loyalty.identity.v1.member_import_pb2_grpc import MemberImportServiceServicer
from loyalty_kit.caller import current_caller
from loyalty_kit.errors import FieldViolation, InvalidArgument
from loyalty_kit.pagination import next_token, read_page
from loyalty_kit.scopes import MEMBERS_MANAGE

from loyalty_identity.entrypoints import import_convert as convert
from loyalty_identity.entrypoints.import_servicing import ImportServicer
from loyalty_identity.entrypoints.import_servicing import operator as current_operator
from loyalty_identity.service_layer import imports
from loyalty_identity.service_layer.uow import IdentityUnitOfWork

SERVICE = "loyalty.identity.v1.MemberImportService"


class MemberImportServicer(ImportServicer, MemberImportServiceServicer):
    service = SERVICE

    async def CreateMemberImport(
        self,
        request_iterator: AsyncIterator[pb.CreateMemberImportRequest],
        context: grpc.aio.ServicerContext,
    ) -> pb.CreateMemberImportResponse:
        time_zone = self.app.import_settings.time_zone
        job, now, fresh = await self._create(
            request_iterator,
            convert.spec_from,
            lambda uow, spec, by, request_id, fingerprint, now: imports.create(
                uow, spec, by, request_id, fingerprint, now, time_zone
            ),
            lambda uow: uow.imports,
            imports.uploaded,
        )
        if fresh:
            self.app.imports_waiting()
        return pb.CreateMemberImportResponse(member_import=convert.import_message(job, now))

    async def GetMemberImport(
        self, request: pb.GetMemberImportRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMemberImportResponse:
        job, now = await self._get(convert.import_id_of(request.name), imports.get)
        return pb.GetMemberImportResponse(member_import=convert.import_message(job, now))

    async def ListMemberImports(
        self, request: pb.ListMemberImportsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMemberImportsResponse:
        found, token = await self._listed(
            request.unit, request.page_size, request.page_token, imports.listed
        )
        now = self.clock()
        return pb.ListMemberImportsResponse(
            member_imports=[convert.import_message(job, now) for job in found],
            next_page_token=token,
        )

    async def CancelMemberImport(
        self, request: pb.CancelMemberImportRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelMemberImportResponse:
        job, now = await self._cancel(convert.import_id_of(request.name), imports.cancel)
        return pb.CancelMemberImportResponse(member_import=convert.import_message(job, now))

    async def ListMemberImportRows(
        self, request: pb.ListMemberImportRowsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMemberImportRowsResponse:
        outcome = convert.outcome_from(request.outcome)
        rows, token = await self._rows(
            convert.import_id_of(request.parent, "parent"),
            outcome,
            outcome.value if outcome else "",
            request.page_size,
            request.page_token,
            imports.report,
        )
        return pb.ListMemberImportRowsResponse(
            rows=[convert.row_message(r) for r in rows], next_page_token=token
        )

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
        operator = current_operator()

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
        operator = current_operator()

        async def work(uow: IdentityUnitOfWork, now: datetime) -> pb.DismissMergeCandidateResponse:
            decided = await imports.dismiss(uow, candidate_id, operator, request.reason, now)
            return pb.DismissMergeCandidateResponse(
                merge_candidate=convert.candidate_message(decided)
            )

        return await self._mutate(
            "DismissMergeCandidate", request, pb.DismissMergeCandidateResponse, work
        )


def _reason(reason: str) -> None:
    if len(reason) > 512:
        raise InvalidArgument.of([FieldViolation("reason", "at most 512 characters")])
