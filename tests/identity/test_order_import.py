"""Order imports over a real channel: a unit's past orders, after its members were imported,
carried over to the right members (by legacy number, by phone), once per unit and order ID
(a second import of the same file carries nothing), with a report of what was not carried over
and why, one LegacyOrdersImported per chunk on the bus; a unit imports only its own; cancel;
a replica killed mid-chunk taken over from the checkpoint."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from typing import Any

import grpc
import pytest
import pytest_asyncio
from loyalty.identity.v1 import events_pb2, order_import_pb2_grpc
from loyalty.identity.v1 import identity_service_pb2 as ipb
from loyalty.identity.v1 import order_import_pb2 as pb
from loyalty.identity.v1.member_import_pb2 import MemberImport
from loyalty_devstack.testing import ServiceRunner, metadata_for
from loyalty_identity.app import SPEC
from loyalty_identity.domain.order_file import OrderRow
from loyalty_identity.domain.order_import import OrderImport
from loyalty_identity.service_layer.order_import_worker import OrderImportWorker
from loyalty_identity.settings import ImportSettings
from loyalty_kit import events
from loyalty_kit.caller import Caller
from loyalty_kit.server import RunningService
from loyalty_kit.settings import Settings

from tests.identity.conftest import SERVICE_DESK, IdentityClient
from tests.identity.import_files import (
    Person,
    csv_bytes,
    importer,
    mall_file,
    mall_spec,
    population,
)
from tests.identity.import_files import imported as members_imported
from tests.identity.import_files import report as member_report
from tests.support.events import stream_messages
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")

MALL = importer("mall")
RUNNING = MemberImport.STATE_RUNNING  # an order import has a member import's states
SUCCEEDED = MemberImport.STATE_SUCCEEDED
FAILED = MemberImport.STATE_FAILED
CANCELLED = MemberImport.STATE_CANCELLED
HOTEL = importer("hotel")
ORDER_HEADER = ("card_no", "mobile", "order_no", "amount", "paid_at")
MAPPING = pb.OrderColumnMapping(
    legacy_number="card_no",
    phone="mobile",
    order_id="order_no",
    amount="amount",
    occurred_at="paid_at",
)


def order_spec(**options: Any) -> pb.OrderImportSpec:
    return pb.OrderImportSpec(unit="mall", mapping=MAPPING, file_name="mall-orders.csv", **options)


def orders_file(rows: Sequence[Sequence[str]]) -> bytes:
    return csv_bytes(ORDER_HEADER, rows)


def stub(channel: grpc.aio.Channel) -> order_import_pb2_grpc.OrderImportServiceStub:
    return order_import_pb2_grpc.OrderImportServiceStub(channel)


async def upload(
    channel: grpc.aio.Channel,
    caller: Caller,
    spec: pb.OrderImportSpec,
    content: bytes,
    *,
    part: int = 4096,
) -> pb.OrderImport:
    async def messages() -> AsyncIterator[pb.CreateOrderImportRequest]:
        yield pb.CreateOrderImportRequest(request_id=uuid.uuid4().hex, spec=spec)
        for start in range(0, len(content), part):
            yield pb.CreateOrderImportRequest(content=content[start : start + part])

    answer = await stub(channel).CreateOrderImport(
        messages(), metadata=metadata_for(caller), timeout=60
    )
    made: pb.OrderImport = answer.order_import
    return made


async def get(channel: grpc.aio.Channel, caller: Caller, name: str) -> pb.OrderImport:
    answer = await stub(channel).GetOrderImport(
        pb.GetOrderImportRequest(name=name), metadata=metadata_for(caller), timeout=15
    )
    found: pb.OrderImport = answer.order_import
    return found


async def ended(channel: grpc.aio.Channel, caller: Caller, name: str) -> pb.OrderImport:
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        found = await get(channel, caller, name)
        if found.state != RUNNING:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{name} still running: {found.progress}")
        await asyncio.sleep(0.1)


async def imported(
    channel: grpc.aio.Channel, caller: Caller, spec: pb.OrderImportSpec, content: bytes
) -> pb.OrderImport:
    made = await upload(channel, caller, spec, content)
    return await ended(channel, caller, made.name)


async def report(
    channel: grpc.aio.Channel,
    caller: Caller,
    name: str,
    outcome: pb.OrderRowOutcome.ValueType = pb.ORDER_ROW_OUTCOME_UNSPECIFIED,
) -> list[pb.OrderImportRow]:
    rows: list[pb.OrderImportRow] = []
    token = ""
    while True:
        page = await stub(channel).ListOrderImportRows(
            pb.ListOrderImportRowsRequest(
                parent=name, outcome=outcome, page_size=50, page_token=token
            ),
            metadata=metadata_for(caller),
            timeout=15,
        )
        rows += page.rows
        token = page.next_page_token
        if not token:
            return rows


async def order_events(
    settings: Settings, name: str, settle: float = 0.5
) -> list[events_pb2.LegacyOrdersImported]:
    """The LegacyOrdersImported events of an import on the bus."""
    client = await events.connect(settings.nats_url, "identity-order-import-tests")
    js = client.jetstream()
    stream = events.stream_name(settings.event_namespace, "identity")
    subject = events.subject_of(
        events_pb2.LegacyOrdersImported.DESCRIPTOR.full_name, settings.event_namespace
    )
    found = []
    try:
        await asyncio.sleep(settle)
        for msg in await stream_messages(js, subject, stream):
            event = events_pb2.LegacyOrdersImported.FromString(msg.data)
            if event.order_import == name:
                found.append(event)
    finally:
        await client.close()
    return found


async def mall_members(channel: grpc.aio.Channel, people: list[Person]) -> dict[str, str]:
    """The people imported as the mall's members: legacy number -> member id."""
    done = await members_imported(channel, MALL, mall_spec(), mall_file(people))
    assert done.progress.created == len(people), done
    rows = await member_report(channel, MALL, done.name, page_size=1000)
    by_row = {r.row_number: r.member_id for r in rows}
    return {p.legacy["mall"][0]: by_row[i + 1] for i, p in enumerate(people)}


