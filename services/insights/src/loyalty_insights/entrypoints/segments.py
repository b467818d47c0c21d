"""The SegmentService over gRPC: thin, proto -> use case -> proto. Who may touch a segment:
the group's team (`insights:group`, or an admin) every segment, a unit's team its own unit's
(entrypoints/access.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc
from loyalty.insights.v1 import segments_pb2 as pb
from loyalty.insights.v1.segments_pb2_grpc import SegmentServiceServicer
from loyalty_kit.caller import UnitMismatch, current_caller
from loyalty_kit.errors import FieldViolation, InvalidArgument
from loyalty_kit.kernel.units import GROUP
from loyalty_kit.pagination import next_token, read_page
from loyalty_kit.resources import member_id_of
from loyalty_kit.scopes import INSIGHTS_GROUP
from loyalty_kit.servicers import UnitOfWorkServicer
from loyalty_kit.timestamps import timestamp

from loyalty_insights.adapters.segments import StoredSegment
from loyalty_insights.bootstrap import Insights
from loyalty_insights.domain import segments as rules
from loyalty_insights.service_layer import segments
from loyalty_insights.service_layer.uow import InsightsUnitOfWork

SERVICE = "loyalty.insights.v1.SegmentService"
RESOURCE = "segments/"
UPDATABLE = frozenset({"display_name", "rule", "targeting"})


class SegmentServicer(UnitOfWorkServicer[InsightsUnitOfWork], SegmentServiceServicer):
    service = SERVICE

    def __init__(self, app: Insights) -> None:
        super().__init__(app.uow, app.clock)

    async def CreateSegment(
        self, request: pb.CreateSegmentRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateSegmentResponse:
        draft = draft_of(request.segment)
        unit = _owner_unit()

        async def work(uow: InsightsUnitOfWork, now: datetime) -> pb.CreateSegmentResponse:
            found = await segments.create(
                uow, draft, unit, now, validate_only=request.validate_only
            )
            return pb.CreateSegmentResponse(segment=segment_message(found))

        if request.validate_only:
            segments.check(draft, "segment")
            return await self._read(lambda uow: work(uow, self.clock()))
        return await self._mutate("CreateSegment", request, pb.CreateSegmentResponse, work)

    async def GetSegment(
        self, request: pb.GetSegmentRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetSegmentResponse:
        segment_id = segment_id_of(request.name, "name")
        found = await self._read(lambda uow: segments.get(uow, segment_id))
        _may_see(found)
        return pb.GetSegmentResponse(segment=segment_message(found))

    async def ListSegments(
        self, request: pb.ListSegmentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSegmentsResponse:
        unit = _confined_unit()
        filters = {"unit": unit}
        page = read_page(request.page_size, request.page_token, filters, default=50, maximum=200)
        after = _position(page.after)
        found = await self._read(lambda uow: uow.segments.page(unit, after, page.size + 1))
        more = len(found) > page.size
        found = found[: page.size]
        token = next_token(found[-1].segment_id, filters) if more and found else ""
        return pb.ListSegmentsResponse(
            segments=[segment_message(s) for s in found], next_page_token=token
        )

    async def UpdateSegment(
        self, request: pb.UpdateSegmentRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateSegmentResponse:
        segment_id = segment_id_of(request.segment.name, "segment.name")
        fields = _mask(request)
        draft = draft_of(request.segment)
        etag = request.segment.etag

        async def work(uow: InsightsUnitOfWork, now: datetime) -> pb.UpdateSegmentResponse:
            found = await segments.update(uow, segment_id, draft, fields, etag, now, _may_see)
            return pb.UpdateSegmentResponse(segment=segment_message(found))

        return await self._mutate("UpdateSegment", request, pb.UpdateSegmentResponse, work)

    async def DeleteSegment(
        self, request: pb.DeleteSegmentRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteSegmentResponse:
        segment_id = segment_id_of(request.name, "name")

        async def work(uow: InsightsUnitOfWork, now: datetime) -> pb.DeleteSegmentResponse:
            await segments.delete(uow, segment_id, request.etag, now, _may_see)
            return pb.DeleteSegmentResponse()

        return await self._mutate("DeleteSegment", request, pb.DeleteSegmentResponse, work)

    async def ListSegmentMembers(
        self, request: pb.ListSegmentMembersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSegmentMembersResponse:
        segment_id = segment_id_of(request.segment, "segment")
        filters = {"segment": segment_id}
        page = read_page(request.page_size, request.page_token, filters, default=500, maximum=1000)
        after = _position(page.after)

        async def work(uow: InsightsUnitOfWork) -> tuple[StoredSegment, list[str], int]:
            found = await segments.get(uow, segment_id)
            members = await uow.segments.members(segment_id, after, page.size + 1)
            total = await uow.segments.member_count(segment_id) if not after else 0
            return found, members, total

        found, members, total = await self._read(work)
        _may_see(found)
        more = len(members) > page.size
        members = members[: page.size]
        token = next_token(members[-1], filters) if more and members else ""
        return pb.ListSegmentMembersResponse(
            members=[f"members/{m}" for m in members], next_page_token=token, total_size=total
        )

    async def ListMemberSegments(
        self, request: pb.ListMemberSegmentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMemberSegmentsResponse:
        member_id = member_id_of(request.member, "member")
        unit = _confined_unit()  # a unit's team sees the member's segments of its own unit
        filters = {"member": member_id, "unit": unit}
        page = read_page(request.page_size, request.page_token, filters, default=50, maximum=200)
        after = _position(page.after)
        found = await self._read(
            lambda uow: segments.of_member(uow, member_id, unit, after, page.size + 1)
        )
        more = len(found) > page.size
        found = found[: page.size]
        token = next_token(found[-1].segment_id, filters) if more and found else ""
        return pb.ListMemberSegmentsResponse(
            segments=[segment_message(s) for s in found], next_page_token=token
        )


def _confined_unit() -> str | None:
    """The unit a caller is confined to (None: the group's team sees every segment)."""
    caller = current_caller()
    return None if caller.may(INSIGHTS_GROUP) else caller.unit


def _owner_unit() -> str:
    """The unit a new segment belongs to: the caller's, the group's for the group's team."""
    return _confined_unit() or GROUP


def _may_see(segment: StoredSegment) -> None:
    confined = _confined_unit()
    if confined is not None and confined != segment.unit:
        raise UnitMismatch(segment.unit, confined)


def _position(after: object) -> str:
    if after is not None and not isinstance(after, str):
        raise InvalidArgument.of([FieldViolation("page_token", "not a token this list gave")])
    return after or ""


def _mask(request: pb.UpdateSegmentRequest) -> frozenset[str]:
    paths = frozenset(request.update_mask.paths)
    if not paths:
        raise InvalidArgument.of([FieldViolation("update_mask", "name at least one field")])
    unknown = sorted(paths - UPDATABLE)
    if unknown:
        raise InvalidArgument.of(
            [
                FieldViolation("update_mask", f"{p!r} is not one of {', '.join(sorted(UPDATABLE))}")
                for p in unknown
            ]
        )
    return paths


def segment_id_of(name: str, field: str) -> str:
    segment_id = name.removeprefix(RESOURCE)
    if not name.startswith(RESOURCE) or not segment_id or "/" in segment_id:
        raise InvalidArgument.of([FieldViolation(field, "a segment name: segments/{segment_id}")])
    if len(segment_id) > 64:
        raise InvalidArgument.of([FieldViolation(field, "not a segment this service named")])
    return segment_id


def draft_of(message: pb.Segment) -> segments.Draft:
    return segments.Draft(message.display_name, rule_of(message.rule), message.targeting)


def _enum_name(enum: Any, number: int) -> str:
    """The name of an enum's number, "" for a number it does not name."""
    found = enum.DESCRIPTOR.values_by_number.get(number)
    return str(found.name) if found is not None else ""


def rule_of(message: pb.SegmentRule, depth: int = 0) -> rules.Rule:
    """The domain's rule of a message (unset parts stay unset, for the checks to name). Past
    the depth limit the rest is cut off, and the checks refuse it."""
    kind = message.WhichOneof("kind")
    if depth > rules.MAX_DEPTH + 1:
        return rules.Unset()
    if kind == "all":
        return rules.All(tuple(rule_of(r, depth + 1) for r in message.all.rules))
    if kind == "any":
        return rules.AnyOf(tuple(rule_of(r, depth + 1) for r in message.any.rules))
    if kind == "not":
        return rules.Not(rule_of(getattr(message, "not"), depth + 1))
    if kind == "condition":
        c = message.condition
        # A number the contract does not name is unset, for the checks to name.
        field_name = _enum_name(pb.SegmentField, c.field).removeprefix("SEGMENT_FIELD_")
        op_name = _enum_name(pb.ConditionOperator, c.operator).removeprefix("CONDITION_OPERATOR_")
        return rules.Condition(
            rules.SegmentField.__members__.get(field_name),
            rules.Operator.__members__.get(op_name),
            c.value,
            tuple(c.values),
        )
    return rules.Unset()


def rule_message(rule: rules.Rule) -> pb.SegmentRule:
    if isinstance(rule, rules.All):
        return pb.SegmentRule(all=pb.RuleAll(rules=[rule_message(r) for r in rule.rules]))
    if isinstance(rule, rules.AnyOf):
        return pb.SegmentRule(any=pb.RuleAny(rules=[rule_message(r) for r in rule.rules]))
    if isinstance(rule, rules.Not):
        negated = pb.SegmentRule()
        getattr(negated, "not").CopyFrom(rule_message(rule.rule))
        return negated
    if isinstance(rule, rules.Condition):
        assert rule.field is not None and rule.operator is not None
        return pb.SegmentRule(
            condition=pb.Condition(
                field=pb.SegmentField.Value(f"SEGMENT_FIELD_{rule.field.name}"),
                operator=pb.ConditionOperator.Value(f"CONDITION_OPERATOR_{rule.operator.name}"),
                value=rule.value,
                values=list(rule.values),
            )
        )
    return pb.SegmentRule()


def segment_message(segment: StoredSegment) -> pb.Segment:
    saved = bool(segment.segment_id)
    return pb.Segment(
        name=f"{RESOURCE}{segment.segment_id}" if saved else "",
        display_name=segment.display_name,
        rule=rule_message(segment.rule),
        targeting=segment.targeting,
        member_count=segment.member_count,
        state=pb.SEGMENT_STATE_ACTIVE if saved else pb.SEGMENT_STATE_UNSPECIFIED,
        unit=segment.unit,
        create_time=timestamp(segment.created_at) if saved else None,
        update_time=timestamp(segment.updated_at) if saved else None,
        etag=segments.etag_of(segment) if saved else "",
        evaluate_time=timestamp(segment.evaluated_at),
    )
