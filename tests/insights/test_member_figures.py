"""The members' figures table: a full refresh (RefreshFigures) gives the RFM the on-demand query
gives over the same trailing 12 months, member by member; events move a member's row as they
arrive (purchases, merges, erasures, consents, birthdays); a refresh never loses a recompute
that committed while it ran; who may refresh."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.type import date_pb2
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import member_pb2
from loyalty.insights.v1 import insights_service_pb2 as pb
from loyalty_insights.adapters.facts import ActivityFact
from loyalty_insights.adapters.member_figures import Refreshed
from loyalty_insights.domain.figures import year_before
from loyalty_insights.domain.rfm import RfmScore, RfmSegment
from loyalty_insights.service_layer.refresh import recompute, settle_refresh
from loyalty_insights.service_layer.uow import InsightsUnitOfWork
from loyalty_kit.server import RunningService
from loyalty_kit.timestamps import moment_of
from sqlalchemy import text

from tests.insights.conftest import Member, Suite, caught_up, period, unit_team, until
from tests.insights.test_rfm_figure import expected_grid, grid_of, scored
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def row_of(service: RunningService, member_id: str) -> dict[str, Any] | None:
    async with service.context.database() as session:
        found = (
            (
                await session.execute(
                    text("SELECT * FROM member_figures WHERE member_id = :m"), {"m": member_id}
                )
            )
            .mappings()
            .first()
        )
        return dict(found) if found else None


async def refresh(suite: Suite) -> pb.RefreshFiguresResponse:
    response: pb.RefreshFiguresResponse = await suite.insights().RefreshFigures(
        pb.RefreshFiguresRequest(request_id=uuid.uuid4().hex)
    )
    return response


async def buy(suite: Suite, member: Member, unit: str, amount: str, days_ago: float) -> None:
    when = suite.clock() - timedelta(days=days_ago)
    await suite.points.earn(member.name, unit, amount, occur=when.isoformat())


async def listing(insights: Any, ask: dict[str, Any]) -> dict[str, list[RfmScore]]:
    """Every segment's members, all pages."""
    found: dict[str, list[RfmScore]] = {}
    for segment in RfmSegment:
        members: list[RfmScore] = []
        token = ""
        while True:
            page = await insights.GetRfm(
                pb.GetRfmRequest(**ask, segment=segment.value, page_size=1000, page_token=token)
            )
            members += [scored(m) for m in page.members]
            token = page.next_page_token
            if not token:
                break
        found[segment.value] = members
    return found


async def test_a_full_refresh_gives_the_on_demand_rfm_of_the_trailing_year(
    suite: Suite, insights_service: RunningService
) -> None:
    members = [await suite.member(unit) for unit in ("mall", "hotel", "cinema") * 4]
    for i, member in enumerate(members):
        for k in range(i % 4 + 1):
            await buy(
                suite, member, ("mall", "hotel")[k % 2], f"{7 * (i + 1) + k}.50", 3 + 20 * i + k
            )
    last = members[-1]
    await until(
        lambda: row_of(insights_service, last.id), lambda r: r is not None and r["visits_12m"] == 4
    )
    await caught_up(insights_service)

    done = await refresh(suite)
    assert done.members >= len(members)
    as_of = moment_of(done, "as_of")
    assert as_of is not None
    insights = suite.insights()
    from_table = await insights.GetRfm(pb.GetRfmRequest())
    assert moment_of(from_table, "refreshed_at") == as_of
    table = await listing(insights, {})
    on_demand = await listing(insights, period(year_before(as_of), as_of))
    assert table == on_demand
    counts = {s.segment: s.members for s in from_table.segments}
    assert counts == {segment: len(found) for segment, found in table.items()}

    # The grid, one grouped read of the table: its listed members by (R, F). Other tests'
    # members are still re-scored in the background (their late events), moving them between
    # cells of one segment: the grid and a listing are compared as read together.
    def matching(answer: tuple[pb.GetRfmResponse, dict[str, list[RfmScore]]]) -> bool:
        listed = [m for found in answer[1].values() for m in found]
        return grid_of(answer[0]) == expected_grid(listed, "CNY")

    async def grid_and_listing() -> tuple[pb.GetRfmResponse, dict[str, list[RfmScore]]]:
        return await insights.GetRfm(pb.GetRfmRequest()), await listing(insights, {})

    together = await until(grid_and_listing, matching)
    listed = [m for found in together[1].values() for m in found]
    assert grid_of(together[0]) == expected_grid(listed, "CNY")
    # Computed now, erased members are counted too (other tests erase members, some of whom
    # bought in the year): every cell holds at least the table's members, scored alike (the
    # table's ranking counts the erased members' figures too), and the grid sums to the counts.
    now = await insights.GetRfm(pb.GetRfmRequest(**period(year_before(as_of), as_of)))
    assert sum(c.members for c in now.grid) == sum(s.members for s in now.segments)
    for computed, stored in zip(grid_of(now), grid_of(together[0]), strict=True):
        assert computed[:2] == stored[:2] and computed[2] >= stored[2], (computed, stored)
    mine = {m.member_id for found in table.values() for m in found} & {m.id for m in members}
    assert mine == {m.id for m in members}

    row = await row_of(insights_service, members[1].id)
    assert row is not None
    assert (row["registered_unit"], row["units"], row["units_12m"], row["visits_12m"]) == (
        "hotel",
        ["hotel", "mall"],
        ["hotel", "mall"],
        2,
    )
    assert row["spend_12m"] == Decimal("14.50") + Decimal("15.50")
    assert row["offers_consent"] is True and row["tags"] == [] and row["p_alive"] is None


