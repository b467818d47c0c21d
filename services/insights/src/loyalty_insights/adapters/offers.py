"""Personalised offers in the database: the tables rebuilt after each refresh (`offer_similarities`,
`offer_popularity`, migration 0014) and what a request reads, which is only the member's own
facts (its family's, through the merges) and the similarity rows of the offers it used.

An offer is used by a reward redeemed, a coupon redeemed or a coupon claimed of an offer (its
template: the member's own pick), less a coupon redemption released; it is held by a coupon
issued and not redeemed. A claim is at no unit (the offer's publisher is not where the member
was): it counts group-wide, not in a unit's popularity. Uses count for the end of the member's
chain of survivors, as every member figure does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from loyalty_kit.db import driver_connection
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_insights.adapters.figures import OWNERS
from loyalty_insights.adapters.member_figures import OFFERS_PURPOSE
from loyalty_insights.domain.recommendations import (
    MIN_CO_MEMBERS,
    NEIGHBOURS,
    Offer,
    OfferKind,
)

REBUILD_LOCK = 0x0FFE25  # pg_try_advisory_xact_lock key: a rebuild of the offers' tables

# The uses before $1 by the member they count for (the survivor), with the unit used at and
# the member's RFM segment (NULL: none).
_USES = f"""
CREATE TEMPORARY TABLE offer_uses ON COMMIT DROP AS
{OWNERS}, used AS (
    SELECT DISTINCT coalesce(o.owner, b.member_id) AS owner,
           CASE b.kind WHEN 'reward_redeemed' THEN 'reward' ELSE 'coupon' END AS kind,
           b.code, CASE b.kind WHEN 'coupon_claimed' THEN NULL ELSE b.unit END AS unit
    FROM benefit_facts b
    LEFT JOIN owners o ON o.member_id = b.member_id
    WHERE b.kind IN ('reward_redeemed', 'coupon_redeemed', 'coupon_claimed')
      AND b.occurred_at < $1
      AND NOT EXISTS (
          SELECT 1 FROM benefit_facts r
          WHERE r.member_id = b.member_id AND r.kind = 'coupon_released'
            AND r.fact_id = b.fact_id
      )
)
SELECT u.*, f.rfm_segment AS segment
FROM used u LEFT JOIN member_figures f ON f.member_id = u.owner
"""

# Each offer used, numbered (the statements below join and group integers, not codes), with
# how many members used it (`users`, set once `offer_items` is made); each member's offers by
# number.
_CATALOGUE = """
CREATE TEMPORARY TABLE offer_catalogue ON COMMIT DROP AS
SELECT row_number() OVER (ORDER BY kind, code)::int AS item, kind, code, 0::float8 AS users
FROM (SELECT DISTINCT kind, code FROM offer_uses) AS offers
"""

_ITEMS = """
CREATE TEMPORARY TABLE offer_items ON COMMIT DROP AS
SELECT DISTINCT u.owner, c.item, u.segment
FROM offer_uses u JOIN offer_catalogue c ON c.kind = u.kind AND c.code = u.code
"""

_USERS = """
UPDATE offer_catalogue c SET users = n.users
FROM (SELECT item, count(*)::float8 AS users FROM offer_items GROUP BY item) AS n
WHERE n.item = c.item
"""

# Cosine of the sets of members who used two offers (each pair counted once, then both ways);
# each offer's $1 nearest, pairs of fewer than $2 members left out. Ties by the other offer in
# byte order (the domain's order).
_SIMILARITIES = """
INSERT INTO offer_similarities (kind, code, other_kind, other_code, score, co_members)
WITH pairs AS (
    SELECT a.item, b.item AS other, count(*) AS co
    FROM offer_items a JOIN offer_items b ON b.owner = a.owner AND b.item > a.item
    GROUP BY a.item, b.item
    HAVING count(*) >= $2
), both_ways AS (
    SELECT item, other, co FROM pairs
    UNION ALL
    SELECT other, item, co FROM pairs
), scored AS (
    SELECT w.item, w.co, w.co / sqrt(ca.users * cb.users) AS score,
           ca.kind, ca.code, cb.kind AS other_kind, cb.code AS other_code
    FROM both_ways w
    JOIN offer_catalogue ca ON ca.item = w.item
    JOIN offer_catalogue cb ON cb.item = w.other
), ranked AS (
    SELECT s.*, row_number() OVER (
        PARTITION BY s.item
        ORDER BY s.score DESC, s.other_kind COLLATE "C", s.other_code COLLATE "C"
    ) AS nearest
    FROM scored s
)
SELECT kind, code, other_kind, other_code, score, co FROM ranked WHERE nearest <= $1
"""

# Members who used each offer by unit ('' every unit) and RFM segment ('' every member), and
# their share of the members who used any offer there. A member's uses are distinct by unit
# and offer (`offer_uses`) and by offer (`offer_items`), so the counts need no DISTINCT. A
# claim's use (its unit NULL) joins no unit's row: it counts for '' only, through offer_items.
_POPULARITY = """
INSERT INTO offer_popularity (unit, segment, kind, code, members, share)
WITH placed AS (
    SELECT u.owner, u.unit, c.item, u.segment
    FROM offer_uses u JOIN offer_catalogue c ON c.kind = u.kind AND c.code = u.code
    UNION ALL
    SELECT owner, '', item, segment FROM offer_items
), per_offer AS (
    SELECT unit, CASE WHEN grouping(segment) = 1 THEN '' ELSE segment END AS segment, item,
           count(*) AS members
    FROM placed
    GROUP BY GROUPING SETS ((unit, item), (unit, segment, item))
    HAVING grouping(segment) = 1 OR segment IS NOT NULL
), people AS (
    SELECT DISTINCT owner, unit, segment FROM offer_uses
    UNION ALL
    SELECT DISTINCT owner, '', segment FROM offer_items
), per_place AS (
    SELECT unit, CASE WHEN grouping(segment) = 1 THEN '' ELSE segment END AS segment,
           count(*)::float8 AS members
    FROM people
    GROUP BY GROUPING SETS ((unit), (unit, segment))
    HAVING grouping(segment) = 1 OR segment IS NOT NULL
)
SELECT o.unit, o.segment, c.kind, c.code, o.members, o.members / p.members
FROM per_offer o
JOIN per_place p ON p.unit = o.unit AND p.segment = o.segment
JOIN offer_catalogue c ON c.item = o.item
"""

# The member's survivor, whether it was erased, its family's latest personalised-offers
# consent and its RFM segment.
MEMBER_STATEMENT = """
WITH RECURSIVE up (owner, depth) AS (
    SELECT $1::text, 0
    UNION
    SELECT g.survivor_id, u.depth + 1 FROM up u JOIN member_merges g ON g.absorbed_id = u.owner
), target AS (
    SELECT owner FROM up ORDER BY depth DESC LIMIT 1
), fam (member_id) AS (
    SELECT owner FROM target
    UNION
    SELECT g.absorbed_id FROM fam f JOIN member_merges g ON g.survivor_id = f.member_id
)
SELECT t.owner AS member_id,
       EXISTS (SELECT 1 FROM erased_members x WHERE x.member_id = t.owner) AS erased,
       (SELECT c.granted FROM consents c
        WHERE c.member_id IN (SELECT member_id FROM fam) AND c.purpose = $2
        ORDER BY c.changed_at DESC LIMIT 1) AS consent,
       (SELECT f.rfm_segment FROM member_figures f WHERE f.member_id = t.owner) AS segment,
       ARRAY(SELECT member_id FROM fam) AS family
