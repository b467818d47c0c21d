"""A NATS node lost under load: with every stream at 3 replicas on a 3-node cluster, SIGKILL of
the node leading the points stream loses nothing published and handles nothing twice. Earns go
on meanwhile (they only touch PostgreSQL and the outbox), the relay publishes to the new leader,
and tiers counts every acknowledged earn exactly once, including those made after the kill."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

import grpc
import pytest
from loyalty.audit.v1.audit_pb2 import AuditEntryRecorded
from loyalty.common.v1 import channel_pb2
from loyalty.points.v1 import points_service_pb2 as pb
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_pb
from loyalty_kit import events

from tests.points.conftest import line, pos, rid
from tests.reliability.cluster.conftest import REPLICAS, ClusterSuite

pytestmark = pytest.mark.asyncio(loop_scope="session")

MEMBERS = 12
WORKERS = 4
LOAD_BEFORE_KILL_SECONDS = 4.0
LOAD_AFTER_KILL_SECONDS = 6.0
CONVERGE_WITHIN_SECONDS = 40.0


async def test_every_stream_is_replicated_on_the_three_nodes(suite: ClusterSuite) -> None:
    for service in ("identity", "points", "tiers", events.DEAD_LETTERS):
        info = await suite.js.stream_info(suite.stream(service))
        assert info.config.num_replicas == REPLICAS, service
        assert info.cluster is not None and info.cluster.leader in suite.cluster.nodes
        followers = {peer.name for peer in info.cluster.replicas or []}
        assert followers | {info.cluster.leader} == set(suite.cluster.nodes), service


@dataclass(frozen=True)
class Earn:
    member_id: str
    posting_id: str
    points: int
    spend: Decimal
    after_kill: bool


class Load:
    """Tills earning for a few members, each earn retried with its request id until answered
    (as a till does), so every earn ends acknowledged exactly once."""

    def __init__(self, suite: ClusterSuite, members: list[str]) -> None:
        self.suite = suite
        self.members = members
        self.acknowledged: list[Earn] = []
        self.retried = 0
        self.killed = False
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._till(index)) for index in range(WORKERS)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _till(self, index: int) -> None:
        shuffled = random.Random(index)
        while not self._stop.is_set():
            member = shuffled.choice(self.members)
            amount = Decimal(shuffled.randint(10, 90))
            await self._earn(member, amount)
            await asyncio.sleep(0.02)

    async def _earn(self, member: str, amount: Decimal) -> None:
        request = pb.EarnPointsRequest(
            member=member,
            request_id=rid(),
            unit="mall",
            channel=channel_pb2.CHANNEL_POS,
            order_id=f"ord-{uuid.uuid4().hex[:12]}",
            lines=[line(f"{amount}.00")],
        )
        after_kill = self.killed
        while True:
            try:
                answer = await self.suite.points.as_(pos("mall")).EarnPoints(request, timeout=10)
                break
            except grpc.aio.AioRpcError as error:
                assert error.code() in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                ), error
                self.retried += 1
                await asyncio.sleep(0.1)
        posting = answer.posting
        self.acknowledged.append(
            Earn(posting.member_id, posting.posting_id, posting.points, amount, after_kill)
        )


async def test_a_node_killed_under_load_loses_nothing_and_consumers_carry_on(
    suite: ClusterSuite,
) -> None:
    members = [await suite.points.member() for _ in range(MEMBERS)]
    load = Load(suite, members)
    load.start()
    try:
        await asyncio.sleep(LOAD_BEFORE_KILL_SECONDS)
        points_stream = suite.stream("points")
        before = await suite.js.stream_info(points_stream)
        assert before.cluster is not None and before.cluster.leader
        assert before.state.messages > 0  # events were flowing before the kill
        leader = before.cluster.leader
        # The worst case: the node holds the leaders of the stream and of tiers' consumer on it.
        await lead_consumer_from(suite, points_stream, "tiers-activity", leader)
        load.killed = True
        suite.cluster.kill(leader)
        await asyncio.sleep(LOAD_AFTER_KILL_SECONDS)
    finally:
        await load.stop()

    earns = load.acknowledged
    assert sum(earn.after_kill for earn in earns) > 0, "no earn was made after the kill"
    await converged(suite, len(earns))

    after = await suite.js.stream_info(points_stream)
    assert after.cluster is not None and after.cluster.leader not in ("", None, leader)

    # Every acknowledged earn is on the stream once: nothing lost, nothing published twice.
    outbox = await outbox_of(suite, "points")
    earned_events = [row for row in outbox if str(row["event_type"]).endswith(".PointsEarned")]
    assert len(earned_events) == len(earns)
    assert all(row["published_at"] is not None for row in outbox)  # the outbox drained
    assert after.state.messages == len(outbox)

    # ... and reached tiers exactly once: its activity is the points ledger, member by member.
    activity = await tiers_activity(suite)
    assert {e.posting_id for e in earns} <= set(activity)  # including those after the kill
    assert len(activity) == len(earns)
    ledger: dict[str, list[Earn]] = defaultdict(list)
    for earn in earns:
        ledger[earn.member_id].append(earn)
    for member in members:
        member_id = member.removeprefix("members/")
        own = ledger[member_id]
        counted = [activity[e.posting_id] for e in own]
        assert sum(points for points, _ in counted) == sum(e.points for e in own)
        balance = await suite.points.balance(member)
        assert balance.lifetime_earned == sum(e.points for e in own), member
        view = await suite.tiers().GetMemberTier(tiers_pb.GetMemberTierRequest(member=member))
        spend = next(
            p for p in view.progress if p.metric == tiers_pb.METRIC_QUALIFYING_SPEND
        ).current
        assert Decimal(spend) == sum(e.spend for e in own), member

    # The consumer has been handed everything on the stream. (Acks that went to the lost leader
    # may still be pending: those events come again after the ack wait and the inbox drops them.)
    consumer = await suite.js.consumer_info(points_stream, "tiers-activity")
    assert consumer.num_pending == 0

    # The node comes back on its own store and catches up: three current replicas again.
    await suite.cluster.restart(leader)
    await replicas_current(suite, points_stream)


async def replicas_current(suite: ClusterSuite, stream: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CONVERGE_WITHIN_SECONDS
    while True:
        info = await suite.js.stream_info(stream)
        peers = info.cluster.replicas if info.cluster and info.cluster.replicas else []
        if len(peers) == REPLICAS - 1 and all(p.current and not p.offline for p in peers):
            return
        assert loop.time() < deadline, f"{stream} replicas not current: {peers}"
        await asyncio.sleep(0.25)


async def lead_consumer_from(suite: ClusterSuite, stream: str, durable: str, node: str) -> None:
    """Move a consumer's leader to `node` (a leader stepdown with a preferred placement)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while (info := await suite.js.consumer_info(stream, durable)).cluster is None or (
        info.cluster.leader != node
    ):
        assert loop.time() < deadline, f"{durable} is still led by {info.cluster}"
        await suite.nats.request(
            f"$JS.API.CONSUMER.LEADER.STEPDOWN.{stream}.{durable}",
            json.dumps({"placement": {"preferred": node}}).encode(),
            timeout=5,
        )
        await asyncio.sleep(0.5)


