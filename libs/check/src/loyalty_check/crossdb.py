"""Rules across two services' databases: each side aggregated in its own database, streamed
sorted by the same key (`COLLATE "C"` or uuid order, which is Python's string order for
lower-case ids), and merged here in one pass.

- tiers-activity: every PointsEarned and PointsReversed (one per earn and reverse posting, keyed
  by the posting id) reached tiers once, and each member's activity totals equal the ledger.
  Per member: the number of events, their points, and a sum of hashes of their posting ids; the
  members that differ are then looked at posting by posting, to name what is missing or doubled.
  Imported past orders (tiers' activity rows `order:<unit>/<order id>`, no points) have no
  posting behind them and are left out of the comparison.
- reward-paid-once: every reward bought with points was debited once if completed, and not at
  all (or debited and given back) if it failed.
- insights-ledger: every posting and lot movement of the ledger reached insights (its
  `LedgerPosted` facts, what the points liability is figured from) once, with the same points,
  under the member whose account it is on. Skipped where insights is not deployed.
- engagement-points-once: every points award engagement recorded as done (a challenge's
  completion, a journey's award step) is on the ledger, and every adjustment posted under a
  challenge's or a journey's reason is one that engagement recorded: none lost, none twice.
  Skipped where engagement is not deployed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any

import asyncpg

from loyalty_check.databases import PREFETCH, Databases
from loyalty_check.findings import Finding, RuleResult

# A merged member's postings stay on their own account; tiers moves their activity to the
# survivor. Each absorbed member is read as the end of its chain of merges.
_OWNERS = """
WITH RECURSIVE chain(member_id, owner, depth) AS (
    SELECT member_id, merged_into, 1 FROM accounts WHERE merged_into IS NOT NULL
    UNION ALL
    SELECT c.member_id, a.merged_into, c.depth + 1
    FROM chain c JOIN accounts a ON a.member_id = c.owner
    WHERE a.merged_into IS NOT NULL AND c.depth < 64
), owners AS (
    SELECT DISTINCT ON (member_id) member_id, owner FROM chain ORDER BY member_id, depth DESC
)
"""

LEDGER_EVENTS = (
    _OWNERS
    + """
SELECT coalesce(o.owner, p.member_id)::text AS member_id, count(*) AS events,
       sum(p.points) AS points, sum(hashtextextended(p.posting_id::text, 0)) AS ids
FROM postings p LEFT JOIN owners o ON o.member_id = p.member_id
WHERE p.kind IN ('earn', 'reverse')
GROUP BY coalesce(o.owner, p.member_id) ORDER BY coalesce(o.owner, p.member_id)
"""
)

# Activity rows of points postings: not those of imported past orders.
_OF_POSTINGS = "event_id NOT LIKE 'order:%'"

TIERS_EVENTS = f"""
SELECT member_id::text AS member_id, count(*) AS events, sum(points) AS points,
       sum(hashtextextended(event_id, 0)) AS ids
FROM activity WHERE {_OF_POSTINGS} GROUP BY member_id ORDER BY member_id
"""

LEDGER_POSTINGS_OF = (
    _OWNERS
    + """
SELECT coalesce(o.owner, p.member_id)::text AS member_id, p.posting_id::text AS id, p.points
FROM postings p LEFT JOIN owners o ON o.member_id = p.member_id
WHERE p.kind IN ('earn', 'reverse') AND coalesce(o.owner, p.member_id) = ANY($1::uuid[])
"""
)

TIERS_EVENTS_OF = f"""
SELECT member_id::text AS member_id, event_id AS id, points
FROM activity WHERE member_id = ANY($1::uuid[]) AND {_OF_POSTINGS}
"""

# Per member: postings (count, points, a sum of hashes of their ids) and lot movements (count,
# points, hashes of posting and lot ids), on each side of the points -> insights feed.
_LEDGER_TOTALS = """
WITH p AS (
    SELECT member_id, count(*) AS postings, sum(points) AS points,
           sum(hashtextextended(posting_id::text, 0)) AS ids
    FROM {postings} GROUP BY member_id
), m AS (
    SELECT member_id, count(*) AS movements, sum(points) AS moved,
           sum(hashtextextended(posting_id::text || '/' || lot_id::text, 0)) AS moves
    FROM {movements} GROUP BY member_id
)
SELECT coalesce(p.member_id, m.member_id)::text AS member_id,
       coalesce(p.postings, 0) AS postings, coalesce(p.points, 0) AS points,
       coalesce(p.ids, 0) AS ids, coalesce(m.movements, 0) AS movements,
       coalesce(m.moved, 0) AS moved, coalesce(m.moves, 0) AS moves
