"""A leaderboard's period close at 1,000,000 members (`--members`, or
`BENCH_LEADERBOARD_MEMBERS`): the scores of `bench/engagement_leaderboard.py` loaded once per
run into a database of the run's, then the period closed (reopened first, so each run does all
the work).

- `raw-engagement-leaderboard`: the ranking as one plain SELECT (what any close must read).
- `engagement-leaderboard`: the close through the use case (the mark, one ranking INSERT per
  reward, the payouts a chunk a transaction), against the one-minute goal (issue 19).
"""

from __future__ import annotations

import os

from bench.context import BenchContext
from bench.engagement_leaderboard import GOAL_SECONDS, Prepared, prepare, raw, through_service
from bench.registry import Measurement, scenario


async def _prepared(ctx: BenchContext) -> Prepared:
    if "leaderboard" not in ctx.shared:
        members = ctx.members or int(os.environ.get("BENCH_LEADERBOARD_MEMBERS", "1000000"))
        url = await ctx.database("engagement_leaderboard")
        ctx.shared["leaderboard"] = await prepare(url, members)
    prepared: Prepared = ctx.shared["leaderboard"]
    return prepared


@scenario("raw-engagement-leaderboard")
async def raw_engagement_leaderboard(ctx: BenchContext) -> Measurement:
    """A period's ranking as one plain SELECT over every member's score."""
    prepared = await _prepared(ctx)
    found = await raw(prepared)
    return Measurement(
        count=prepared.members,
        seconds=found["seconds"],
        concurrency=1,
        unit="members",
        extra={"load_seconds": prepared.load_seconds, **found},
    )


@scenario("engagement-leaderboard", ceiling="raw-engagement-leaderboard")
async def engagement_leaderboard(ctx: BenchContext) -> Measurement:
    """A period's close through the use case, rewards paid once (a second close pays none)."""
    prepared = await _prepared(ctx)
    found = await through_service(prepared)
    return Measurement(
        count=prepared.members,
        seconds=found["seconds"],
        concurrency=1,
        unit="members",
        extra={
            "load_seconds": prepared.load_seconds,
            "goal_seconds": GOAL_SECONDS,
            "goal_met": found["seconds"] < GOAL_SECONDS,
            **found,
        },
    )