async def test_orders_are_carried_over_to_their_members_once(
    identity: IdentityClient, settings: Settings
) -> None:
    people = population(6)
    members = await mall_members(identity.channel, people)
    legacy = [p.legacy["mall"][0] for p in people]
    tag = uuid.uuid4().hex[:8]
    rows = [
        (legacy[0], "", f"{tag}-1", "1234.50", "2025-06-01"),  # by legacy number
        ("", people[1].phone, f"{tag}-2", "88", "2025-06-02T10:00:00+08:00"),  # by phone
        ("Mnobody1", "", f"{tag}-3", "10", "2025-06-03"),  # nobody's
        (legacy[2], "", f"{tag}-1", "5", "2025-06-04"),  # the order ID of row 1 again
        (legacy[3], "", f"{tag}-5", "-5", "2025-06-05"),  # refused
        (legacy[4], "", f"{tag}-6", "7", "2099-01-01"),  # in the future
        ("Mnobody2", people[5].phone, f"{tag}-7", "0", "2025-06-07"),  # by its phone
    ]
    done = await imported(identity.channel, MALL, order_spec(), orders_file(rows))

    assert done.state == SUCCEEDED, done.error
    progress = done.progress
    assert (progress.rows_read, progress.imported, progress.unknown_member) == (7, 3, 1)
    assert (progress.duplicates, progress.rejected, progress.percent) == (1, 2, 100)
    assert done.spec.mode == pb.ORDER_IMPORT_MODE_ACTIVITY_ONLY and not done.file_kept
    shown = await report(identity.channel, MALL, done.name)
    assert [(r.row_number, r.outcome, r.reason) for r in shown] == [
        (3, pb.ORDER_ROW_OUTCOME_UNKNOWN_MEMBER, "UNKNOWN_MEMBER"),
        (4, pb.ORDER_ROW_OUTCOME_DUPLICATE, "DUPLICATE"),
        (5, pb.ORDER_ROW_OUTCOME_REJECTED, "INVALID_AMOUNT"),
        (6, pb.ORDER_ROW_OUTCOME_REJECTED, "DATE_IN_FUTURE"),
    ]
    assert shown[1].member_id == members[legacy[2]]
    refused = await report(identity.channel, MALL, done.name, pb.ORDER_ROW_OUTCOME_REJECTED)
    assert [r.row_number for r in refused] == [5, 6]

    (event,) = await order_events(settings, done.name)
    assert (event.unit, event.mode) == ("mall", pb.ORDER_IMPORT_MODE_ACTIVITY_ONLY)
    carried = {o.order_id: o for o in event.orders}
    assert sorted(carried) == [f"{tag}-1", f"{tag}-2", f"{tag}-7"]
    first = carried[f"{tag}-1"]
    assert first.member_id == members[legacy[0]]
    assert (first.amount.currency_code, first.amount.amount) == ("CNY", "1234.50")
    assert first.occurred_at.ToJsonString() == "2025-05-31T16:00:00Z"
    assert carried[f"{tag}-2"].member_id == members[legacy[1]]
    assert carried[f"{tag}-7"].member_id == members[legacy[5]]

    # The same orders again (another file, another import): nothing carried twice.
    again = await imported(
        identity.channel, MALL, order_spec(mode=pb.ORDER_IMPORT_MODE_REPLAY), orders_file(rows)
    )
    assert again.state == SUCCEEDED
    assert (again.progress.imported, again.progress.duplicates) == (0, 4)
    assert await order_events(settings, again.name, settle=0.2) == []
    duplicates = await report(identity.channel, MALL, again.name, pb.ORDER_ROW_OUTCOME_DUPLICATE)
    assert [r.row_number for r in duplicates] == [1, 2, 4, 7]


