"""Dynamic segments in tests: members' figures written as insights' refresh writes them (each
test's members marked by a tag only they carry), rules built in the contract's words, and the
SegmentService called as the group's marketing team."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import grpc
from loyalty.insights.v1 import segments_pb2 as pb
from loyalty.insights.v1.segments_pb2_grpc import SegmentServiceStub
from loyalty_kit.caller import Caller
from loyalty_kit.server import RunningService
from sqlalchemy import text

from tests.support.clients import As
from tests.support.clock import Clock

GROUP_MARKETING = Caller(
    unit="group",
    client_id="group-marketing",
    scopes=frozenset({"insights:group", "segments:write"}),
)


def unit_marketing(unit: str, *scopes: str) -> Caller:
    return Caller(unit=unit, client_id=f"{unit}-marketing", scopes=frozenset(scopes))


class Figures:
    """member_figures rows of this test's members (tagged with the test's own tag)."""

    def __init__(self, service: RunningService, clock: Clock) -> None:
        self.database = service.context.database
        self.clock = clock
        self.tag = f"test:{uuid.uuid4().hex[:12]}"

    async def put(self, **figures: Any) -> str:
        """A member with these figures (now); its ID."""
        member_id = figures.pop("member_id", None) or str(uuid.uuid4())
        row = {
            "tier": None,
            "units": [],
            "units_12m": [],
            "visits_12m": 0,
            "spend_12m": Decimal(0),
            "last_active_at": None,
            "offers_consent": True,
            **figures,
        }
        row["tags"] = [self.tag, *row.get("tags", [])]
        columns = ", ".join(row)
        async with self.database() as session:
            await session.execute(
                text(
                    f"INSERT INTO member_figures (member_id, updated_at, {columns}) "
                    f"VALUES (:member_id, now(), {', '.join(':' + c for c in row)}) "
                    "ON CONFLICT (member_id) DO UPDATE SET updated_at = now(), "
                    + ", ".join(f"{c} = excluded.{c}" for c in row)
                ),
                dict(row, member_id=member_id),
            )
            await session.commit()
        return member_id

    async def change(self, member_id: str, **figures: Any) -> None:
        """A recompute of the member's figures (updated_at moves on)."""
        sets = ", ".join(f"{c} = :{c}" for c in figures)
        async with self.database() as session:
            await session.execute(
                text(f"UPDATE member_figures SET updated_at = now(), {sets} WHERE member_id = :m"),
                dict(figures, m=member_id),
            )
            await session.commit()

    def mine(self, *rules: pb.SegmentRule) -> pb.SegmentRule:
        """This test's members that meet every rule."""
        return all_of(condition("TAGS", "CONTAINS_ANY", values=[self.tag]), *rules)


def condition(field: str, operator: str, value: str = "", values: Any = ()) -> pb.SegmentRule:
    return pb.SegmentRule(
        condition=pb.Condition(
            field=pb.SegmentField.Value(f"SEGMENT_FIELD_{field}"),
            operator=pb.ConditionOperator.Value(f"CONDITION_OPERATOR_{operator}"),
            value=value,
            values=list(values),
        )
    )


def all_of(*rules: pb.SegmentRule) -> pb.SegmentRule:
    return pb.SegmentRule(all=pb.RuleAll(rules=list(rules)))


def any_of(*rules: pb.SegmentRule) -> pb.SegmentRule:
    return pb.SegmentRule(any=pb.RuleAny(rules=list(rules)))


def negated(rule: pb.SegmentRule) -> pb.SegmentRule:
    found = pb.SegmentRule()
    getattr(found, "not").CopyFrom(rule)
    return found


class Segments:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel

    def api(self, caller: Caller = GROUP_MARKETING) -> Any:
        return As(SegmentServiceStub, self.channel, caller)

    async def create(
        self, rule: pb.SegmentRule, targeting: bool = False, caller: Caller = GROUP_MARKETING
    ) -> pb.Segment:
        response = await self.api(caller).CreateSegment(
            pb.CreateSegmentRequest(
                segment=pb.Segment(display_name="test segment", rule=rule, targeting=targeting),
                request_id=uuid.uuid4().hex,
            )
        )
        segment: pb.Segment = response.segment
        return segment

    async def members(self, name: str, page_size: int = 0) -> list[str]:
        found: list[str] = []
        token = ""
        while True:
            page = await self.api().ListSegmentMembers(
                pb.ListSegmentMembersRequest(segment=name, page_size=page_size, page_token=token)
            )
            found += [m.removeprefix("members/") for m in page.members]
            token = page.next_page_token
            if not token:
                return found
