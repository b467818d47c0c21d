"""An import as an operation, over a real channel: a replica killed mid-chunk is taken over
from the last committed chunk with no row twice and none lost; cancelling; a mostly bad file
stops early with a summary; a file that cannot be read fails with its reason; the upload is
idempotent, bounded, and leaves nothing behind when its stream breaks.

Uploads that a test carries out with workers of its own go to a second replica with no workers
(`uploads`): the run's identity service, which looks for imports only when it starts, leaves
them to the test."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import multiprocessing
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2
from loyalty.identity.v1 import identity_service_pb2 as ipb
from loyalty.identity.v1 import identity_service_pb2_grpc, member_pb2
from loyalty.identity.v1 import member_import_pb2 as pb
from loyalty_devstack.testing import ServiceRunner, metadata_for
from loyalty_identity.app import SPEC
from loyalty_identity.domain.identities import ChannelIdentity
from loyalty_identity.domain.member_import import MemberImport
from loyalty_identity.service_layer.import_worker import ImportWorker
from loyalty_identity.settings import ImportSettings
from loyalty_kit.db import asyncpg_params
from loyalty_kit.server import RunningService
from loyalty_kit.settings import Settings
from sqlalchemy.engine import make_url

from tests.identity.conftest import SERVICE_DESK, IdentityClient
from tests.identity.import_files import (
    FailingNow,
    get,
    imported,
    imported_events,
    importer,
    mall_file,
    mall_spec,
    messages,
    population,
    report,
    stub,
    upload,
)
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")

MALL = importer("mall")
MAX_FILE_BYTES = 300_000


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def uploads(
    settings: Settings, identity_service: RunningService
) -> AsyncIterator[RunningService]:
    """A replica that takes uploads and runs no import itself."""
    runner = ServiceRunner(settings)
    yield await runner.start(
        SPEC, settings, imports=ImportSettings(workers=0, max_file_bytes=MAX_FILE_BYTES)
    )
    await runner.stop_all()


@pytest_asyncio.fixture(loop_scope="session")
async def channel(uploads: RunningService) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(uploads.target) as opened:
        yield opened


def worker(service: RunningService, owner: str, **options: Any) -> ImportWorker:
    """A worker as another replica would run it, with small chunks."""
    settings = ImportSettings(workers=0, **{"chunk_rows": 50, **options})
    return ImportWorker(service.root.uow, settings, service.root.clock, owner=owner)


async def database(settings: Settings) -> asyncpg.Connection:
    url = make_url(str(settings.service_database_url("identity")))
    return await asyncpg.connect(**asyncpg_params(url))


async def parts_stored(settings: Settings, name: str) -> int:
    conn = await database(settings)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM import_file_parts WHERE import_id = $1",
                name.removeprefix("memberImports/"),
            )
        )
    finally:
        await conn.close()


def error_reason(made: pb.MemberImport) -> str:
    info = error_details_pb2.ErrorInfo()
    assert made.error.details[0].Unpack(info)
    return str(info.reason)


async def test_a_replica_killed_mid_chunk_is_taken_over_from_its_checkpoint(
    uploads: RunningService, channel: grpc.aio.Channel, settings: Settings
) -> None:
    await killed_and_taken_over(uploads, channel, settings, 300, chunk_rows=50, prepare_processes=0)


async def test_a_pipelined_import_killed_mid_chunk_resumes_without_doubles(
    uploads: RunningService, channel: grpc.aio.Channel, settings: Settings
) -> None:
    """The rows read and indexed in a worker process while the chunk before is written: the
    process ends with the replica (if it was still reading), and the next holder's carries on
    from the checkpoint."""
    await killed_and_taken_over(
        uploads, channel, settings, 2000, chunk_rows=200, prepare_processes=1
    )


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def large_uploads(
    settings: Settings, identity_service: RunningService
) -> AsyncIterator[RunningService]:
    """A replica that takes uploads of a few megabytes and runs no import itself."""
    runner = ServiceRunner(settings)
    yield await runner.start(SPEC, settings, imports=ImportSettings(workers=0))
    await runner.stop_all()


async def test_a_pipelined_import_whose_reading_process_dies_goes_on_in_the_service(
    large_uploads: RunningService, settings: Settings
) -> None:
    """The worker process reading and sealing rows ahead is killed while the first chunk is
    written (rows of later chunks read and sealed but not yet taken): the import goes on from
    its checkpoint, read in the service's own process, and ends with every row once; the data
    sealed ahead and the data sealed in the service open alike (a person's second card, in the
    same chunk, joins the member the first card made with the data sealed for it)."""
    async with grpc.aio.insecure_channel(large_uploads.target) as channel:
        await reading_dies_and_the_import_goes_on(large_uploads, channel, settings)


async def test_an_unexpected_error_reading_a_row_is_named_by_its_type_never_its_text(
    uploads: RunningService,
    channel: grpc.aio.Channel,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The worker process reading the file stops on an error whose text quotes a row's value
    (its consent time, 2019-07-13): the import fails with a reference, and neither its status,
    its report nor the logs hold the value; the log names the error's type."""
    people = population(3)
    content = mall_file(people).replace(b"2024-05-01", b"2019-07-13")
    made = await upload(channel, MALL, mall_spec(), content)
    carrier = worker(uploads, "replica-f", prepare_processes=1)
    read_by = carrier.source

    async def failing(job: MemberImport, in_process: bool) -> Any:
        assert in_process  # read in the worker process
        created = job.created_at
        trap = FailingNow.fromtimestamp(created.timestamp(), created.tzinfo)
        return await read_by(dataclasses.replace(job, created_at=trap), in_process)

    carrier.source = failing  # type: ignore[method-assign]
    capfd.readouterr()
    assert await asyncio.wait_for(carrier.run_next(), 60)
    logs = capfd.readouterr()

    done = await get(channel, MALL, made.name)
    assert done.state == pb.MemberImport.STATE_FAILED
    assert error_reason(done) == "IMPORT_ERROR"
    reference = done.error.message.split("reference ")[1].rstrip(")")
    rows = await report(channel, MALL, made.name)
    answered = str(done) + "".join(str(r) for r in rows)
    [line] = [json.loads(x) for x in logs.err.splitlines() if reference in x]
    assert (line["event"], line["error"]) == ("member import failed", "ValueError")
    for text in (answered, logs.out, logs.err):
        assert "2019-07" not in text and "cannot place" not in text
    assert reading_processes() == 0