async def test_a_merged_members_orders_go_to_its_survivor(
    identity: IdentityClient, settings: Settings
) -> None:
    people = population(3)
    members = await mall_members(identity.channel, people)
    legacy = [p.legacy["mall"][0] for p in people]
    survivor, absorbed = members[legacy[0]], members[legacy[1]]
    await identity.as_(SERVICE_DESK).MergeMembers(
        ipb.MergeMembersRequest(
            survivor=f"members/{survivor}",
            absorbed=f"members/{absorbed}",
            request_id=uuid.uuid4().hex,
            reason="same person",
        )
    )
    tag = uuid.uuid4().hex[:8]
    rows = [
        (legacy[1], "", f"{tag}-1", "10", "2025-06-01"),  # the absorbed member's number
        ("", people[1].phone, f"{tag}-2", "20", "2025-06-02"),  # and its phone
        (legacy[2], "", f"{tag}-3", "30", "2025-06-03"),  # someone else
    ]
    done = await imported(identity.channel, MALL, order_spec(), orders_file(rows))

    assert done.state == SUCCEEDED, done.error
    assert (done.progress.imported, done.progress.unknown_member) == (3, 0)
    (event,) = await order_events(settings, done.name)
    assert {o.order_id: o.member_id for o in event.orders} == {
        f"{tag}-1": survivor,
        f"{tag}-2": survivor,
        f"{tag}-3": members[legacy[2]],
    }


async def test_a_chunk_of_orders_carried_before_and_new_ones_claims_the_new_ones(
    identity: IdentityClient, settings: Settings
) -> None:
    people = population(4)
    members = await mall_members(identity.channel, people)
    legacy = [p.legacy["mall"][0] for p in people]
    tag = uuid.uuid4().hex[:8]
    first = [(legacy[0], "", f"{tag}-a", "10", "2025-06-01")]
    first.append((legacy[1], "", f"{tag}-b", "20", "2025-06-02"))
    done = await imported(identity.channel, MALL, order_spec(), orders_file(first))
    assert (done.state, done.progress.imported) == (SUCCEEDED, 2)

    rows = [
        (legacy[2], "", f"{tag}-c", "30", "2025-06-03"),  # new
        (legacy[0], "", f"{tag}-a", "10", "2025-06-01"),  # carried over before
        (legacy[3], "", f"{tag}-d", "40", "2025-06-04"),  # new
        (legacy[1], "", f"{tag}-b", "20", "2025-06-02"),  # carried over before
    ]
    again = await imported(identity.channel, MALL, order_spec(), orders_file(rows))

    assert again.state == SUCCEEDED, again.error
    assert (again.progress.imported, again.progress.duplicates) == (2, 2)
    duplicates = await report(identity.channel, MALL, again.name, pb.ORDER_ROW_OUTCOME_DUPLICATE)
    assert [(r.row_number, r.member_id) for r in duplicates] == [
        (2, members[legacy[0]]),
        (4, members[legacy[1]]),
    ]
    (event,) = await order_events(settings, again.name)
    assert {o.order_id: o.member_id for o in event.orders} == {
        f"{tag}-c": members[legacy[2]],
        f"{tag}-d": members[legacy[3]],
    }