async def test_events_move_a_members_row_as_they_arrive(
    suite: Suite, insights_service: RunningService
) -> None:
    await refresh(suite)
    member = await suite.member("mall")
    registered = await until(lambda: row_of(insights_service, member.id), lambda r: r is not None)
    assert registered is not None
    assert (registered["visits_12m"], registered["rfm_segment"]) == (0, RfmSegment.LOST.value)

    await buy(suite, member, "cinema", "120.00", 0)
    row = await until(
        lambda: row_of(insights_service, member.id),
        lambda r: r is not None and r["visits_12m"] == 1,
    )
    assert row is not None
    assert (row["recency_days"], row["units_12m"], row["spend_12m"]) == (
        0,
        ["cinema"],
        Decimal("120.00"),
    )
    assert row["rfm_r"] is not None and row["rfm_segment"] is not None
    assert row["updated_at"] > registered["updated_at"]

    # Personalised offers withdrawn: left out of targeting.
    await suite.identity().SetConsents(
        identity_pb.SetConsentsRequest(
            member=member.name,
            request_id=uuid.uuid4().hex,
            source="app:privacy-settings",
            changes=[
                member_pb2.ConsentChange(
                    purpose=member_pb2.CONSENT_PURPOSE_PERSONALISED_OFFERS, granted=False
                )
            ],
        )
    )
    withdrawn = await until(
        lambda: row_of(insights_service, member.id),
        lambda r: r is not None and r["offers_consent"] is False,
    )
    assert withdrawn is not None and withdrawn["offers_consent"] is False

    # The birthday's month (only the month is kept).
    await suite.identity().UpdateProfile(
        identity_pb.UpdateProfileRequest(
            member=member.name,
            request_id=uuid.uuid4().hex,
            profile=member_pb2.Profile(birthday=date_pb2.Date(year=1990, month=7, day=14)),
            update_mask=field_mask_pb2.FieldMask(paths=["birthday"]),
        )
    )
    born = await until(
        lambda: row_of(insights_service, member.id),
        lambda r: r is not None and r["birthday_month"] == 7,
    )
    assert born is not None and born["birthday_month"] == 7


async def test_a_merge_moves_the_absorbed_members_activity_and_an_erasure_the_row(
    suite: Suite, insights_service: RunningService
) -> None:
    await refresh(suite)
    survivor, absorbed = await suite.member("mall"), await suite.member("hotel")
    await buy(suite, survivor, "mall", "10.00", 40)
    for days in (1, 2, 3):
        await buy(suite, absorbed, "hotel", "300.00", days)
    await until(
        lambda: row_of(insights_service, absorbed.id),
        lambda r: r is not None and r["visits_12m"] == 3,
    )
    await suite.identity().MergeMembers(
        identity_pb.MergeMembersRequest(
            survivor=survivor.name, absorbed=absorbed.name, request_id=uuid.uuid4().hex
        )
    )
    merged = await until(
        lambda: row_of(insights_service, survivor.id),
        lambda r: r is not None and r["visits_12m"] == 4,
    )
    assert merged is not None
    assert (merged["units"], merged["spend_12m"], merged["recency_days"]) == (
        ["hotel", "mall"],
        Decimal("910.00"),
        1,
    )
    assert await until(lambda: row_of(insights_service, absorbed.id), lambda r: r is None) is None
    # A full refresh agrees.
    await refresh(suite)
    again = await row_of(insights_service, survivor.id)
    assert again is not None and (again["visits_12m"], again["units"]) == (4, ["hotel", "mall"])
    assert await row_of(insights_service, absorbed.id) is None

    await suite.identity().EraseMember(
        identity_pb.EraseMemberRequest(name=survivor.name, request_id=uuid.uuid4().hex)
    )
    assert await until(lambda: row_of(insights_service, survivor.id), lambda r: r is None) is None
    await refresh(suite)
    assert await row_of(insights_service, survivor.id) is None