async def reading_dies_and_the_import_goes_on(
    uploads: RunningService, channel: grpc.aio.Channel, settings: Settings
) -> None:
    # More rows than the service holds read ahead (a chunk, four batches waiting and one
    # being handed over, one the process is sending: 8,000), so the process is still reading.
    people = population(12_000)
    two_cards = people[:40] + people[6_000:6_040]
    made = await upload(channel, MALL, mall_spec(), mall_file(people, two_cards))
    carrier = worker(uploads, "replica-r", chunk_rows=1000, prepare_processes=1)
    killed: list[bool] = []

    async def kill_the_reader(job: MemberImport) -> None:
        if not killed:
            (reader,) = [p for p in multiprocessing.active_children() if "import-rows" in p.name]
            killed.append(reader.is_alive())  # still reading: later chunks are not read yet
            reader.kill()
            reader.join(5)

    carrier.before_commit = kill_the_reader
    assert await asyncio.wait_for(carrier.run_next(), 120)
    assert killed == [True] and reading_processes() == 0

    done = await get(channel, MALL, made.name)
    size = len(people) + len(two_cards)
    assert done.state == pb.MemberImport.STATE_SUCCEEDED, done.error
    assert (done.progress.rows_read, done.progress.created, done.progress.linked) == (
        size,
        len(people),
        len(two_cards),
    )
    rows = await report(channel, MALL, made.name, page_size=1000)
    assert [r.row_number for r in rows] == list(range(1, size + 1))
    assert len({r.member_id for r in rows}) == len(people)
    carried = [m for e in await imported_events(settings, made.name) for m in e.members]
    assert len(carried) == size and len({m.legacy_key for m in carried}) == size  # each once

    desk = identity_service_pb2_grpc.IdentityServiceStub(channel)
    for person in people[:3] + people[6_000:6_003] + people[-3:]:
        members = set()
        for kind, value in [("phone", person.e164)] + [
            ("legacy:mall", number) for number in person.legacy["mall"]
        ]:
            found = await desk.ResolveMember(
                ipb.ResolveMemberRequest(identity=member_pb2.Identity(type=kind, value=value)),
                metadata=metadata_for(SERVICE_DESK),
                timeout=15,
            )
            assert found.member.profile.full_name == person.name
            born = found.member.profile.birthday
            assert (born.year, born.month, born.day) == (
                person.birthday.year,
                person.birthday.month,
                person.birthday.day,
            )
            members.add(found.member.member_id)
        assert len(members) == 1