FROM p FULL JOIN m ON m.member_id = p.member_id
ORDER BY coalesce(p.member_id, m.member_id){collate}
"""
POINTS_LEDGER = _LEDGER_TOTALS.format(postings="postings", movements="lot_movements", collate="")
INSIGHTS_LEDGER = _LEDGER_TOTALS.format(
    postings="ledger_postings", movements="lot_movements", collate=' COLLATE "C"'
)
POINTS_POSTINGS_OF = """
SELECT member_id::text AS member_id, posting_id::text AS id, points
FROM postings WHERE member_id = ANY($1::uuid[])
"""
INSIGHTS_POSTINGS_OF = """
SELECT member_id, posting_id AS id, points FROM ledger_postings WHERE member_id = ANY($1::text[])
"""
LEDGER_FIELDS = ("postings", "points", "ids", "movements", "moved", "moves")

REWARD_REDEMPTIONS = """
SELECT 'reward:' || redemption_id::text AS order_id, member_id::text AS member_id, state, points
FROM reward_redemptions ORDER BY 'reward:' || redemption_id::text COLLATE "C"
"""

REWARD_DEBITS = """
SELECT order_id, min(member_id::text) AS member_id,
       count(*) FILTER (WHERE kind = 'redeem') AS debits, sum(points) AS net