async def test_a_unit_imports_and_reads_only_its_own(identity: IdentityClient) -> None:
    content = orders_file([("M1", "", "x1", "1", "2025-01-01")])
    other = await fails(upload(identity.channel, HOTEL, order_spec(), content))
    assert other.code == grpc.StatusCode.PERMISSION_DENIED
    made = await imported(identity.channel, MALL, order_spec(), content)
    read = await fails(get(identity.channel, HOTEL, made.name))
    assert read.code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND)
    listed = await stub(identity.channel).ListOrderImports(
        pb.ListOrderImportsRequest(), metadata=metadata_for(HOTEL), timeout=15
    )
    assert made.name not in [i.name for i in listed.order_imports]
    mine = await stub(identity.channel).ListOrderImports(
        pb.ListOrderImportsRequest(), metadata=metadata_for(MALL), timeout=15
    )
    assert made.name in [i.name for i in mine.order_imports]
    bad = order_spec()
    bad.mapping.order_id = ""
    bad.currency = "XX"
    refused = await fails(upload(identity.channel, MALL, bad, content))
    assert sorted(refused.fields) == ["spec.currency", "spec.mapping.order_id"]


# --- as an operation: replicas, cancel ----------------------------------------------------------
@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def uploads(
    settings: Settings, identity_service: RunningService
) -> AsyncIterator[RunningService]:
    """A replica that takes uploads and runs no import itself."""
    runner = ServiceRunner(settings)
    yield await runner.start(SPEC, settings, imports=ImportSettings(workers=0))
    await runner.stop_all()


@pytest_asyncio.fixture(loop_scope="session")
async def channel(uploads: RunningService) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(uploads.target) as opened:
        yield opened


def worker(service: RunningService, owner: str, **options: Any) -> OrderImportWorker:
    settings = ImportSettings(workers=0, **{"order_chunk_rows": 50, **options})
    return OrderImportWorker(service.root.uow, settings, service.root.clock, owner=owner)


async def test_a_replica_killed_mid_chunk_is_taken_over_from_its_checkpoint(
    identity: IdentityClient,
    uploads: RunningService,
    channel: grpc.aio.Channel,
    settings: Settings,
) -> None:
    people = population(30)
    members = await mall_members(identity.channel, people)  # the run's replica imports them
    tag = uuid.uuid4().hex[:8]
    rows = [
        (people[i % 30].legacy["mall"][0], "", f"{tag}-{i}", f"{i}.25", "2025-03-01")
        for i in range(300)
    ]
    made = await upload(channel, MALL, order_spec(), orders_file(rows))
    killed = worker(uploads, "replica-a", lease_seconds=3)
    stalled = asyncio.Event()

    async def die_in_the_fourth_chunk(job: OrderImport) -> None:
        if job.counts.rows_read > 150:
            stalled.set()
            await asyncio.Event().wait()

    killed.before_commit = die_in_the_fourth_chunk
    running = asyncio.create_task(killed.run_next())
    await asyncio.wait_for(stalled.wait(), 30)
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running

    halfway = await get(channel, MALL, made.name)
    assert halfway.state == RUNNING
    assert halfway.progress.rows_read == 150 and halfway.progress.imported == 150
    other = worker(uploads, "replica-b", lease_seconds=3)
    assert not await other.run_next()  # the dead replica's lease has not run out yet
    await asyncio.sleep(3.2)
    assert await other.run_next()

    done = await get(channel, MALL, made.name)
    assert done.state == SUCCEEDED, done.error
    assert (done.progress.rows_read, done.progress.imported) == (300, 300)
    carried = [o for e in await order_events(settings, made.name) for o in e.orders]
    assert Counter(o.order_id for o in carried) == Counter(f"{tag}-{i}" for i in range(300))
    by_id = {o.order_id: o for o in carried}
    for i in (0, 149, 150, 299):
        assert by_id[f"{tag}-{i}"].member_id == members[people[i % 30].legacy["mall"][0]]
        assert Decimal(by_id[f"{tag}-{i}"].amount.amount) == Decimal(f"{i}.25")


class LookingAhead(OrderImportWorker):
    """A worker noting the first row of each chunk it looks ahead, as it starts to."""

    looked: list[int]

    async def look_ahead(self, job: OrderImport, rows: Sequence[OrderRow]) -> list[str | None]:
        self.looked.append(rows[0].number)
        return await super().look_ahead(job, rows)