async def test_a_legacy_number_an_earlier_chunk_brought_is_refused_as_a_duplicate(
    uploads: RunningService, channel: grpc.aio.Channel
) -> None:
    """The chunk's legacy numbers are looked up among the rows earlier chunks of the same
    import committed: row 121 repeats row 5, three chunks later."""
    lines = mall_file(population(120)).split(b"\r\n")
    lines.insert(-1, lines[5])  # header first, then rows 1..120, the last line empty
    made = await upload(channel, MALL, mall_spec(), b"\r\n".join(lines))
    assert await worker(uploads, "replica-d", chunk_rows=50).run_next()

    done = await get(channel, MALL, made.name)
    assert done.state == pb.MemberImport.STATE_SUCCEEDED, done.error
    assert (done.progress.rows_read, done.progress.created, done.progress.rejected) == (121, 120, 1)
    [refused] = await report(channel, MALL, made.name, pb.IMPORT_ROW_OUTCOME_REJECTED)
    assert (refused.row_number, refused.reason) == (121, "DUPLICATE_ROW")
    assert refused.detail == "the legacy number of row 5 again"


def reading_processes() -> int:
    return sum("import-rows" in p.name for p in multiprocessing.active_children())


async def killed_and_taken_over(
    uploads: RunningService,
    channel: grpc.aio.Channel,
    settings: Settings,
    size: int,
    **options: Any,
) -> None:
    """A replica killed in its fourth chunk; another takes the import over once the first's
    lease runs out."""
    people = population(size)
    chunk = options["chunk_rows"]
    made = await upload(channel, MALL, mall_spec(), mall_file(people))
    killed = worker(uploads, "replica-a", lease_seconds=3, **options)
    stalled = asyncio.Event()

    async def die_in_the_fourth_chunk(job: MemberImport) -> None:
        if job.counts.rows_read > 3 * chunk:
            stalled.set()
            await asyncio.Event().wait()  # until the replica is killed

    killed.before_commit = die_in_the_fourth_chunk
    running = asyncio.create_task(killed.run_next())
    await asyncio.wait_for(stalled.wait(), 30)
    assert killed.processes.in_use == options["prepare_processes"]  # read where it says
    running.cancel()  # killed: no clean-up, the chunk under way never commits
    with contextlib.suppress(asyncio.CancelledError):
        await running

    halfway = await get(channel, MALL, made.name)
    assert halfway.state == pb.MemberImport.STATE_RUNNING
    assert halfway.progress.rows_read == 3 * chunk and halfway.progress.created == 3 * chunk
    assert killed.processes.in_use == 0 and reading_processes() == 0  # ended with it
    other = worker(uploads, "replica-b", lease_seconds=3, **options)
    assert not await other.run_next()  # the dead replica's lease has not run out yet
    await asyncio.sleep(3.2)
    assert await other.run_next()

    done = await get(channel, MALL, made.name)
    assert done.state == pb.MemberImport.STATE_SUCCEEDED, done.error
    assert (done.progress.rows_read, done.progress.created) == (size, size)
    rows = await report(channel, MALL, made.name, page_size=1000)
    assert [r.row_number for r in rows] == list(range(1, size + 1))
    assert len({r.member_id for r in rows}) == size
    carried = [m for e in await imported_events(settings, made.name) for m in e.members]
    keyring = uploads.root.keyring
    expected = {
        keyring.blind_index(ChannelIdentity("legacy:mall", p.legacy["mall"][0])).hex()
        for p in people
    }
    assert Counter(m.legacy_key for m in carried) == Counter(expected)  # each once
    assert sorted(m.member_id for m in carried) == sorted(r.member_id for r in rows)
    assert await parts_stored(settings, made.name) == 0