FROM postings
WHERE order_id LIKE 'reward:%' AND kind IN ('redeem', 'redemption_cancel')
GROUP BY order_id ORDER BY order_id COLLATE "C"
"""


async def _rows(conn: asyncpg.Connection, sql: str) -> AsyncIterator[asyncpg.Record]:
    async for row in conn.cursor(sql, prefetch=PREFETCH):
        yield row


async def merge(
    left: AsyncIterator[asyncpg.Record],
    right: AsyncIterator[asyncpg.Record],
    key: str,
    compare: Callable[[str, asyncpg.Record | None, asyncpg.Record | None], None],
) -> None:
    """Walk two streams sorted by `key` together; `compare(key, left, right)` for every key
    (None on the side that lacks it)."""
    lefts, rights = aiter(left), aiter(right)
    a = await anext(lefts, None)
    b = await anext(rights, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a[key] < b[key]):
            assert a is not None
            compare(a[key], a, None)
            a = await anext(lefts, None)
        elif a is None or b[key] < a[key]:
            compare(b[key], None, b)
            b = await anext(rights, None)
        else:
            compare(a[key], a, b)
            a, b = await anext(lefts, None), await anext(rights, None)


async def _rows_of(conn: asyncpg.Connection, sql: str, *args: Any) -> AsyncIterator[asyncpg.Record]:
    async for row in conn.cursor(sql, *args, prefetch=PREFETCH):
        yield row


def _totals(row: asyncpg.Record | None) -> tuple[int, int, Any]:
    return (0, 0, 0) if row is None else (row["events"], row["points"], row["ids"])


def _listed(ids: list[str], what: str, most: int = 3) -> str:
    shown = ", ".join(ids[:most]) + (f" and {len(ids) - most} more" if len(ids) > most else "")
    return f"{what} {shown}"


def _in(members: Collection[str], member: str) -> bool:
    """Whether a finding about `member` is wanted (`members` empty: every member's)."""
    return not members or member in members


async def tiers_activity(dbs: Databases, limit: int, members: Collection[str] = ()) -> RuleResult:
    result = RuleResult(
        "tiers-activity",
        "every PointsEarned and PointsReversed reached tiers once; each member's activity "
        "totals equal the ledger",
    )
    differing: list[tuple[str, tuple[int, int, Any], tuple[int, int, Any]]] = []

    def compare(member: str, ledger: asyncpg.Record | None, tiers: asyncpg.Record | None) -> None:
        expected, found = _totals(ledger), _totals(tiers)
        if expected != found and _in(members, member):
            result.total += 1
            if len(differing) < limit:
                differing.append((member, expected, found))

    async with dbs.snapshot("points") as points, dbs.snapshot("tiers") as tiers:
        await merge(_rows(points, LEDGER_EVENTS), _rows(tiers, TIERS_EVENTS), "member_id", compare)
        if not differing:
            return result
        named = [m for m, _, _ in differing]
        posted = await points.fetch(LEDGER_POSTINGS_OF, named)
        counted = await tiers.fetch(TIERS_EVENTS_OF, named)
    for member, expected, found in differing:
        result.findings.append(
            Finding(
                result.rule,
                member,
                f"{expected[0]} events, {expected[1]} points",
                f"{found[0]} events, {found[1]} points",
                _which(
                    [(r["id"], r["points"]) for r in posted if r["member_id"] == member],
                    [(r["id"], r["points"]) for r in counted if r["member_id"] == member],
                ),
            )
        )
    return result


def _which(posted: list[tuple[str, int]], counted: list[tuple[str, int]]) -> str:
    """What differs between a member's postings and tiers' activity, posting by posting."""
    on_ledger = dict(posted)
    times = Counter(i for i, _ in counted)
    points_counted = dict(counted)
    missing = sorted(i for i in on_ledger if i not in times)
    doubled = sorted(i for i, n in times.items() if n > 1)
    unknown = sorted(i for i in times if i not in on_ledger)
    changed = sorted(i for i, n in on_ledger.items() if points_counted.get(i, n) != n)
    parts = [
        _listed(ids, what)
        for ids, what in (
            (missing, "not counted: posting"),
            (doubled, "counted twice: posting"),
            (unknown, "counted without a posting: event"),
            (changed, "other points than the ledger: posting"),
        )
        if ids
    ]
    return "; ".join(parts) or "the same postings with other ids' hashes"


async def reward_paid_once(dbs: Databases, limit: int, members: Collection[str] = ()) -> RuleResult:
    result = RuleResult(
        "reward-paid-once",
        "every reward bought with points debited once when completed, never (or given back) "
        "when failed",
    )

    def finding(member: str, expected: str, found: str, order_id: str) -> None:
        if not _in(members, member):
            return
        result.total += 1
        if len(result.findings) < limit:
            result.findings.append(Finding(result.rule, member, expected, found, order_id))

    def compare(order_id: str, reward: asyncpg.Record | None, debit: asyncpg.Record | None) -> None:
        debits, net = (0, 0) if debit is None else (debit["debits"], int(debit["net"]))
        if reward is None:
            assert debit is not None
            finding(debit["member_id"], "a reward redemption", f"{debits} debits", order_id)
        elif reward["state"] == "completed" and (debits != 1 or net != -reward["points"]):
            found = f"{debits} debits, {-net} points kept"
            finding(reward["member_id"], f"1 debit of {reward['points']} points", found, order_id)
        elif reward["state"] == "failed" and net != 0:
            found = f"{debits} debits, {-net} points kept"
            finding(reward["member_id"], "nothing kept", found, order_id)

    async with dbs.snapshot("benefits") as benefits, dbs.snapshot("points") as points:
        await merge(
            _rows(benefits, REWARD_REDEMPTIONS), _rows(points, REWARD_DEBITS), "order_id", compare
        )
    return result


def _ledger(row: asyncpg.Record | None) -> tuple[int, ...]:
    return (0,) * len(LEDGER_FIELDS) if row is None else tuple(int(row[f]) for f in LEDGER_FIELDS)


def _said(totals: tuple[int, ...]) -> str:
    postings, points, _, movements, moved, _ = totals
    return f"{postings} postings, {points} points; {movements} lot movements, {moved} points"


async def insights_ledger(dbs: Databases, limit: int, members: Collection[str] = ()) -> RuleResult:
    result = RuleResult(
        "insights-ledger",
        "every posting and lot movement of the ledger reached insights once, with its points",
    )
    async with dbs.snapshot("points") as points:
        if not await points.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", dbs.name_of("insights")
        ):
            result.skipped = "no insights database (insights is not deployed)"
            return result
    differing: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []

    def compare(member: str, ledger: asyncpg.Record | None, kept: asyncpg.Record | None) -> None:
        expected, found = _ledger(ledger), _ledger(kept)
        if expected != found and _in(members, member):
            result.total += 1
            if len(differing) < limit:
                differing.append((member, expected, found))

    async with dbs.snapshot("points") as points, dbs.snapshot("insights") as insights:
        await merge(
            _rows(points, POINTS_LEDGER), _rows(insights, INSIGHTS_LEDGER), "member_id", compare
        )
        if not differing:
            return result
        named = [m for m, _, _ in differing]
        posted = await points.fetch(POINTS_POSTINGS_OF, named)
        kept = await insights.fetch(INSIGHTS_POSTINGS_OF, named)
    for member, expected, found in differing:
        detail = _which(
            [(r["id"], r["points"]) for r in posted if r["member_id"] == member],
            [(r["id"], r["points"]) for r in kept if r["member_id"] == member],
        )
        result.findings.append(
            Finding(
                result.rule,
                member,
                _said(expected),
                _said(found),
                "lot movements differ" if expected[:3] == found[:3] else detail,
            )
        )
    return result