async def converged(suite: ClusterSuite, earns: int) -> None:
    """Wait until the outbox drained and tiers handled as many earns as were acknowledged."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CONVERGE_WITHIN_SECONDS
    while True:
        outbox = await outbox_of(suite, "points")
        pending = sum(row["published_at"] is None for row in outbox)
        counted = len(await tiers_activity(suite))
        if pending == 0 and counted >= earns:
            return
        if loop.time() > deadline:
            raise AssertionError(
                f"after {CONVERGE_WITHIN_SECONDS} s: {pending} events unpublished, "
                f"tiers counted {counted} of {earns} earns"
            )
        await asyncio.sleep(0.25)


async def outbox_of(suite: ClusterSuite, service: str) -> list[dict[str, object]]:
    """The service's own events in its outbox: not its audit entries, which go to the shared
    audit stream rather than the service's."""
    connection = await suite.database(service)
    try:
        rows = await connection.fetch(
            "SELECT event_type, published_at FROM kit_outbox WHERE event_type <> $1",
            AuditEntryRecorded.DESCRIPTOR.full_name,
        )
    finally:
        await connection.close()
    return [dict(row) for row in rows]


async def tiers_activity(suite: ClusterSuite) -> dict[str, tuple[int, Decimal]]:
    """Posting id -> (points, spend) of each earn tiers counted."""
    connection = await suite.database("tiers")
    try:
        rows = await connection.fetch(
            "SELECT event_id, points, spend FROM activity WHERE points > 0"
        )
    finally:
        await connection.close()
    counted: dict[str, tuple[int, Decimal]] = {}
    for row in rows:
        assert row["event_id"] not in counted, f"{row['event_id']} counted twice"
        counted[row["event_id"]] = (row["points"], row["spend"])
    return counted
