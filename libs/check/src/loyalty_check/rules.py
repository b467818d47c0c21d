"""The rules that one database can answer: each a set-based query, aggregated by member in the
database (this is what makes a million members fit in seconds), answering the first `$1`
findings in member order and, on every row, how many there are in all.

Every query answers `member_id, expected, found, detail, total` as text (total: bigint). `$2`
is the rule's bound in seconds where it has one. Balances are read over every posting whatever
its kind, so a new posting kind needs no change here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Bound = Literal["", "outbox", "stuck"]


@dataclass(frozen=True)
class SqlRule:
    name: str
    description: str
    services: tuple[str, ...]  # the databases it runs on (each one's findings add up)
    sql: str
    bound: Bound = ""  # which bound `$2` is (see Options)


# An account's balance (available + pending) is the sum of its postings, of every kind.
BALANCE_POSTINGS = SqlRule(
    "balance-postings",
    "every account's balance (available + pending) equals the sum of its postings",
    ("points",),
    """
    WITH ledger AS (
        SELECT member_id, sum(points) AS points FROM postings GROUP BY member_id
    )
    SELECT coalesce(a.member_id, l.member_id)::text AS member_id,
           coalesce(l.points, 0)::text AS expected,
           coalesce(a.available + a.pending, 0)::text AS found,
           CASE WHEN a.member_id IS NULL THEN 'postings without an account' ELSE '' END AS detail,
           count(*) OVER () AS total
    FROM accounts a FULL JOIN ledger l ON l.member_id = a.member_id
    WHERE coalesce(a.available + a.pending, 0) <> coalesce(l.points, 0)
    ORDER BY 1 LIMIT $1
    """,
)

# Available points are what the open lots hold; pending points what the pending lots hold.
BALANCE_LOTS = SqlRule(
    "balance-lots",
    "every account's available and pending points equal what its open and pending lots hold",
    ("points",),
    """
    WITH held AS (
        SELECT member_id,
               coalesce(sum(remaining) FILTER (WHERE status = 'open'), 0) AS open,
               coalesce(sum(remaining) FILTER (WHERE status = 'pending'), 0) AS pending
        FROM lots GROUP BY member_id
    )
    SELECT coalesce(a.member_id, h.member_id)::text AS member_id,
           format('available %s, pending %s', coalesce(h.open, 0), coalesce(h.pending, 0)),
           format('available %s, pending %s', coalesce(a.available, 0), coalesce(a.pending, 0)),
           CASE WHEN a.member_id IS NULL THEN 'lots without an account' ELSE '' END,
           count(*) OVER ()
    FROM accounts a FULL JOIN held h ON h.member_id = a.member_id
    WHERE coalesce(a.available, 0) <> coalesce(h.open, 0)
       OR coalesce(a.pending, 0) <> coalesce(h.pending, 0)
    ORDER BY 1 LIMIT $1
    """,
)

# A unit's order earns once: one earn posting per (unit, order id), the one `orders` records.
ORDER_EARNED_ONCE = SqlRule(
    "order-earned-once",
    "every order earned once: one earn posting per unit and order id, the one the order records",
    ("points",),
    """
    WITH earns AS (
        SELECT unit, order_id, count(*) AS postings,
               min(member_id::text) AS member_id, min(posting_id::text) AS posting_id
        FROM postings WHERE kind = 'earn' GROUP BY unit, order_id
    )
    SELECT coalesce(e.member_id, o.member_id::text),
           '1 earn posting, recorded in orders',
           format('%s earn postings%s', coalesce(e.postings, 0),
                  CASE WHEN o.order_id IS NULL THEN ', no order record'
                       WHEN e.postings = 1 AND o.posting_id::text <> e.posting_id
                       THEN ', the order records another posting' ELSE '' END),
           format('unit %s, order %s', coalesce(e.unit, o.unit), coalesce(e.order_id, o.order_id)),
           count(*) OVER ()
    FROM earns e FULL JOIN orders o ON o.unit = e.unit AND o.order_id = e.order_id
    WHERE e.postings IS DISTINCT FROM 1 OR o.order_id IS NULL
       OR o.posting_id::text <> e.posting_id
    ORDER BY 1, 4 LIMIT $1
    """,
)

# Quota used is the number of counted consumptions not released (per member, benefit, period).
# Consumptions of erased members stay as anonymous counts and their quota rows go: not compared.
BENEFIT_QUOTA = SqlRule(
    "benefit-consumed-once",
    "every consumed benefit counted once: quota used equals the counted, unreleased consumptions",
    ("benefits",),
    """
    WITH consumed AS (
        SELECT member_id, benefit_code, period_key, count(*) AS uses
        FROM consumptions
        WHERE counted AND released_at IS NULL
          AND member_id <> '00000000-0000-0000-0000-000000000000'
        GROUP BY member_id, benefit_code, period_key
    )
    SELECT coalesce(q.member_id, c.member_id)::text,
           format('%s uses', coalesce(c.uses, 0)),
           format('%s counted', coalesce(q.used, 0)),
           format('benefit %s, period %s', coalesce(q.benefit_code, c.benefit_code),
                  coalesce(q.period_key, c.period_key)),
           count(*) OVER ()
    FROM quota_usage q
    FULL JOIN consumed c USING (member_id, benefit_code, period_key)
    WHERE coalesce(q.used, 0) <> coalesce(c.uses, 0)
    ORDER BY 1, 4 LIMIT $1
    """,
)

# A redeemed coupon carries its one redemption (when, where, which order, the discount); a
# coupon that is not redeemed carries none (a release clears it).
COUPON_REDEEMED_ONCE = SqlRule(
    "coupon-redeemed-once",
    "every redeemed coupon carries exactly its one redemption; other coupons carry none",
    ("benefits",),
    """
    SELECT member_id::text,
           CASE WHEN state = 'redeemed' THEN 'a redemption (time, unit, order, discount)'
                ELSE 'no redemption' END,
           CASE WHEN state = 'redeemed' THEN 'redeemed without one'
                ELSE format('%s with a redemption', state) END,
           format('coupon seq %s, template %s', seq, template_code),
           count(*) OVER ()
    FROM coupons
    WHERE CASE WHEN state = 'redeemed'
               THEN redeemed_at IS NULL OR redeemed_unit = '' OR redeemed_order_id = ''
                    OR discount IS NULL
               ELSE redeemed_at IS NOT NULL OR redeemed_unit <> '' OR redeemed_order_id <> ''
                    OR discount IS NOT NULL END
    ORDER BY 1, 4 LIMIT $1
    """,
)

OUTBOX_PUBLISHED = SqlRule(
    "outbox-published",
    "no outbox row unpublished past the bound (--outbox-bound)",
    ("identity", "points", "tiers", "benefits", "gateway"),
    """
    SELECT '',
           format('published within %s s', $2::float8),
           format('unpublished for %s s', floor(extract(epoch FROM now() - created_at))),
           format('%s outbox seq %s, %s, event %s', current_database(), seq, event_type, event_id),
           count(*) OVER ()
    FROM kit_outbox
    WHERE published_at IS NULL AND created_at < now() - make_interval(secs => $2)
    ORDER BY seq LIMIT $1
    """,
    bound="outbox",
)

# Final: completed, open (given back; a retry starts a new attempt), refunded. Running and
# undoing are settled by every gateway's recovery job within seconds of their lease ending; one
# still there past the bound is not being recovered.
CHECKOUT_FINAL = SqlRule(
    "checkout-final",
    "every checkout final (completed, open, refunded) or still within the recovery bound",
    ("gateway",),
    """
    SELECT member_id,
           'completed, open or refunded',
           format('%s for %s s', state, floor(extract(epoch FROM now() - updated_at))),
           format('checkout %s, attempt %s, unit %s, order %s',
                  checkout_id, attempt, unit, order_id),
           count(*) OVER ()
    FROM checkouts
    WHERE state NOT IN ('completed', 'open', 'refunded')
      AND (state NOT IN ('running', 'undoing')
           OR updated_at < now() - make_interval(secs => $2))
    ORDER BY 1, 4 LIMIT $1
    """,
    bound="stuck",
)

# A reward bought with points: completed or failed, or reserved/charged within the bound (the
# benefits service's recovery finishes or undoes it).
REWARD_FINAL = SqlRule(
    "reward-redemption-final",
    "every reward redemption final (completed, failed) or still within the recovery bound",
    ("benefits",),
    """
    SELECT member_id::text,
           'completed or failed',
           format('%s for %s s', state, floor(extract(epoch FROM now() - updated_at))),
           format('redemption %s, reward %s', redemption_id, reward_code),
           count(*) OVER ()
    FROM reward_redemptions
    WHERE state NOT IN ('completed', 'failed')
      AND (state NOT IN ('reserved', 'charged')
           OR updated_at < now() - make_interval(secs => $2))
    ORDER BY 1, 4 LIMIT $1
    """,
    bound="stuck",
)

SQL_RULES = (
    BALANCE_POSTINGS,
    BALANCE_LOTS,
    ORDER_EARNED_ONCE,
    BENEFIT_QUOTA,
    COUPON_REDEEMED_ONCE,
    REWARD_FINAL,
    CHECKOUT_FINAL,
    OUTBOX_PUBLISHED,
)