# The points awards engagement recorded as done: a challenge completion's note names its
# posting ("points:<id>"); a journey's award step keeps it as the run's detail. A merge copies
# the absorbed member's completions to the survivor: one posting, listed once.
ENGAGEMENT_AWARDS = """
SELECT posting_id, min(member_id) AS member_id, min(source) AS source FROM (
    SELECT substr(t, 8) AS posting_id, c.member_id, 'challenges/' || c.challenge_id AS source
    FROM challenge_completions c CROSS JOIN LATERAL unnest(string_to_array(c.rewards, ' ')) t
    WHERE t LIKE 'points:%'
    UNION ALL
    SELECT r.detail, e.member_id, 'journeys/' || e.journey_id
    FROM step_runs r JOIN journey_entries e ON e.entry_id = r.entry_id
    JOIN journey_versions v ON v.journey_id = e.journey_id AND v.version = e.version
    WHERE r.outcome = 'done' AND (v.spec -> 'steps' -> r.step) ? 'award_points'
) recorded GROUP BY posting_id ORDER BY posting_id COLLATE "C"
"""
# The reasons engagement's awards are posted under (a leaderboard's payouts record no posting:
# a reason that is also a leaderboard's is left out).
ENGAGEMENT_REASONS = """
SELECT reason FROM (
    SELECT spec ->> 'display_name' AS reason FROM challenges
    UNION
    SELECT coalesce(nullif(s -> 'award_points' ->> 'reason', ''),
                    'journey ' || (v.spec ->> 'display_name'))
    FROM journey_versions v CROSS JOIN LATERAL jsonb_array_elements(v.spec -> 'steps') s
    WHERE s ? 'award_points'
) reasons WHERE reason NOT IN (SELECT spec ->> 'display_name' FROM leaderboards)
"""
ENGAGEMENT_ADJUSTMENTS = """
SELECT posting_id::text AS posting_id, member_id::text AS member_id, reason, points
FROM postings WHERE kind = 'adjust' AND reason = ANY($1::text[])
ORDER BY posting_id::text COLLATE "C"
"""


async def engagement_points_once(
    dbs: Databases, limit: int, members: Collection[str] = ()
) -> RuleResult:
    result = RuleResult(
        "engagement-points-once",
        "every points award of a challenge or a journey step recorded as done is on the ledger "
        "once, and no adjustment under their reasons is unrecorded",
    )
    async with dbs.snapshot("points") as points:
        if not await points.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
            dbs.name_of("engagement"),
        ):
            result.skipped = "no engagement database (engagement is not deployed)"
            return result

    def finding(member: str, expected: str, found: str, detail: str) -> None:
        if not _in(members, member):
            return
        result.total += 1
        if len(result.findings) < limit:
            result.findings.append(Finding(result.rule, member, expected, found, detail))

    def compare(posting_id: str, recorded: asyncpg.Record | None, posted: Any) -> None:
        if posted is None:
            assert recorded is not None
            finding(
                recorded["member_id"],
                "an adjustment on the ledger",
                "none",
                f"{recorded['source']}: posting {posting_id}",
            )
        elif recorded is None:
            finding(
                posted["member_id"],
                "an award engagement recorded",
                f"{posted['points']} points unrecorded",
                f"{posted['reason']}: posting {posting_id}",
            )

    async with dbs.snapshot("engagement") as engagement, dbs.snapshot("points") as points:
        reasons = [r["reason"] for r in await engagement.fetch(ENGAGEMENT_REASONS)]
        await merge(
            _rows(engagement, ENGAGEMENT_AWARDS),
            _rows_of(points, ENGAGEMENT_ADJUSTMENTS, reasons),
            "posting_id",
            compare,
        )
    return result
