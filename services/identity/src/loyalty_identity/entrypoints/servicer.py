"""The IdentityService over gRPC: request -> command -> handler -> response. Nothing else.

Mutations run through the kit's `run_idempotent` (claim request_id, work, store, commit). What
is stored for a retry is a receipt without personal data (the member's name and the flags);
the full answer is then read fresh, masked for the caller, so no personal data ever sits in
the idempotency table and an erased member's data cannot come back through a replay.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from loyalty.identity.v1 import identity_service_pb2 as pb
from loyalty.identity.v1 import member_pb2
from loyalty.identity.v1.identity_service_pb2_grpc import IdentityServiceServicer
from loyalty_kit.caller import current_caller
from loyalty_kit.errors import FieldViolation, InvalidArgument
from loyalty_kit.pagination import next_token, read_page
from loyalty_kit.resources import member_name
from loyalty_kit.servicers import UnitOfWorkServicer
from loyalty_kit.timestamps import timestamp

from loyalty_identity.bootstrap import Identity
from loyalty_identity.domain.member import Member
from loyalty_identity.domain.member_code import MEMBER_CODE_TYPE
from loyalty_identity.entrypoints import convert
from loyalty_identity.service_layer import handlers, member_codes
from loyalty_identity.service_layer.commands import Operator, Register
from loyalty_identity.service_layer.refusals import MEMBER_CODE, counting
from loyalty_identity.service_layer.uow import IdentityUnitOfWork

R = TypeVar("R", bound=Message)
SERVICE = "loyalty.identity.v1.IdentityService"


class IdentityServicer(UnitOfWorkServicer[IdentityUnitOfWork], IdentityServiceServicer):
    service = SERVICE

    def __init__(self, app: Identity) -> None:
        super().__init__(app.uow, app.clock)
        self.types = app.types
        self.guess_limits = app.guess_limits

    async def _change_member(
        self,
        method: str,
        request: Message,
        work: Callable[[IdentityUnitOfWork, datetime], Awaitable[Member]],
    ) -> Member:
        """Run a member-changing command once per request_id; the member as it is now."""

        async def receipt(uow: IdentityUnitOfWork, now: datetime) -> pb.GetMemberRequest:
            member = await work(uow, now)
            return pb.GetMemberRequest(name=f"{convert.RESOURCE}{member.member_id}")

        done = await self._mutate(method, request, pb.GetMemberRequest, receipt)
        member_id = done.name.removeprefix(convert.RESOURCE)
        return await self._read(lambda uow: handlers.get_member(uow, member_id))

    async def _member(self, member: Member) -> Any:
        kinds = {code: t.kind for code, t in (await self._types()).items()}
        return convert.member_message(
            member,
            personal_data=current_caller().sees_personal_data_of(member.member_id),
            kinds=kinds,
        )

    async def _types(self) -> Any:
        return self.types.get() or await self._read(lambda uow: uow.members.identity_types())

    # --- RPCs ---------------------------------------------------------------------------------
    async def RegisterMember(
        self, request: pb.RegisterMemberRequest, context: grpc.aio.ServicerContext
    ) -> pb.RegisterMemberResponse:
        command = Register(
            identities=[convert.raw_identity(i) for i in request.identities],
            unit=request.unit.strip(),
            channel=convert.channel_name(request.channel),
            profile=convert.profile_from(request.profile),
            consents=convert.consents_from(list(request.consents)),
        )

        async def work(uow: IdentityUnitOfWork, now: datetime) -> pb.RegisterMemberResponse:
            result = await handlers.register(uow, command, now)
            return pb.RegisterMemberResponse(
                member=member_pb2.Member(name=f"{convert.RESOURCE}{result.member.member_id}"),
                created=result.created,
                already_bound_types=result.already_bound_types,
            )

        receipt = await self._mutate("RegisterMember", request, pb.RegisterMemberResponse, work)
        member_id = receipt.member.name.removeprefix(convert.RESOURCE)
        member = await self._read(lambda uow: handlers.get_member(uow, member_id))
        receipt.member.CopyFrom(await self._member(member))
        return receipt

    async def GetMember(
        self, request: pb.GetMemberRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMemberResponse:
        member_id = convert.member_id_of(request.name, "name")
        member = await self._read(lambda uow: handlers.get_member(uow, member_id))
        return pb.GetMemberResponse(member=await self._member(member))

    async def ResolveMember(
        self, request: pb.ResolveMemberRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResolveMemberResponse:
        raw = convert.raw_identity(request.identity)
        if raw.type == MEMBER_CODE_TYPE:
            member = await self._resolve_member_code(raw.value)
        else:
            member = await self._read(lambda uow: handlers.resolve(uow, raw))
        return pb.ResolveMemberResponse(member=await self._member(member))

    async def _resolve_member_code(self, value: str) -> Member:
        """A scanned member code, used up by this call (committed before the answer); wrong
        codes counted for the calling client (and refusals in the service's metrics)."""
        now = self.clock()
        client = current_caller().client_id
        with counting(MEMBER_CODE):
            async with self.uow() as uow:
                member = await member_codes.resolve_member_code(
                    uow, value, now, client, self.guess_limits
                )
                await uow.commit()
        return member

    async def LinkIdentity(
        self, request: pb.LinkIdentityRequest, context: grpc.aio.ServicerContext
    ) -> pb.LinkIdentityResponse:
        member_id = convert.member_id_of(request.member, "member")
        raw = convert.raw_identity(request.identity)
        member = await self._change_member(
            "LinkIdentity", request, lambda uow, now: handlers.link(uow, member_id, raw, now)
        )
        return pb.LinkIdentityResponse(member=await self._member(member))

    async def UnlinkIdentity(
        self, request: pb.UnlinkIdentityRequest, context: grpc.aio.ServicerContext
    ) -> pb.UnlinkIdentityResponse:
        member_id = convert.member_id_of(request.member, "member")
        raw = convert.raw_identity(request.identity)
        member = await self._change_member(
            "UnlinkIdentity", request, lambda uow, _now: handlers.unlink(uow, member_id, raw)
        )
        return pb.UnlinkIdentityResponse(member=await self._member(member))

    async def MergeMembers(
        self, request: pb.MergeMembersRequest, context: grpc.aio.ServicerContext
    ) -> pb.MergeMembersResponse:
        survivor = convert.member_id_of(request.survivor, "survivor")
        absorbed = convert.member_id_of(request.absorbed, "absorbed")
        operator, reason = _operator(), request.reason
        member = await self._change_member(
            "MergeMembers",
            request,
            lambda uow, now: handlers.merge(uow, survivor, absorbed, now, operator, reason),
        )
        return pb.MergeMembersResponse(member=await self._member(member))

    async def UnmergeMembers(
        self, request: pb.UnmergeMembersRequest, context: grpc.aio.ServicerContext
    ) -> pb.UnmergeMembersResponse:
        survivor = convert.member_id_of(request.survivor, "survivor")
        restored = convert.member_id_of(request.restored, "restored")
        identities = [convert.raw_identity(i) for i in request.identities]
        operator = _operator()

        async def work(uow: IdentityUnitOfWork, now: datetime) -> pb.UnmergeMembersResponse:
            done = await handlers.unmerge(
                uow, survivor, restored, identities, request.reason, operator, now
            )
            # Only the names are kept for a retry: the members are read fresh, masked.
            return pb.UnmergeMembersResponse(
                restored=member_pb2.Member(name=f"{convert.RESOURCE}{done.restored.member_id}"),
                survivor=member_pb2.Member(name=f"{convert.RESOURCE}{done.survivor.member_id}"),
            )

        receipt = await self._mutate("UnmergeMembers", request, pb.UnmergeMembersResponse, work)
        ids = [m.name.removeprefix(convert.RESOURCE) for m in (receipt.restored, receipt.survivor)]
        members = await self._read(lambda uow: uow.members.get_many(ids))
        return pb.UnmergeMembersResponse(
            restored=await self._member(members[0]), survivor=await self._member(members[1])
        )

    async def UpdateProfile(
        self, request: pb.UpdateProfileRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateProfileResponse:
        member_id = convert.member_id_of(request.member, "member")
        profile = convert.profile_from(request.profile)
        paths = list(request.update_mask.paths)
        member = await self._change_member(
            "UpdateProfile",
            request,
            lambda uow, now: handlers.update_profile(uow, member_id, profile, paths, now),
        )
        return pb.UpdateProfileResponse(member=await self._member(member))

    async def SetConsents(
        self, request: pb.SetConsentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetConsentsResponse:
        member_id = convert.member_id_of(request.member, "member")
        changes = convert.consents_from(list(request.changes))
        source = request.source.strip()
        member = await self._change_member(
            "SetConsents",
            request,
            lambda uow, now: handlers.set_consents(uow, member_id, changes, source, now),
        )
        return pb.SetConsentsResponse(member=await self._member(member))

    async def ListConsentEvents(
        self, request: pb.ListConsentEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListConsentEventsResponse:
        member_id = convert.member_id_of(request.member, "member")
        filters = {"member": member_id}
        page = read_page(request.page_size, request.page_token, filters, default=50, maximum=500)
        events = await self._read(
            lambda uow: handlers.consent_history(uow, member_id, page.after, page.size + 1)
        )
        response = pb.ListConsentEventsResponse()
        for _, consent in events[: page.size]:
            response.consent_events.append(
                pb.ConsentEvent(
                    purpose=convert.purpose_value(consent.purpose),
                    granted=consent.granted,
                    source=consent.source,
                    event_time=timestamp(consent.changed_at),
                )
            )
        if len(events) > page.size:
            response.next_page_token = next_token(events[page.size - 1][0], filters)
        return response

    async def SuspendMember(
        self, request: pb.SuspendMemberRequest, context: grpc.aio.ServicerContext
    ) -> pb.SuspendMemberResponse:
        member_id = convert.member_id_of(request.name, "name")
        member = await self._change_member(
            "SuspendMember",
            request,
            lambda uow, now: handlers.suspend(uow, member_id, request.reason, now),
        )
        return pb.SuspendMemberResponse(member=await self._member(member))

    async def ReactivateMember(
        self, request: pb.ReactivateMemberRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReactivateMemberResponse:
        member_id = convert.member_id_of(request.name, "name")
        member = await self._change_member(
            "ReactivateMember",
            request,
            lambda uow, now: handlers.reactivate(uow, member_id, request.reason, now),
        )
        return pb.ReactivateMemberResponse(member=await self._member(member))

    async def UpdateTags(
        self, request: pb.UpdateTagsRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateTagsResponse:
        member_id = convert.member_id_of(request.member, "member")
        add, remove = list(request.add_tags), list(request.remove_tags)
        member = await self._change_member(
            "UpdateTags",
            request,
            lambda uow, now: handlers.update_tags(uow, member_id, add, remove, now),
        )
        return pb.UpdateTagsResponse(member=await self._member(member))

    async def ListMembers(
        self, request: pb.ListMembersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMembersResponse:
        tag = request.tag.strip()
        filters = {"tag": tag}
        page = read_page(request.page_size, request.page_token, filters, default=100, maximum=1000)
        if request.view not in pb.MemberView.values():
            raise InvalidArgument.of([FieldViolation("view", "BASIC or FULL")])
        response = pb.ListMembersResponse()
        if request.view == pb.MEMBER_VIEW_BASIC:  # ids only: no member is read or unsealed
            ids, after, total = await self._read(
                lambda uow: handlers.list_member_ids(uow, tag, page.after, page.size)
            )
            response.members.extend(
                member_pb2.Member(name=member_name(i), member_id=i) for i in ids
            )
        else:
            members, after, total = await self._read(
                lambda uow: handlers.list_members(uow, tag, page.after, page.size)
            )
            for member in members:
                response.members.append(await self._member(member))
        response.total_size = total
        if after is not None:
            response.next_page_token = next_token(after, filters)
        return response

    async def EraseMember(
        self, request: pb.EraseMemberRequest, context: grpc.aio.ServicerContext
    ) -> pb.EraseMemberResponse:
        member_id = convert.member_id_of(request.name, "name")
        member = await self._change_member(
            "EraseMember", request, lambda uow, now: handlers.erase(uow, member_id, now)
        )
        return pb.EraseMemberResponse(member=await self._member(member))

    async def ExportMemberData(
        self, request: pb.ExportMemberDataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExportMemberDataResponse:
        member_id = convert.member_id_of(request.name, "name")
        document = await self._read(lambda uow: handlers.export(uow, member_id))
        return pb.ExportMemberDataResponse(json=document, export_time=timestamp(self.clock()))

    async def ListIdentityTypes(
        self, request: pb.ListIdentityTypesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListIdentityTypesResponse:
        page = read_page(request.page_size, request.page_token, {}, default=1000, maximum=1000)
        types = sorted((await self._types()).values(), key=lambda t: t.code)
        after = page.after or ""
        chosen = [t for t in types if t.code > after]
        response = pb.ListIdentityTypesResponse(
            identity_types=[convert.identity_type_message(t) for t in chosen[: page.size]]
        )
        if len(chosen) > page.size:
            response.next_page_token = next_token(chosen[page.size - 1].code, {})
        return response

    async def UpsertIdentityType(
        self, request: pb.UpsertIdentityTypeRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpsertIdentityTypeResponse:
        identity_type = convert.identity_type_from(request.identity_type)
        async with self.uow() as uow:
            stored = await handlers.upsert_identity_type(uow, identity_type)
            await uow.commit()
        return pb.UpsertIdentityTypeResponse(identity_type=convert.identity_type_message(stored))


def _operator() -> Operator:
    caller = current_caller()
    return Operator(unit=caller.unit, client_id=caller.client_id)