async def test_cancelling_stops_an_import_at_once_or_after_its_chunk(
    uploads: RunningService, channel: grpc.aio.Channel, settings: Settings
) -> None:
    waiting = await upload(channel, MALL, mall_spec(), mall_file(population(20)))
    cancelled = await stub(channel).CancelMemberImport(
        pb.CancelMemberImportRequest(name=waiting.name), metadata=metadata_for(MALL), timeout=15
    )
    assert cancelled.member_import.state == pb.MemberImport.STATE_CANCELLED  # nobody held it
    assert cancelled.member_import.progress.rows_read == 0
    assert not cancelled.member_import.file_kept
    assert await parts_stored(settings, waiting.name) == 0
    again = await stub(channel).CancelMemberImport(
        pb.CancelMemberImportRequest(name=waiting.name), metadata=metadata_for(MALL), timeout=15
    )
    assert again.member_import.state == pb.MemberImport.STATE_CANCELLED

    running = await upload(channel, MALL, mall_spec(), mall_file(population(300)))
    carrier = worker(uploads, "replica-c")
    in_chunk, go_on = asyncio.Event(), asyncio.Event()

    async def hold_the_second_chunk(job: MemberImport) -> None:
        if job.counts.rows_read == 100:
            in_chunk.set()
            await go_on.wait()

    carrier.before_commit = hold_the_second_chunk
    task = asyncio.create_task(carrier.run_next())
    await asyncio.wait_for(in_chunk.wait(), 30)
    asked = asyncio.ensure_future(
        stub(channel).CancelMemberImport(
            pb.CancelMemberImportRequest(name=running.name), metadata=metadata_for(MALL), timeout=30
        )
    )
    await asyncio.sleep(0.3)  # the cancel waits for the chunk under way
    go_on.set()
    answer = await asked
    assert answer.member_import.state == pb.MemberImport.STATE_RUNNING  # the replica stops it
    assert await task
    stopped = await get(channel, MALL, running.name)
    assert stopped.state == pb.MemberImport.STATE_CANCELLED
    assert 100 <= stopped.progress.rows_read < 300 and stopped.HasField("end_time")
    assert await parts_stored(settings, running.name) == 0

    finished = await upload(channel, MALL, mall_spec(), mall_file(population(2)))
    assert await worker(uploads, "replica-d").run_next()
    ended_already = await fails(
        stub(channel).CancelMemberImport(
            pb.CancelMemberImportRequest(name=finished.name),
            metadata=metadata_for(MALL),
            timeout=15,
        )
    )
    assert (ended_already.code, ended_already.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "MEMBER_IMPORT_ENDED",
    )


async def test_a_mostly_bad_file_stops_after_its_first_thousand_rows(
    identity: IdentityClient,
) -> None:
    people = population(1500)
    content = mall_file(people)
    lines = content.decode().split("\r\n")
    for i in range(1, len(lines) - 1):
        if i % 5:  # four rows in five: a phone that is no phone
            fields = lines[i].split(",")
            fields[1] = f"1{fields[1][-5:]}"
            lines[i] = ",".join(fields)
    made = await imported(identity.channel, MALL, mall_spec(), "\r\n".join(lines).encode())

    assert made.state == pb.MemberImport.STATE_FAILED
    assert (
        error_reason(made) == "MOSTLY_REJECTED"
        and made.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    )
    assert (made.progress.rows_read, made.progress.rejected, made.progress.created) == (
        1000,
        800,
        200,
    )
    assert made.progress.percent < 100
    refused = await report(identity.channel, MALL, made.name, pb.IMPORT_ROW_OUTCOME_REJECTED)
    assert len(refused) == 800 and {r.reason for r in refused} == {"INVALID_PHONE"}
    shown = " ".join(r.detail for r in refused)
    assert "****" in shown
    assert not any(p.phone[-5:] in shown for p in people)  # the bad numbers are masked too