FROM target t
"""

FACTS_STATEMENT = """
SELECT b.kind, b.fact_id, b.code,
       EXISTS (SELECT 1 FROM benefit_facts r WHERE r.member_id = b.member_id
               AND r.kind = 'coupon_released' AND r.fact_id = b.fact_id) AS released
FROM benefit_facts b
WHERE b.member_id = ANY($1::text[])
  AND b.kind IN ('reward_redeemed', 'coupon_redeemed', 'coupon_claimed', 'coupon_issued')
"""

NEIGHBOURS_STATEMENT = """
SELECT s.kind, s.code, s.other_kind, s.other_code, s.score
FROM offer_similarities s
JOIN unnest($1::text[], $2::text[]) AS m(kind, code) ON s.kind = m.kind AND s.code = m.code
WHERE $3 = '' OR EXISTS (
    SELECT 1 FROM offer_popularity p
    WHERE p.unit = $3 AND p.segment = '' AND p.kind = s.other_kind AND p.code = s.other_code
)
"""

POPULAR_STATEMENT = """
SELECT kind, code, share FROM offer_popularity
WHERE unit = $1 AND segment = $2
ORDER BY share DESC, kind COLLATE "C", code COLLATE "C"
LIMIT $3
"""


@dataclass(frozen=True)
class OfferMember:
    """What a request needs of the member: its survivor, and its family's history."""

    member_id: str
    erased: bool
    consent: bool  # the personalised-offers consent (none recorded: given)
    segment: str  # '' when it has no RFM segment
    used: frozenset[Offer] = field(default_factory=frozenset)
    held: frozenset[Offer] = field(default_factory=frozenset)


