"""Many accounts in a few statements (a chunk of an import is ~2,000 members): locked together
in member order, and their credits (postings, new lots, the lots' movements) and balances
written with one `unnest` statement per table instead of a round trip per member."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from loyalty_points.domain.account import Account
from loyalty_points.domain.events import LedgerPosted
from loyalty_points.domain.ledger import Changes

ACCOUNT_COLUMNS = (
    "member_id, state, merged_into, tier, tier_effective_at, available, pending, "
    "lifetime_earned, referral_pending"
)

_MAKE_ACCOUNTS = """
INSERT INTO accounts (member_id, updated_at)
SELECT m, $2::timestamptz FROM unnest($1::uuid[]) AS m ORDER BY m
ON CONFLICT (member_id) DO NOTHING
"""

_LOCK_ACCOUNTS = f"""
SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE member_id = ANY($1::uuid[])
ORDER BY member_id FOR UPDATE
"""

_ADD_POSTINGS = """
INSERT INTO postings (member_id, posting_id, kind, points, pending, available_at, unit, channel,
                      order_id, occurred_at, posted_at, programme_version, breakdown,
                      related_posting_id, reason, unrecovered_points)
SELECT p.member_id, p.posting_id, p.kind, p.points, p.pending, p.available_at, p.unit, p.channel,
       p.order_id, p.occurred_at, p.posted_at, p.programme_version, p.breakdown::jsonb,
       p.related_posting_id, p.reason, p.unrecovered_points
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bigint[], $5::boolean[],
            $6::timestamptz[], $7::text[], $8::text[], $9::text[], $10::timestamptz[],
            $11::timestamptz[], $12::bigint[], $13::text[], $14::uuid[], $15::text[],
            $16::bigint[])
     AS p(member_id, posting_id, kind, points, pending, available_at, unit, channel, order_id,
          occurred_at, posted_at, programme_version, breakdown, related_posting_id, reason,
          unrecovered_points)
"""

_ADD_LOTS = """
INSERT INTO lots (member_id, lot_id, posting_id, earned_unit, points, remaining, status,
                  earned_at, available_at, expires_at)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::bigint[],
                     $6::bigint[], $7::text[], $8::timestamptz[], $9::timestamptz[],
                     $10::timestamptz[])
"""

_ADD_MOVES = """
INSERT INTO lot_movements (member_id, posting_id, lot_id, points, earned_unit, unit, posted_at)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::bigint[], $5::text[], $6::text[],
                     $7::timestamptz[])
"""

_SAVE_ACCOUNTS = """
UPDATE accounts AS a
SET state = b.state, merged_into = b.merged_into, tier = b.tier,
    tier_effective_at = b.tier_effective_at, available = b.available, pending = b.pending,
    lifetime_earned = b.lifetime_earned, referral_pending = b.referral_pending,
    updated_at = $10::timestamptz
FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::timestamptz[], $6::bigint[],
            $7::bigint[], $8::bigint[], $9::boolean[])
     AS b(member_id, state, merged_into, tier, tier_effective_at, available, pending,
          lifetime_earned, referral_pending)
WHERE a.member_id = b.member_id
"""


def account_of(row: Any) -> Account:
    return Account(
        member_id=str(row["member_id"]),
        state=row["state"],
        merged_into=str(row["merged_into"] or ""),
        tier=row["tier"],
        tier_effective_at=row["tier_effective_at"],
        available=row["available"],
        pending=row["pending"],
        lifetime_earned=row["lifetime_earned"],
        referral_pending=row["referral_pending"],
    )


def only_credits(changes: Changes) -> bool:
    """Whether an account's changes are new postings and lots only (what `save_credits`
    writes): nothing else changed since it was loaded."""
    return not (
        changes.earn or changes.lots or changes.settled or changes.absorbed or changes.given_back
    )


async def lock_accounts(conn: Any, member_ids: Sequence[str], now: datetime) -> list[Account]:
    """The members' accounts (made first where new), locked in member order, as every chunked
    job locks them: two lockers never wait on each other in a cycle."""
    ids = sorted(set(member_ids))
    await conn.execute(_MAKE_ACCOUNTS, ids, now)
    return [account_of(row) for row in await conn.fetch(_LOCK_ACCOUNTS, ids)]


async def save_credits(conn: Any, accounts: Sequence[Account], now: datetime) -> None:
    """Write what the accounts recorded (postings, new lots and their movements; see
    `only_credits`) and their rows: four statements for any number of accounts."""
    postings = [p for a in accounts for p in a.changes.postings]
    lots = [(a.member_id, lot, n) for a in accounts for lot, n in a.changes.new_lots]
    moves = [(a.member_id, m) for a in accounts for m in a.changes.moves]
    for account in accounts:
        if (posted := LedgerPosted.of(account.member_id, account.changes)) is not None:
            account.events.append(posted)
        account.changes = Changes()
    if postings:
        await conn.execute(
            _ADD_POSTINGS,
            [p.member_id for p in postings],
            [p.posting_id for p in postings],
            [p.kind.value for p in postings],
            [p.points for p in postings],
            [p.pending for p in postings],
            [p.available_at for p in postings],
            [p.unit for p in postings],
            [p.channel for p in postings],
            [p.order_id for p in postings],
            [p.occurred_at for p in postings],
            [p.posted_at for p in postings],
            [p.programme_version for p in postings],
            [json.dumps(p.breakdown) if p.breakdown is not None else None for p in postings],
            [p.related_posting_id for p in postings],
            [p.reason for p in postings],
            [p.unrecovered_points for p in postings],
        )
    if lots:
        await conn.execute(
            _ADD_LOTS,
            [m for m, _, _ in lots],
            [lot.lot_id for _, lot, _ in lots],
            [lot.posting_id for _, lot, _ in lots],
            [lot.earned_unit for _, lot, _ in lots],
            [n for _, _, n in lots],
            [lot.remaining for _, lot, _ in lots],
            [lot.status.value for _, lot, _ in lots],
            [lot.earned_at for _, lot, _ in lots],
            [lot.available_at for _, lot, _ in lots],
            [lot.expires_at for _, lot, _ in lots],
        )
    if moves:
        await conn.execute(
            _ADD_MOVES,
            [m for m, _ in moves],
            [move.posting_id for _, move in moves],
            [move.lot.lot_id for _, move in moves],
            [move.points for _, move in moves],
            [move.lot.earned_unit for _, move in moves],
            [move.unit for _, move in moves],
            [move.at for _, move in moves],
        )
    await conn.execute(
        _SAVE_ACCOUNTS,
        [a.member_id for a in accounts],
        [a.state for a in accounts],
        [a.merged_into or None for a in accounts],
        [a.tier for a in accounts],
        [a.tier_effective_at for a in accounts],
        [a.available for a in accounts],
        [a.pending for a in accounts],
        [a.lifetime_earned for a in accounts],
        [a.referral_pending for a in accounts],
        now,
    )
