"""Tags as facts: a member's tags changed at the identity service reach insights'
`member_figures.tags` over the bus (MemberTagsChanged), a merge gives the survivor the absorbed
member's tags, an import's tags are added to a member's, and an erased member's row is not made
again by a later tag event."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from loyalty.identity.v1 import events_pb2 as identity_events
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.insights.v1 import insights_service_pb2 as pb
from loyalty_insights.bootstrap import Insights
from loyalty_insights.entrypoints.consumers import member_tags_changed, members_imported
from loyalty_kit.db import driver_connection
from loyalty_kit.server import RunningService
from loyalty_kit.timestamps import timestamp

from tests.insights.conftest import Member, Suite, until

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def tags_of(service: RunningService, member: Member | str) -> list[str] | None:
    member_id = member.id if isinstance(member, Member) else member
    async with service.context.uow() as uow:
        conn = await driver_connection(uow.session)
        found = await conn.fetchval(
            "SELECT tags FROM member_figures WHERE member_id = $1", member_id
        )
    return list(found) if found is not None else None


async def tag(suite: Suite, member: Member, add: list[str], remove: Sequence[str] = ()) -> Any:
    return await suite.identity().UpdateTags(
        identity_pb.UpdateTagsRequest(
            member=member.name,
            request_id=uuid.uuid4().hex,
            add_tags=add,
            remove_tags=list(remove),
        )
    )


async def test_a_tag_change_at_identity_reaches_the_members_figures(
    suite: Suite, insights_service: RunningService
) -> None:
    member = await suite.member("hotel")
    await tag(suite, member, ["bu:hotel-active", "vip:gold-guest"])
    found = await until(
        lambda: tags_of(insights_service, member),
        lambda t: t == ["bu:hotel-active", "vip:gold-guest"],
    )
    assert found == ["bu:hotel-active", "vip:gold-guest"]

    await tag(suite, member, ["campaign:spring"], ["vip:gold-guest"])
    found = await until(
        lambda: tags_of(insights_service, member),
        lambda t: t == ["bu:hotel-active", "campaign:spring"],
    )
    assert found == ["bu:hotel-active", "campaign:spring"]


async def test_a_merge_gives_the_survivor_the_absorbed_members_tags(
    suite: Suite, insights_service: RunningService
) -> None:
    survivor, absorbed = await suite.member("mall"), await suite.member("cinema")
    await tag(suite, survivor, ["bu:mall-active"])
    await tag(suite, absorbed, ["bu:cinema-active", "bu:mall-active"])
    await until(
        lambda: tags_of(insights_service, absorbed), lambda t: t is not None and len(t) == 2
    )
    await suite.identity().MergeMembers(
        identity_pb.MergeMembersRequest(
            survivor=survivor.name, absorbed=absorbed.name, request_id=uuid.uuid4().hex
        )
    )
    found = await until(
        lambda: tags_of(insights_service, survivor),
        lambda t: t == ["bu:cinema-active", "bu:mall-active"],
    )
    assert found == ["bu:cinema-active", "bu:mall-active"]


async def test_an_erased_member_gets_no_row_back_from_a_late_tag_event(
    suite: Suite, insights_service: RunningService
) -> None:
    member = await suite.member("mall")
    await suite.identity().EraseMember(
        identity_pb.EraseMemberRequest(name=member.name, request_id=uuid.uuid4().hex)
    )

    async def erased() -> bool:
        async with insights_service.context.uow() as uow:
            conn = await driver_connection(uow.session)
            return bool(
                await conn.fetchval("SELECT 1 FROM erased_members WHERE member_id = $1", member.id)
            )

    assert await until(erased, bool)
    app: Insights = insights_service.root
    late = identity_events.MemberTagsChanged(
        member_id=member.id, tags=["bu:mall-active"], added_tags=["bu:mall-active"]
    )
    late.occurred_at.CopyFrom(timestamp(suite.clock()))
    async with app.uow() as uow:
        await member_tags_changed(app, uow, late)
        await uow.commit()
    assert await tags_of(insights_service, member) is None


async def test_the_tags_an_import_put_on_members_are_added_to_theirs(
    suite: Suite, insights_service: RunningService
) -> None:
    member = await suite.member("mall")
    await tag(suite, member, ["bu:mall-active"])
    await until(lambda: tags_of(insights_service, member), lambda t: t == ["bu:mall-active"])
    newcomer = f"imported-{uuid.uuid4().hex[:12]}"
    chunk = identity_events.MembersImported(
        member_import="memberImports/tags-test",
        unit="mall",
        members=[
            identity_events.ImportedMember(
                member_id=member.id, created=False, tags=["legacy:gold", "bu:mall-active"]
            ),
            identity_events.ImportedMember(member_id=newcomer, created=True, tags=["legacy:vip"]),
            identity_events.ImportedMember(member_id=f"{newcomer}-plain", created=True),
        ],
    )
    chunk.imported_at.CopyFrom(timestamp(suite.clock()))
    app: Insights = insights_service.root
    async with app.uow() as uow:
        await members_imported(app, uow, chunk)
        await uow.commit()
    assert await tags_of(insights_service, member) == ["bu:mall-active", "legacy:gold"]
    assert await tags_of(insights_service, newcomer) == ["legacy:vip"]


async def test_a_full_refresh_keeps_the_tags_of_a_member_it_knows_nothing_else_of(
    suite: Suite, insights_service: RunningService
) -> None:
    """A member whose only fact is its tags (registered before insights consumed identity's
    events, never active since) has no row in the refresh's figures: its row stays, tags and
    all; an erased one's goes."""
    app: Insights = insights_service.root
    kept, erased = f"tags-only-{uuid.uuid4().hex[:12]}", f"tags-only-{uuid.uuid4().hex[:12]}"
    for member_id in (kept, erased):
        event = identity_events.MemberTagsChanged(
            member_id=member_id, tags=["bu:cinema-active"], added_tags=["bu:cinema-active"]
        )
        event.occurred_at.CopyFrom(timestamp(suite.clock()))
        async with app.uow() as uow:
            await member_tags_changed(app, uow, event)
            await uow.commit()
    async with app.uow() as uow:
        conn = await driver_connection(uow.session)
        await conn.execute(
            "INSERT INTO erased_members (member_id, erased_at) VALUES ($1, now())", erased
        )
        await uow.commit()
    assert await tags_of(insights_service, kept) == ["bu:cinema-active"]

    await suite.insights().RefreshFigures(pb.RefreshFiguresRequest(request_id=uuid.uuid4().hex))

    assert await tags_of(insights_service, kept) == ["bu:cinema-active"]
    assert await tags_of(insights_service, erased) is None
