"""settlement-ledger: what the points service answers for inter-unit settlement (GetSettlement,
over all time up to the checker's snapshot) agrees with the ledger read here: its ledger total
is the sum of the postings, and every unit's points redeemed are the points that flowed to it
from the lots they were taken from (the earned-at x redeemed-at matrix adds up to them)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from loyalty.points.v1 import points_service_pb2 as pb
from loyalty.points.v1 import points_service_pb2_grpc
from loyalty_kit.auth import ServiceCredentials
from loyalty_kit.caller import Caller
from loyalty_kit.channels import channel
from loyalty_kit.settings import Settings
from loyalty_kit.timestamps import EARLIEST

from loyalty_check.databases import CannotRun, Databases
from loyalty_check.findings import Finding, RuleResult

RULE = "settlement-ledger"
# The finance team's view: the group's admin scope, as GetSettlement's access rule asks.
CHECKER = Caller(unit="group", client_id="loyalty-check", scopes=frozenset({"admin"}))
DEADLINE_SECONDS = 120.0


def _stamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


async def get_settlement(
    settings: Settings, start: datetime, end: datetime
) -> pb.GetSettlementResponse:
    credentials = ServiceCredentials.from_settings("check", settings.data_dir)
    async with channel(settings.target_of("points"), max_deadline=DEADLINE_SECONDS) as points:
        stub = points_service_pb2_grpc.PointsServiceStub(points)
        try:
            answer: pb.GetSettlementResponse = await stub.GetSettlement(
                pb.GetSettlementRequest(start_time=_stamp(start), end_time=_stamp(end)),
                metadata=credentials.metadata(CHECKER),
                timeout=DEADLINE_SECONDS,
            )
        except grpc.aio.AioRpcError as error:
            raise CannotRun(
                f"GetSettlement at {settings.target_of('points')} answered "
                f"{error.code().name}: {error.details()}"
            ) from error
    return answer


async def settlement_ledger(dbs: Databases, limit: int) -> RuleResult:
    result = RuleResult(
        RULE,
        "GetSettlement agrees with the ledger: its total is the postings' sum, and each unit's "
        "points redeemed are the points that flowed to it",
    )
    async with dbs.snapshot("points") as conn:
        end: datetime = await conn.fetchval("SELECT now()")  # the snapshot's moment
        ledger = int(
            await conn.fetchval(
                "SELECT coalesce(sum(points), 0) FROM postings "
                "WHERE posted_at >= $1 AND posted_at < $2",
                EARLIEST,
                end,
            )
        )
    answer = await get_settlement(dbs.settings, EARLIEST, end)
    found: list[Finding] = []
    if answer.ledger_points != ledger:
        found.append(
            Finding(RULE, "", str(ledger), str(answer.ledger_points), "ledger points, all units")
        )
    flowed: dict[str, int] = defaultdict(int)
    for flow in answer.flows:
        flowed[flow.redeemed_unit] += flow.points
    redeemed = {u.unit: u.points_redeemed for u in answer.units}
    for unit in sorted(set(flowed) | set(redeemed)):
        if flowed[unit] != redeemed.get(unit, 0):
            found.append(
                Finding(
                    RULE,
                    "",
                    f"{redeemed.get(unit, 0)} points redeemed",
                    f"{flowed[unit]} points flowed from lots",
                    f"unit {unit}",
                )
            )
    result.add(found, len(found), limit)
    return result
