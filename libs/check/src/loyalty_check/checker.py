"""Runs the rules: a few at once (each one query per database it reads, or a merge of two),
every one in read-only snapshots."""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
from loyalty_kit.settings import Settings

from loyalty_check import crossdb, settlement
from loyalty_check.databases import CannotRun, Databases
from loyalty_check.findings import Finding, Report, RuleResult
from loyalty_check.rules import SQL_RULES, SqlRule

RuleFn = Callable[[Databases, int], Awaitable[RuleResult]]


@dataclass(frozen=True)
class Options:
    limit: int = 20  # findings shown per rule (the rest are counted)
    outbox_bound: float = 60.0  # seconds an outbox row may stay unpublished
    stuck_after: float = 300.0  # seconds a checkout or reward redemption may stay unfinished
    rpc: bool = True  # rules that call a service (settlement-ledger)
    only: tuple[str, ...] = ()  # rule names (empty: all)
    parallel: int = 3  # rules run at once
    # Member ids: only findings about these members (and those about no member: outbox rows,
    # units' settlement); empty: every member's. Every rule still reads everything.
    members: tuple[str, ...] = ()

    @property
    def scope(self) -> frozenset[str]:
        return frozenset(m.removeprefix("members/") for m in self.members)


_LIMIT = re.compile(r"\s+LIMIT \$1\s*$")


def scoped(sql: str, members_param: int) -> str:
    """A rule's query answering only the findings of the members in `$members_param` (a text
    array) and those of no member, limited and counted after that choice."""
    inner, cut = _LIMIT.subn("", sql)
    assert cut == 1, "a rule's query ends with LIMIT $1"
    return f"""
    WITH found (member_id, expected, found, detail, total) AS ({inner})
    SELECT member_id, expected, found, detail, count(*) OVER () FROM found
    WHERE member_id = '' OR member_id = ANY(${members_param}::text[])
    ORDER BY member_id, detail LIMIT $1
    """


def _sql(rule: SqlRule, options: Options) -> RuleFn:
    async def run(dbs: Databases, limit: int) -> RuleResult:
        result = RuleResult(rule.name, rule.description)
        args: list[object] = [limit]
        if rule.bound:
            args.append(options.outbox_bound if rule.bound == "outbox" else options.stuck_after)
        sql = rule.sql
        if options.members:
            args.append(sorted(options.scope))
            sql = scoped(sql, len(args))
        for service in rule.services:
            async with dbs.snapshot(service) as conn:
                rows = await conn.fetch(sql, *args)
            found = [Finding(rule.name, r[0], r[1], r[2], r[3]) for r in rows]
            result.add(found, rows[0][4] if rows else 0, limit)
        return result

    return run


RPC_RULES = {settlement.RULE}


ORDER = (
    "balance-postings",
    "balance-lots",
    "order-earned-once",
    settlement.RULE,
    "tiers-activity",
    "insights-ledger",
    "engagement-points-once",
    "benefit-consumed-once",
    "coupon-redeemed-once",
    "reward-paid-once",
    "reward-redemption-final",
    "checkout-final",
    "outbox-published",
)


def rules(options: Options) -> dict[str, RuleFn]:
    """Every rule by name, in the order they are reported."""
    named: dict[str, RuleFn] = {rule.name: _sql(rule, options) for rule in SQL_RULES}
    named[settlement.RULE] = settlement.settlement_ledger  # a unit's: no member
    scope = options.scope
    named["tiers-activity"] = functools.partial(crossdb.tiers_activity, members=scope)
    named["reward-paid-once"] = functools.partial(crossdb.reward_paid_once, members=scope)
    named["insights-ledger"] = functools.partial(crossdb.insights_ledger, members=scope)
    named["engagement-points-once"] = functools.partial(
        crossdb.engagement_points_once, members=scope
    )
    assert set(named) == set(ORDER)
    return {name: named[name] for name in ORDER}


RULE_NAMES = ORDER


async def check(settings: Settings, options: Options | None = None) -> Report:
    """Run the chosen rules; CannotRun when a database or a service could not be read."""
    options = options or Options()
    unknown = [name for name in options.only if name not in RULE_NAMES]
    if unknown:
        raise ValueError(f"unknown rule(s) {', '.join(unknown)}; known: {', '.join(RULE_NAMES)}")
    dbs = Databases(settings)
    gate = asyncio.Semaphore(options.parallel)
    started = time.perf_counter()

    async def timed(name: str, run: RuleFn) -> RuleResult:
        async with gate:
            begun = time.perf_counter()
            try:
                result = await run(dbs, options.limit)
            except asyncpg.PostgresError as error:
                raise CannotRun(f"{name}: {type(error).__name__}: {error}") from error
            result.seconds = time.perf_counter() - begun
            return result

    chosen = {n: fn for n, fn in rules(options).items() if not options.only or n in options.only}
    tasks = {
        name: asyncio.ensure_future(timed(name, fn))
        for name, fn in chosen.items()
        if options.rpc or name not in RPC_RULES
    }
    try:
        await asyncio.gather(*tasks.values())
    finally:
        for task in tasks.values():
            task.cancel()
    results = [
        tasks[name].result()
        if name in tasks
        else RuleResult(name, "", skipped="calls a service (--no-rpc)")
        for name in chosen
    ]
    return Report(results, time.perf_counter() - started)