async def test_the_next_chunks_members_are_looked_up_while_a_chunk_is_written(
    identity: IdentityClient,
    uploads: RunningService,
    channel: grpc.aio.Channel,
    settings: Settings,
) -> None:
    people = population(10)
    members = await mall_members(identity.channel, people)
    tag = uuid.uuid4().hex[:8]
    rows = [
        (people[i % 10].legacy["mall"][0], "", f"{tag}-{i}", f"{i}.50", "2025-03-01")
        for i in range(200)
    ]
    made = await upload(channel, MALL, order_spec(), orders_file(rows))
    carrier = LookingAhead(
        uploads.root.uow,
        ImportSettings(workers=0, order_chunk_rows=50),
        uploads.root.clock,
        owner="replica-ahead",
    )
    carrier.looked = []
    ahead_of_commit: list[bool] = []

    async def wait_for_the_next_look_up(job: OrderImport) -> None:
        # Chunk k (rows up to 50 k) commits once chunk k + 1 has been looked ahead, if it is.
        if job.counts.rows_read < 200:
            deadline = asyncio.get_running_loop().time() + 5
            while len(carrier.looked) * 50 <= job.counts.rows_read:
                if asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.01)
            ahead_of_commit.append(len(carrier.looked) * 50 > job.counts.rows_read)

    carrier.before_commit = wait_for_the_next_look_up
    assert await carrier.run_next()

    assert carrier.looked == [1, 51, 101, 151]
    assert ahead_of_commit == [True, True, True]
    done = await get(channel, MALL, made.name)
    assert done.state == SUCCEEDED, done.error
    assert (done.progress.rows_read, done.progress.imported) == (200, 200)
    carried = [o for e in await order_events(settings, made.name) for o in e.orders]
    assert sorted(o.order_id for o in carried) == sorted(f"{tag}-{i}" for i in range(200))
    for order in carried:
        i = int(order.order_id.rsplit("-", 1)[1])
        assert order.member_id == members[people[i % 10].legacy["mall"][0]]


async def test_cancelling_stops_an_order_import(
    uploads: RunningService, channel: grpc.aio.Channel
) -> None:
    content = orders_file([("M1", "", f"c{i}", "1", "2025-01-01") for i in range(200)])
    waiting = await upload(channel, MALL, order_spec(), content)
    cancelled = await stub(channel).CancelOrderImport(
        pb.CancelOrderImportRequest(name=waiting.name), metadata=metadata_for(MALL), timeout=15
    )
    assert cancelled.order_import.state == CANCELLED  # nobody held it
    assert not cancelled.order_import.file_kept

    running = await upload(channel, MALL, order_spec(), content)
    carrier = worker(uploads, "replica-c")
    in_chunk, go_on = asyncio.Event(), asyncio.Event()

    async def hold_the_second_chunk(job: OrderImport) -> None:
        if job.counts.rows_read == 100:
            in_chunk.set()
            await go_on.wait()

    carrier.before_commit = hold_the_second_chunk
    task = asyncio.create_task(carrier.run_next())
    await asyncio.wait_for(in_chunk.wait(), 30)
    asked = asyncio.ensure_future(
        stub(channel).CancelOrderImport(
            pb.CancelOrderImportRequest(name=running.name), metadata=metadata_for(MALL), timeout=30
        )
    )
    await asyncio.sleep(0.3)
    go_on.set()
    answer = await asked
    assert answer.order_import.state == RUNNING  # the replica stops it
    assert await task
    stopped = await get(channel, MALL, running.name)
    assert stopped.state == CANCELLED
    assert 100 <= stopped.progress.rows_read < 200
    assert stopped.progress.unknown_member == stopped.progress.rows_read

    finished = await upload(channel, MALL, order_spec(), content)
    assert await worker(uploads, "replica-d").run_next()
    ended_already = await fails(
        stub(channel).CancelOrderImport(
            pb.CancelOrderImportRequest(name=finished.name),
            metadata=metadata_for(MALL),
            timeout=15,
        )
    )
    assert (ended_already.code, ended_already.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "ORDER_IMPORT_ENDED",
    )


async def test_a_mostly_bad_file_stops_early(identity: IdentityClient) -> None:
    rows = [("M1", "", f"b{i}", "-1" if i % 4 else "1", "2025-01-01") for i in range(1500)]
    done = await imported(identity.channel, MALL, order_spec(), orders_file(rows))
    assert done.state == FAILED
    assert (done.progress.rows_read, done.progress.rejected) == (1000, 750)