async def test_a_file_that_cannot_be_read_fails_with_its_reason(identity: IdentityClient) -> None:
    spec = mall_spec()
    spec.mapping.email = "e_mail"  # the file has no such column
    made = await imported(identity.channel, MALL, spec, mall_file(population(3)))
    assert made.state == pb.MemberImport.STATE_FAILED
    assert error_reason(made) == "MISSING_COLUMNS" and "e_mail" in made.error.message
    assert made.progress.rows_read == 0 and not made.file_kept


async def test_an_operator_may_keep_the_file(identity: IdentityClient, settings: Settings) -> None:
    made = await imported(
        identity.channel, MALL, mall_spec(keep_file=True), mall_file(population(2))
    )
    assert made.state == pb.MemberImport.STATE_SUCCEEDED and made.file_kept
    assert await parts_stored(settings, made.name) == 1


async def test_the_upload_is_idempotent_bounded_and_all_or_nothing(
    channel: grpc.aio.Channel, settings: Settings
) -> None:
    content = mall_file(population(5))
    request_id = uuid.uuid4().hex
    first = await upload(channel, MALL, mall_spec(), content, request_id=request_id, part=100)
    assert first.state == pb.MemberImport.STATE_RUNNING
    assert (first.file_bytes, first.created_by) == (len(content), "mall-crm")
    retry = await upload(channel, MALL, mall_spec(), content, request_id=request_id)
    assert retry.name == first.name and retry.file_sha256 == first.file_sha256
    other_spec = mall_spec(keep_file=True)
    reused = await fails(upload(channel, MALL, other_spec, content, request_id=request_id))
    assert reused.reason == "REQUEST_ID_REUSED"

    too_big = await fails(upload(channel, MALL, mall_spec(), b"x" * (MAX_FILE_BYTES + 1)))
    assert (too_big.reason, too_big.fields) == ("FILE_TOO_LARGE", ["content"])
    empty = await fails(upload(channel, MALL, mall_spec(), b""))
    assert empty.fields == ["content"]
    bad_spec = mall_spec()
    bad_spec.encoding = "latin-1"
    bad_spec.mapping.legacy_number = ""
    bad_spec.tier_mapping["金卡"] = "Gold Card"
    refused = await fails(upload(channel, MALL, bad_spec, content))
    assert sorted(refused.fields) == [
        "spec.encoding",
        "spec.mapping.legacy_number",
        "spec.tier_mapping[金卡]",
    ]

    # A stream that breaks halfway stores nothing: the same request id starts afresh.
    broken_id = uuid.uuid4().hex

    async def breaking() -> AsyncIterator[pb.CreateMemberImportRequest]:
        async for message in messages(mall_spec(), content, broken_id, 50):
            yield message
            if message.content:
                raise ConnectionError("the client went away")

    call = stub(channel).CreateMemberImport(breaking(), metadata=metadata_for(MALL), timeout=15)
    with pytest.raises((grpc.aio.AioRpcError, asyncio.CancelledError)):  # the call cancelled
        await call
    conn = await database(settings)
    try:
        for _ in range(50):  # the server sees the stream end and rolls back
            found = await conn.fetchval(
                "SELECT count(*) FROM member_imports WHERE request_id = $1", broken_id
            )
            locked = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' "
                "AND query LIKE '%import_file_parts%'"
            )
            if not locked:
                break
            await asyncio.sleep(0.1)
        assert found == 0 and not locked
    finally:
        await conn.close()
    fresh = await upload(channel, MALL, mall_spec(), content, request_id=broken_id)
    assert fresh.file_bytes == len(content)