@dataclass(frozen=True)
class OffersRebuilt:
    similarities: int
    popularity: int


def _offer(kind: str, code: str) -> Offer:
    return OfferKind(kind), code


class OfferStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _conn(self) -> Any:
        return await driver_connection(self.session)

    async def rebuild_lock(self, wait: bool) -> bool:
        """One rebuild at a time across replicas (to the end of the transaction): waits for
        it, or (not `wait`) False when another transaction holds it."""
        conn = await self._conn()
        if wait:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", REBUILD_LOCK)
            return True
        return bool(await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", REBUILD_LOCK))

    async def rebuild(self, as_of: datetime) -> OffersRebuilt:
        """Both tables from the uses before `as_of`, in the caller's transaction (rows are
        deleted, not truncated, so requests keep reading the old ones until it commits)."""
        conn = await self._conn()
        await conn.execute("DROP TABLE IF EXISTS offer_uses, offer_catalogue, offer_items")
        await conn.execute(_USES, as_of)
        await conn.execute("ANALYZE offer_uses")
        await conn.execute(_CATALOGUE)
        await conn.execute(_ITEMS)
        await conn.execute(_USERS)
        await conn.execute("ANALYZE offer_catalogue, offer_items")
        await conn.execute("DELETE FROM offer_similarities")
        await conn.execute("DELETE FROM offer_popularity")
        similar = await conn.execute(_SIMILARITIES, NEIGHBOURS, MIN_CO_MEMBERS)
        popular = await conn.execute(_POPULARITY)
        await conn.execute("DROP TABLE offer_uses, offer_catalogue, offer_items")
        return OffersRebuilt(int(similar.split()[-1]), int(popular.split()[-1]))

    async def member(self, member_id: str) -> OfferMember:
        conn = await self._conn()
        row = await conn.fetchrow(MEMBER_STATEMENT, member_id, OFFERS_PURPOSE)
        used: set[Offer] = set()
        issued: dict[str, str] = {}  # coupon code -> template
        redeemed: set[str] = set()  # coupon codes
        for fact in await conn.fetch(FACTS_STATEMENT, list(row["family"])):
            if fact["kind"] == "coupon_issued":
                issued[fact["fact_id"]] = fact["code"]
            elif not fact["released"]:
                kind = OfferKind.REWARD if fact["kind"] == "reward_redeemed" else OfferKind.COUPON
                used.add((kind, fact["code"]))
                if fact["kind"] == "coupon_redeemed":
                    redeemed.add(fact["fact_id"].split(":", 1)[0])
        held = {(OfferKind.COUPON, t) for c, t in issued.items() if c not in redeemed}
        return OfferMember(
            row["member_id"],
            row["erased"],
            row["consent"] is not False,
            row["segment"] or "",
            frozenset(used),
            frozenset(held),
        )

    async def neighbours(
        self, offers: Sequence[Offer], unit: str
    ) -> dict[Offer, dict[Offer, float]]:
        """The similarity rows of `offers`, their others at `unit` only (a unit's offer: one
        some member used there) unless it is ''."""
        if not offers:
            return {}
        conn = await self._conn()
        rows = await conn.fetch(
            NEIGHBOURS_STATEMENT, [o[0].value for o in offers], [o[1] for o in offers], unit
        )
        found: dict[Offer, dict[Offer, float]] = {}
        for r in rows:
            found.setdefault(_offer(r["kind"], r["code"]), {})[
                _offer(r["other_kind"], r["other_code"])
            ] = r["score"]
        return found

    async def popular(self, unit: str, segment: str, limit: int) -> list[tuple[Offer, float]]:
        """The `limit` most used offers at `unit` ('' every unit) in `segment` ('' every
        member), with their share, best first."""
        conn = await self._conn()
        rows = await conn.fetch(POPULAR_STATEMENT, unit, segment, limit)
        return [(_offer(r["kind"], r["code"]), r["share"]) for r in rows]