async def test_a_refresh_keeps_a_recompute_that_committed_while_it_ran(
    suite: Suite, insights_service: RunningService
) -> None:
    member = await suite.member("mall")
    await until(lambda: row_of(insights_service, member.id), lambda r: r is not None)
    context = insights_service.context

    def uow() -> InsightsUnitOfWork:
        return InsightsUnitOfWork(context.database, context.settings.event_namespace)

    now = suite.clock()
    async with uow() as refreshing:
        assert await refreshing.member_figures.try_refresh_lock()
        since = await refreshing.member_figures.since()
        refresh_id = await refreshing.member_figures.next_refresh_id()
        cuts = await refreshing.member_figures.stage(year_before(now), now, "")
        # A purchase arrives and is recomputed after the refresh read the facts...
        async with uow() as event:
            await event.facts.record_activity(
                [
                    ActivityFact(
                        member.id,
                        "purchase",
                        uuid.uuid4().hex,
                        "hotel",
                        now - timedelta(minutes=1),
                        Decimal(5),
                        "",
                    )
                ]
            )
            await recompute(event, [member.id], now)
            await event.commit()
        # ...and the refresh writes what it read: the member's newer row stays.
        members, removed = await refreshing.member_figures.write(since, refresh_id)
        await refreshing.member_figures.record_refresh(
            now, suite.clock(), Refreshed(refresh_id, now, members, removed, cuts)
        )
        await refreshing.commit()
    row = await row_of(insights_service, member.id)
    assert row is not None and (row["visits_12m"], row["units_12m"]) == (1, ["hotel"])
    # It was scored against the cut points before the refresh (its recompute could not see
    # the refresh's); once the refresh settles, against the refresh's, as every other row.
    assert row["scored_by"] != refresh_id
    assert await settle_refresh(uow, suite.clock) >= 1
    settled = await row_of(insights_service, member.id)
    assert settled is not None and settled["scored_by"] == refresh_id
    assert (settled["visits_12m"], settled["units_12m"]) == (1, ["hotel"])
    expected = cuts.scores(settled["recency_days"], 1, settled["spend_12m"])
    assert (settled["rfm_r"], settled["rfm_f"], settled["rfm_m"]) == expected
    assert await settle_refresh(uow, suite.clock) == 0  # nothing left to settle


async def test_refreshes_beside_a_stream_of_purchases_lose_none(
    suite: Suite, insights_service: RunningService
) -> None:
    members = [await suite.member("mall") for _ in range(4)]
    rounds = 6

    async def purchases() -> None:
        for k in range(rounds):
            for member in members:
                await buy(suite, member, "mall", "3.00", k)

    async def refreshes() -> None:
        for _ in range(rounds):
            try:
                await refresh(suite)
            except grpc.aio.AioRpcError as error:  # another refresh running: try again
                assert error.code() == grpc.StatusCode.ABORTED
            await asyncio.sleep(0.05)

    await asyncio.gather(purchases(), refreshes())

    async def rows() -> list[Any]:
        return [await row_of(insights_service, m.id) for m in members]

    found = await until(
        rows, lambda rs: all(r is not None and r["visits_12m"] == rounds for r in rs)
    )
    assert [r["visits_12m"] if r else None for r in found] == [rounds] * len(members)
    await refresh(suite)
    assert [r["visits_12m"] if r else None for r in await rows()] == [rounds] * len(members)


async def test_refreshing_is_the_groups_and_a_retry_answers_the_first(suite: Suite) -> None:
    refused = await fails(
        suite.insights(unit_team("mall")).RefreshFigures(
            pb.RefreshFiguresRequest(request_id=uuid.uuid4().hex)
        )
    )
    assert (refused.code, refused.reason) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_REQUIRED")
    request = pb.RefreshFiguresRequest(request_id=uuid.uuid4().hex)
    first = await suite.insights().RefreshFigures(request)
    again = await suite.insights().RefreshFigures(request)
    assert again == first
    assert first.duration.ToTimedelta() > timedelta(0)

    # A unit's standard RFM is computed from the facts (the table holds the group's scores).
    own = await suite.insights(unit_team("mall")).GetRfm(pb.GetRfmRequest(unit="mall"))
    assert not own.HasField("refreshed_at")
    assert [s.segment for s in own.segments] == [s.value for s in RfmSegment]
