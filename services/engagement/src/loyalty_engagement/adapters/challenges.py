"""Challenges, members' progress and completions, badges and their audit, leaderboards and
members' scores in the engagement database (SQLAlchemy Core over the unit of work's session)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_engagement.adapters.tables import (
    badge_audit,
    challenge_completions,
    challenge_contributions,
    challenge_progress,
    challenge_purchases,
    challenges,
    counted_events,
    leaderboard_closes,
    leaderboard_payouts,
    leaderboard_scores,
    leaderboards,
    member_badges,
    member_merges,
    purchase_refunds,
)
from loyalty_engagement.domain.challenges import (
    ChallengeSpec,
    Goal,
    GoalKind,
    LeaderboardReward,
    LeaderboardSpec,
    Metric,
    Progress,
    Purchase,
    Reward,
    Window,
    WindowKind,
)


@dataclass(frozen=True)
class StoredChallenge:
    challenge_id: str
    spec: ChallengeSpec
    start_at: datetime
    created_at: datetime
    key: str = ""  # the programme file's name for it ("" : none)


@dataclass(frozen=True)
class MemberProgress:
    challenge_id: str
    period: str
    progress: Progress
    completed_at: datetime | None


@dataclass(frozen=True)
class KeptPurchase:
    member_id: str
    occurred_at: datetime
    purchase: Purchase


@dataclass(frozen=True)
class HeldBadge:
    badge: str
    source: str
    earned_at: datetime


@dataclass(frozen=True)
class StoredLeaderboard:
    leaderboard_id: str
    spec: LeaderboardSpec


@dataclass(frozen=True)
class Payout:
    member_id: str
    reward: int
    rank: int
    score: int


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _at(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def challenge_document(spec: ChallengeSpec) -> dict[str, Any]:
    g, w, r = spec.goal, spec.window, spec.reward
    return {
        "display_name": spec.display_name,
        "unit": spec.unit,
        "goal": {
            "kind": g.kind.value,
            "target": g.target,
            "unit": g.unit,
            "units": list(g.units),
            "activity_type": g.activity_type,
        },
        "window": {"kind": w.kind.value, "days": w.days},
        "reward": {
            "points": r.points,
            "funding_unit": r.funding_unit,
            "coupon_template": r.coupon_template,
            "coupon_unit": r.coupon_unit,
            "badge": r.badge,
        },
        "repeatable": spec.repeatable,
        "time_zone": spec.time_zone,
        "start_at": _when(spec.start_at),
        "end_at": _when(spec.end_at),
    }


def challenge_spec(d: dict[str, Any]) -> ChallengeSpec:
    g, w, r = d["goal"], d["window"], d["reward"]
    return ChallengeSpec(
        display_name=d["display_name"],
        unit=d["unit"],
        goal=Goal(
            GoalKind(g["kind"]), g["target"], g["unit"], tuple(g["units"]), g["activity_type"]
        ),
        window=Window(WindowKind(w["kind"]), w["days"]),
        reward=Reward(**r),
        repeatable=d["repeatable"],
        time_zone=d["time_zone"],
        start_at=_at(d["start_at"]),
        end_at=_at(d["end_at"]),
    )


def leaderboard_document(spec: LeaderboardSpec) -> dict[str, Any]:
    return {
        "display_name": spec.display_name,
        "unit": spec.unit,
        "metric": spec.metric.value,
        "scope_unit": spec.scope_unit,
        "period": spec.period.value,
        "rewards": [
            {
                "rank": r.rank,
                "threshold": r.threshold,
                "points": r.points,
                "funding_unit": r.funding_unit,
                "coupon_template": r.coupon_template,
            }
            for r in spec.rewards
        ],
    }


def leaderboard_spec(d: dict[str, Any]) -> LeaderboardSpec:
    return LeaderboardSpec(
        display_name=d["display_name"],
        unit=d["unit"],
        metric=Metric(d["metric"]),
        scope_unit=d["scope_unit"],
        period=WindowKind(d["period"]),
        rewards=tuple(LeaderboardReward(**r) for r in d["rewards"]),
    )


def _challenge(row: Any) -> StoredChallenge:
    return StoredChallenge(
        row.challenge_id, challenge_spec(row.spec), row.start_at, row.created_at, row.key or ""
    )


class ChallengeStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- challenges ---------------------------------------------------------------------

    async def add(
        self, challenge_id: str, spec: ChallengeSpec, now: datetime, key: str = ""
    ) -> StoredChallenge | None:
        """The challenge added; None (nothing added) when another challenge has its key."""
        start = spec.start_at or now
        added = await self.session.execute(
            insert(challenges)
            .values(
                challenge_id=challenge_id,
                unit=spec.unit,
                goal_kind=spec.goal.kind.value,
                spec=challenge_document(spec),
                start_at=start,
                end_at=spec.end_at,
                created_at=now,
                key=key or None,
            )
            .on_conflict_do_nothing()
            .returning(challenges.c.challenge_id)
        )
        if added.first() is None:
            return None
        return StoredChallenge(challenge_id, spec, start, now, key)

    async def get(self, challenge_id: str) -> StoredChallenge | None:
        row = (
            await self.session.execute(
                select(challenges).where(challenges.c.challenge_id == challenge_id)
            )
        ).first()
        return _challenge(row) if row else None

    async def page(self, unit: str | None, after: str, limit: int) -> list[StoredChallenge]:
        query = select(challenges).where(challenges.c.challenge_id > after)
        if unit is not None:
            query = query.where(challenges.c.unit == unit)
        rows = await self.session.execute(query.order_by(challenges.c.challenge_id).limit(limit))
        return [_challenge(r) for r in rows]

    async def running(self, kinds: Sequence[GoalKind], at: datetime) -> list[StoredChallenge]:
        """The challenges an event at `at` may count for."""
        rows = await self.session.execute(
            select(challenges).where(
                challenges.c.goal_kind.in_([k.value for k in kinds]),
                challenges.c.start_at <= at,
                (challenges.c.end_at.is_(None)) | (challenges.c.end_at > at),
            )
        )
        return [_challenge(r) for r in rows]

    async def running_between(
        self, kinds: Sequence[GoalKind], first: datetime, last: datetime
    ) -> list[StoredChallenge]:
        """The challenges events from `first` to `last` may count for (`running` of each)."""
        rows = await self.session.execute(
            select(challenges).where(
                challenges.c.goal_kind.in_([k.value for k in kinds]),
                challenges.c.start_at <= last,
                (challenges.c.end_at.is_(None)) | (challenges.c.end_at > first),
            )
        )
        return [_challenge(r) for r in rows]

    # --- counting -----------------------------------------------------------------------

    async def first_count(self, counter: str, event_key: str, now: datetime) -> bool:
        """Whether this is the first time `counter` sees the event (then it is remembered)."""
        result = await self.session.execute(
            insert(counted_events)
            .values(counter=counter, event_key=event_key, counted_at=now)
            .on_conflict_do_nothing()
            .returning(counted_events.c.event_key)
        )
        return result.first() is not None

    async def first_counts(
        self, counted: Sequence[tuple[str, str]], now: datetime
    ) -> set[tuple[str, str]]:
        """`first_count` of several (counter, event key) pairs in one statement: the pairs
        seen for the first time."""
        if not counted:
            return set()
        rows = await self.session.execute(
            text(
                "INSERT INTO counted_events (counter, event_key, counted_at)"
                " SELECT c, k, :now FROM unnest(CAST(:counters AS text[]), CAST(:keys AS text[]))"
                " AS e(c, k) ON CONFLICT DO NOTHING RETURNING counter, event_key"
            ),
            {"counters": [c for c, _ in counted], "keys": [k for _, k in counted], "now": now},
        )
        return {(r[0], r[1]) for r in rows}

    async def locked_progresses(
        self, rows: Sequence[tuple[str, str, str]], now: datetime
    ) -> dict[tuple[str, str, str], Progress]:
        """`locked_progress` of several (challenge, member, period) rows, locked in one order."""
        keys = sorted(set(rows))
        if not keys:
            return {}
        params = {
            "challenges": [c for c, _, _ in keys],
            "members": [m for _, m, _ in keys],
            "periods": [p for _, _, p in keys],
            "now": now,
        }
        rows_of = (
            " FROM unnest(CAST(:challenges AS text[]), CAST(:members AS text[]),"
            " CAST(:periods AS text[])) AS k(challenge_id, member_id, period)"
        )
        await self.session.execute(
            text(
                "INSERT INTO challenge_progress (challenge_id, member_id, period, value, spend,"
                " units, last_day, updated_at)"
                " SELECT challenge_id, member_id, period, 0, '0', '{}', NULL, :now"
                + rows_of
                + " ORDER BY challenge_id, member_id, period ON CONFLICT DO NOTHING"
            ),
            params,
        )
        found = await self.session.execute(
            text(
                "SELECT p.* FROM challenge_progress AS p JOIN (SELECT *" + rows_of + ") AS k"
                " USING (challenge_id, member_id, period)"
                " ORDER BY p.challenge_id, p.member_id, p.period FOR UPDATE OF p"
            ),
            params,
        )
        return {(r.challenge_id, r.member_id, r.period): _progress(r) for r in found}

    async def save_progresses(
        self, saved: dict[tuple[str, str, str], Progress], now: datetime
    ) -> None:
        """`save_progress` of several rows in one statement."""
        if not saved:
            return
        keys = list(saved)
        await self.session.execute(
            update(challenge_progress)
            .where(
                challenge_progress.c.challenge_id == bindparam("c"),
                challenge_progress.c.member_id == bindparam("m"),
                challenge_progress.c.period == bindparam("p"),
            )
            .values(
                value=bindparam("new_value"),
                spend=bindparam("new_spend"),
                units=bindparam("new_units"),
                last_day=bindparam("new_last_day"),
                updated_at=now,
            ),
            [
                {
                    "c": c,
                    "m": m,
                    "p": p,
                    "new_value": saved[(c, m, p)].value,
                    "new_spend": str(saved[(c, m, p)].spend),
                    "new_units": sorted(saved[(c, m, p)].units),
                    "new_last_day": saved[(c, m, p)].last_day,
                }
                for c, m, p in keys
            ],
        )

    async def completed_of(
        self, wanted: Sequence[tuple[str, str, str]]
    ) -> set[tuple[str, str, str]]:
        """Which (challenge, member, completion key) are completed."""
        if not wanted:
            return set()
        rows = await self.session.execute(
            text(
                "SELECT c.challenge_id, c.member_id, c.completion_key"
                " FROM challenge_completions AS c JOIN unnest(CAST(:challenges AS text[]),"
                " CAST(:members AS text[]), CAST(:keys AS text[])) AS w(challenge_id, member_id,"
                " completion_key) USING (challenge_id, member_id, completion_key)"
            ),
            {
                "challenges": [c for c, _, _ in wanted],
                "members": [m for _, m, _ in wanted],
                "keys": [k for _, _, k in wanted],
            },
        )
        return {(r[0], r[1], r[2]) for r in rows}

    async def counted(self, counter: str, event_key: str) -> bool:
        row = (
            await self.session.execute(
                select(counted_events.c.event_key).where(
                    counted_events.c.counter == counter, counted_events.c.event_key == event_key
                )
            )
        ).first()
        return row is not None

    async def locked_progress(
        self, challenge_id: str, member_id: str, period: str, now: datetime
    ) -> Progress:
        """The member's progress, its row locked to the end of the transaction: concurrent
        events of one member count one after the other."""
        await self.session.execute(
            insert(challenge_progress)
            .values(
                challenge_id=challenge_id,
                member_id=member_id,
                period=period,
                value=0,
                spend="0",
                units=[],
                last_day=None,
                updated_at=now,
            )
            .on_conflict_do_nothing()
        )
        row = (
            await self.session.execute(
                select(challenge_progress)
                .where(
                    challenge_progress.c.challenge_id == challenge_id,
                    challenge_progress.c.member_id == member_id,
                    challenge_progress.c.period == period,
                )
                .with_for_update()
            )
        ).one()
        return _progress(row)

    async def save_progress(
        self, challenge_id: str, member_id: str, period: str, progress: Progress, now: datetime
    ) -> None:
        await self.session.execute(
            update(challenge_progress)
            .where(
                challenge_progress.c.challenge_id == challenge_id,
                challenge_progress.c.member_id == member_id,
                challenge_progress.c.period == period,
            )
            .values(
                value=progress.value,
                spend=str(progress.spend),
                units=sorted(progress.units),
                last_day=progress.last_day,
                updated_at=now,
            )
        )

    async def completed(self, challenge_id: str, member_id: str, key: str) -> bool:
        row = (
            await self.session.execute(
                select(challenge_completions.c.period).where(
                    challenge_completions.c.challenge_id == challenge_id,
                    challenge_completions.c.member_id == member_id,
                    challenge_completions.c.completion_key == key,
                )
            )
        ).first()
        return row is not None

    async def complete(
        self, challenge_id: str, member_id: str, key: str, period: str, now: datetime
    ) -> bool:
        """Record a completion; False when it was recorded before (nothing to pay)."""
        result = await self.session.execute(
            insert(challenge_completions)
            .values(
                challenge_id=challenge_id,
                member_id=member_id,
                completion_key=key,
                period=period,
                completed_at=now,
                rewards="",
            )
            .on_conflict_do_nothing()
            .returning(challenge_completions.c.period)
        )
        return result.first() is not None

    async def note_rewards(self, challenge_id: str, member_id: str, key: str, note: str) -> None:
        await self.session.execute(
            update(challenge_completions)
            .where(
                challenge_completions.c.challenge_id == challenge_id,
                challenge_completions.c.member_id == member_id,
                challenge_completions.c.completion_key == key,
            )
            .values(rewards=note)
        )

    async def member_progress(self, member_id: str) -> list[MemberProgress]:
        """Every period of every challenge the member has progress in, with its completion."""
        p, c = challenge_progress, challenge_completions
        rows = await self.session.execute(
            select(p, c.c.completed_at)
            .select_from(
                p.outerjoin(
                    c,
                    (c.c.challenge_id == p.c.challenge_id)
                    & (c.c.member_id == p.c.member_id)
                    & (c.c.period == p.c.period),
                )
            )
            .where(p.c.member_id == member_id)
        )
        return [
            MemberProgress(r.challenge_id, r.period, _progress(r), r.completed_at) for r in rows
        ]

    async def completions(self, member_id: str) -> dict[tuple[str, str], datetime]:
        """(challenge, completion key) -> when, for the member."""
        rows = await self.session.execute(
            select(
                challenge_completions.c.challenge_id,
                challenge_completions.c.completion_key,
                challenge_completions.c.completed_at,
            ).where(challenge_completions.c.member_id == member_id)
        )
        return {(r.challenge_id, r.completion_key): r.completed_at for r in rows}

    # --- badges -------------------------------------------------------------------------

    async def award_badge(self, member_id: str, badge: str, source: str, now: datetime) -> bool:
        """False when the member holds it already."""
        result = await self.session.execute(
            insert(member_badges)
            .values(member_id=member_id, badge=badge, source=source, earned_at=now)
            .on_conflict_do_nothing()
            .returning(member_badges.c.badge)
        )
        return result.first() is not None

    async def held_badge(self, member_id: str, badge: str) -> HeldBadge | None:
        row = (
            await self.session.execute(
                select(member_badges).where(
                    member_badges.c.member_id == member_id, member_badges.c.badge == badge
                )
            )
        ).first()
        return HeldBadge(row.badge, row.source, row.earned_at) if row else None

    async def held_of(self, member_id: str, badges: Sequence[str]) -> frozenset[str]:
        """Which of `badges` the member holds (a journey's badge conditions read them)."""
        rows = await self.session.execute(
            select(member_badges.c.badge).where(
                member_badges.c.member_id == member_id, member_badges.c.badge.in_(list(badges))
            )
        )
        return frozenset(r.badge for r in rows)

    async def held_by(
        self, member_ids: Sequence[str], badges: Sequence[str]
    ) -> dict[str, frozenset[str]]:
        """`held_of` for several members in one statement (a batch's entries' badge
        conditions): each member's held ones of `badges`, members holding none left out."""
        if not member_ids or not badges:
            return {}
        rows = await self.session.execute(
            select(member_badges.c.member_id, member_badges.c.badge).where(
                member_badges.c.member_id == func.any(sorted(set(member_ids))),
                member_badges.c.badge == func.any(sorted(set(badges))),
            )
        )
        held: dict[str, set[str]] = {}
        for r in rows:
            held.setdefault(r.member_id, set()).add(r.badge)
        return {m: frozenset(b) for m, b in held.items()}

    async def revoke_badge(self, member_id: str, badge: str) -> bool:
        result = await self.session.execute(
            delete(member_badges)
            .where(member_badges.c.member_id == member_id, member_badges.c.badge == badge)
            .returning(member_badges.c.badge)
        )
        return result.first() is not None

    async def badges(self, member_id: str, after: str = "", limit: int = 200) -> list[HeldBadge]:
        rows = await self.session.execute(
            select(member_badges)
            .where(member_badges.c.member_id == member_id, member_badges.c.badge > after)
            .order_by(member_badges.c.badge)
            .limit(limit)
        )
        return [HeldBadge(r.badge, r.source, r.earned_at) for r in rows]

    async def audit(
        self,
        member_id: str,
        badge: str,
        action: str,
        unit: str,
        client_id: str,
        reason: str,
        now: datetime,
    ) -> None:
        await self.session.execute(
            insert(badge_audit).values(
                member_id=member_id,
                badge=badge,
                action=action,
                unit=unit,
                client_id=client_id,
                reason=reason,
                at=now,
            )
        )

    async def audit_trail(self, member_id: str) -> list[tuple[str, str, str, str]]:
        """(badge, action, client, reason), oldest first."""
        rows = await self.session.execute(
            select(badge_audit)
            .where(badge_audit.c.member_id == member_id)
            .order_by(badge_audit.c.seq)
        )
        return [(r.badge, r.action, r.client_id, r.reason) for r in rows]

    async def forget(self, member_id: str) -> None:
        for table in (
            challenge_progress,
            challenge_contributions,
            challenge_purchases,
            purchase_refunds,
            member_badges,
            badge_audit,
            leaderboard_scores,
        ):
            await self.session.execute(delete(table).where(table.c.member_id == member_id))

    # --- purchases and refunds ----------------------------------------------------------

    async def serialize(self, purchase_key: str) -> None:
        """A purchase and its refunds are handled one after the other (a transaction lock on
        the purchase's key): each sees what the other did."""
        await self.session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": purchase_key}
        )

    async def serialize_many(self, purchase_keys: Sequence[str]) -> None:
        """`serialize` for several purchases in one statement, the locks taken in the order of
        their lock keys (two batches never wait on each other in a circle)."""
        if not purchase_keys:
            return
        await self.session.execute(
            text(
                "SELECT count(pg_advisory_xact_lock(h)) FROM (SELECT DISTINCT hashtext(k) AS h"
                " FROM unnest(CAST(:keys AS text[])) AS k ORDER BY h) AS s"
            ),
            {"keys": list(purchase_keys)},
        )

    async def keep_purchases(
        self, purchases: Sequence[tuple[str, str, str, Decimal, datetime]]
    ) -> None:
        """`keep_purchase` of several (key, member, unit, spend, time) in one statement."""
        if not purchases:
            return
        await self.session.execute(
            text(
                "INSERT INTO challenge_purchases (purchase_key, member_id, unit, spend,"
                " occurred_at)"
                " SELECT * FROM unnest(CAST(:keys AS text[]), CAST(:members AS text[]),"
                " CAST(:units AS text[]), CAST(:spends AS text[]), CAST(:at AS timestamptz[]))"
                " ON CONFLICT DO NOTHING"
            ),
            {
                "keys": [p[0] for p in purchases],
                "members": [p[1] for p in purchases],
                "units": [p[2] for p in purchases],
                "spends": [str(p[3]) for p in purchases],
                "at": [p[4] for p in purchases],
            },
        )

    async def kept_purchases(self, keys: Sequence[str]) -> dict[str, KeptPurchase]:
        """`kept_purchase` of several keys, each with its refunds so far (two statements)."""
        if not keys:
            return {}
        rows = list(
            await self.session.execute(
                select(challenge_purchases).where(
                    challenge_purchases.c.purchase_key == func.any(sorted(set(keys)))
                )
            )
        )
        purchases = await self._with_refunds(rows)
        return {
            r.purchase_key: KeptPurchase(r.member_id, r.occurred_at, p)
            for r, p in zip(rows, purchases, strict=True)
        }

    async def keep_purchase(
        self, key: str, member_id: str, unit: str, spend: Decimal, at: datetime
    ) -> None:
        await self.session.execute(
            insert(challenge_purchases)
            .values(
                purchase_key=key, member_id=member_id, unit=unit, spend=str(spend), occurred_at=at
            )
            .on_conflict_do_nothing()
        )

    async def kept_purchase(self, key: str) -> KeptPurchase | None:
        """A purchase with its refunds so far; None when it has not arrived."""
        row = (
            await self.session.execute(
                select(challenge_purchases).where(challenge_purchases.c.purchase_key == key)
            )
        ).first()
        if row is None:
            return None
        (purchase,) = await self._with_refunds([row])
        return KeptPurchase(row.member_id, row.occurred_at, purchase)

    async def add_refund(
        self, refund_key: str, purchase_key: str, member_id: str, spend: Decimal, at: datetime
    ) -> bool:
        """Remember a refund; False when it was remembered before (a replay)."""
        result = await self.session.execute(
            insert(purchase_refunds)
            .values(
                refund_key=refund_key,
                purchase_key=purchase_key,
                member_id=member_id,
                spend=str(spend),
                occurred_at=at,
            )
            .on_conflict_do_nothing()
            .returning(purchase_refunds.c.refund_key)
        )
        return result.first() is not None

    async def add_contribution(
        self, challenge_id: str, purchase_key: str, member_id: str, period: str
    ) -> None:
        await self.session.execute(
            insert(challenge_contributions)
            .values(
                challenge_id=challenge_id,
                purchase_key=purchase_key,
                member_id=member_id,
                period=period,
            )
            .on_conflict_do_nothing()
        )

    async def add_contributions(self, rows: Sequence[tuple[str, str, str, str]]) -> None:
        """`add_contribution` of several (challenge, purchase key, member, period) at once."""
        if not rows:
            return
        await self.session.execute(
            text(
                "INSERT INTO challenge_contributions (challenge_id, purchase_key, member_id,"
                " period)"
                " SELECT * FROM unnest(CAST(:challenges AS text[]), CAST(:keys AS text[]),"
                " CAST(:members AS text[]), CAST(:periods AS text[]))"
                " ON CONFLICT DO NOTHING"
            ),
            {
                "challenges": [r[0] for r in rows],
                "keys": [r[1] for r in rows],
                "members": [r[2] for r in rows],
                "periods": [r[3] for r in rows],
            },
        )

    async def contributions_of(self, purchase_key: str) -> list[tuple[str, str, str]]:
        """(challenge, member, period) each challenge period the purchase counted in."""
        c = challenge_contributions
        rows = await self.session.execute(
            select(c.c.challenge_id, c.c.member_id, c.c.period).where(
                c.c.purchase_key == purchase_key
            )
        )
        return [(r.challenge_id, r.member_id, r.period) for r in rows]

    async def period_purchases(
        self, challenge_id: str, member_id: str, period: str
    ) -> list[Purchase]:
        """The purchases counted in a member's challenge period, with their refunds."""
        c, p = challenge_contributions, challenge_purchases
        rows = await self.session.execute(
            select(p)
            .select_from(p.join(c, c.c.purchase_key == p.c.purchase_key))
            .where(
                c.c.challenge_id == challenge_id,
                c.c.member_id == member_id,
                c.c.period == period,
            )
        )
        return await self._with_refunds(list(rows))

    async def periods_purchases(
        self, slots: Sequence[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], list[Purchase]]:
        """`period_purchases` of several (challenge, member, period) at once; a slot with no
        purchases is left out."""
        if not slots:
            return {}
        keys = sorted(set(slots))
        rows = list(
            await self.session.execute(
                text(
                    "SELECT c.challenge_id, c.member_id, c.period, p.purchase_key, p.unit, p.spend"
                    " FROM challenge_contributions AS c"
                    " JOIN unnest(CAST(:challenges AS text[]), CAST(:members AS text[]),"
                    " CAST(:periods AS text[])) AS k(challenge_id, member_id, period)"
                    " USING (challenge_id, member_id, period)"
                    " JOIN challenge_purchases AS p ON p.purchase_key = c.purchase_key"
                ),
                {
                    "challenges": [c for c, _, _ in keys],
                    "members": [m for _, m, _ in keys],
                    "periods": [p for _, _, p in keys],
                },
            )
        )
        found: dict[tuple[str, str, str], list[Purchase]] = {}
        for r, purchase in zip(rows, await self._with_refunds(rows), strict=True):
            found.setdefault((r.challenge_id, r.member_id, r.period), []).append(purchase)
        return found

    async def _with_refunds(self, rows: Sequence[Any]) -> list[Purchase]:
        keys = [r.purchase_key for r in rows]
        refunded: dict[str, list[Decimal]] = {k: [] for k in keys}
        if keys:
            found = await self.session.execute(
                select(purchase_refunds.c.purchase_key, purchase_refunds.c.spend).where(
                    purchase_refunds.c.purchase_key == func.any(sorted(set(keys)))
                )
            )
            for r in found:
                refunded[r.purchase_key].append(Decimal(r.spend))
        return [
            Purchase(
                r.purchase_key,
                r.unit,
                Decimal(r.spend),
                sum(refunded[r.purchase_key], Decimal(0)),
                len(refunded[r.purchase_key]),
            )
            for r in rows
        ]

    # --- merges -------------------------------------------------------------------------

    async def lock_members(self, member_ids: Sequence[str]) -> None:
        """Serialise a merge with the members' other merges (in a fixed order: no deadlock)."""
        for member_id in sorted(member_ids):
            await self.session.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"member:{member_id}"}
            )

    async def survivor_of(self, member_id: str) -> str:
        """The member an event of `member_id` counts for: its survivor if it was absorbed."""
        row = (
            await self.session.execute(
                select(member_merges.c.survivor_member_id).where(
                    member_merges.c.absorbed_member_id == member_id
                )
            )
        ).first()
        return str(row.survivor_member_id) if row else member_id

    async def survivors_of(self, member_ids: Sequence[str]) -> dict[str, str]:
        """`survivor_of` for several members: the absorbed ones among them and their
        survivors (a member not absorbed is left out)."""
        if not member_ids:
            return {}
        rows = await self.session.execute(
            select(member_merges.c.absorbed_member_id, member_merges.c.survivor_member_id).where(
                member_merges.c.absorbed_member_id == func.any(sorted(set(member_ids)))
            )
        )
        return {str(r.absorbed_member_id): str(r.survivor_member_id) for r in rows}

    async def record_merge(self, absorbed: str, survivor: str, now: datetime) -> None:
        """Remember who the absorbed member (and those it had absorbed) became."""
        await self.session.execute(
            update(member_merges)
            .where(member_merges.c.survivor_member_id == absorbed)
            .values(survivor_member_id=survivor)
        )
        await self.session.execute(
            insert(member_merges)
            .values(absorbed_member_id=absorbed, survivor_member_id=survivor, merged_at=now)
            .on_conflict_do_nothing()
        )

    async def move_member(self, absorbed: str, survivor: str) -> list[MemberProgress]:
        """Give the survivor what the absorbed member had: purchases, refunds, contributions,
        badges (the earlier of two of one badge), their audit, completions (copied; the
        survivor's own stands) and leaderboard scores (added up). The absorbed member's
        progress is taken away and returned: the caller combines it period by period."""
        for table in (challenge_purchases, purchase_refunds, challenge_contributions, badge_audit):
            await self.session.execute(
                update(table).where(table.c.member_id == absorbed).values(member_id=survivor)
            )
        await self.session.execute(
            text(
                "INSERT INTO member_badges (member_id, badge, source, earned_at) "
                "SELECT :survivor, badge, source, earned_at FROM member_badges "
                "WHERE member_id = :absorbed ON CONFLICT (member_id, badge) DO UPDATE "
                "SET earned_at = least(member_badges.earned_at, excluded.earned_at)"
            ),
            {"survivor": survivor, "absorbed": absorbed},
        )
        await self.session.execute(
            text(
                "INSERT INTO challenge_completions "
                "(challenge_id, member_id, completion_key, period, completed_at, rewards) "
                "SELECT challenge_id, :survivor, completion_key, period, completed_at, rewards "
                "FROM challenge_completions WHERE member_id = :absorbed ON CONFLICT DO NOTHING"
            ),
            {"survivor": survivor, "absorbed": absorbed},
        )
        await self.session.execute(
            text(
                "INSERT INTO leaderboard_scores (metric, scope, period, member_id, score) "
                "SELECT metric, scope, period, :survivor, score FROM leaderboard_scores "
                "WHERE member_id = :absorbed ON CONFLICT (metric, scope, period, member_id) "
                "DO UPDATE SET score = leaderboard_scores.score + excluded.score"
            ),
            {"survivor": survivor, "absorbed": absorbed},
        )
        moved = await self.member_progress(absorbed)
        # The absorbed member's completions stay too: an event of theirs still in flight
        # completes nothing twice.
        for table in (member_badges, leaderboard_scores, challenge_progress):
            await self.session.execute(delete(table).where(table.c.member_id == absorbed))
        return moved

    # --- leaderboards -------------------------------------------------------------------

    async def add_leaderboard(
        self, leaderboard_id: str, spec: LeaderboardSpec, now: datetime
    ) -> StoredLeaderboard:
        await self.session.execute(
            insert(leaderboards).values(
                leaderboard_id=leaderboard_id,
                unit=spec.unit,
                spec=leaderboard_document(spec),
                created_at=now,
            )
        )
        return StoredLeaderboard(leaderboard_id, spec)

    async def leaderboard(self, leaderboard_id: str) -> StoredLeaderboard | None:
        row = (
            await self.session.execute(
                select(leaderboards).where(leaderboards.c.leaderboard_id == leaderboard_id)
            )
        ).first()
        return StoredLeaderboard(row.leaderboard_id, leaderboard_spec(row.spec)) if row else None

    async def all_leaderboards(self) -> list[StoredLeaderboard]:
        rows = await self.session.execute(select(leaderboards))
        return [StoredLeaderboard(r.leaderboard_id, leaderboard_spec(r.spec)) for r in rows]

    async def add_scores(self, rows: Sequence[tuple[str, str, str, str, int]]) -> None:
        """(metric, scope, period, member, points to add) each."""
        if not rows:
            return
        # unnest: one statement text whatever the rows (compiled once); one row per key.
        await self.session.execute(
            text(
                "INSERT INTO leaderboard_scores (metric, scope, period, member_id, score)"
                " SELECT * FROM unnest(CAST(:metrics AS text[]), CAST(:scopes AS text[]),"
                " CAST(:periods AS text[]), CAST(:members AS text[]), CAST(:scores AS bigint[]))"
                " ON CONFLICT (metric, scope, period, member_id)"
                " DO UPDATE SET score = leaderboard_scores.score + excluded.score"
            ),
            {
                "metrics": [r[0] for r in rows],
                "scopes": [r[1] for r in rows],
                "periods": [r[2] for r in rows],
                "members": [r[3] for r in rows],
                "scores": [r[4] for r in rows],
            },
        )

    async def top(self, metric: str, scope: str, period: str, limit: int) -> list[Payout]:
        rows = await self.session.execute(
            text(
                "SELECT member_id, score, rank() OVER (ORDER BY score DESC) AS rank "
                "FROM leaderboard_scores WHERE metric = :m AND scope = :s AND period = :p "
                "ORDER BY score DESC, member_id LIMIT :n"
            ),
            {"m": metric, "s": scope, "p": period, "n": limit},
        )
        return [Payout(r.member_id, 0, r.rank, r.score) for r in rows]

    async def rank_of(self, metric: str, scope: str, period: str, member_id: str) -> Payout:
        """A member's rank: one more than the members scoring above (ties share it)."""
        row = (
            await self.session.execute(
                text(
                    "SELECT s.score, (SELECT count(*) FROM leaderboard_scores o "
                    "WHERE o.metric = s.metric AND o.scope = s.scope AND o.period = s.period "
                    "AND o.score > s.score) + 1 AS rank FROM leaderboard_scores s "
                    "WHERE s.metric = :m AND s.scope = :s AND s.period = :p "
                    "AND s.member_id = :member"
                ),
                {"m": metric, "s": scope, "p": period, "member": member_id},
            )
        ).first()
        return Payout(member_id, 0, row.rank, row.score) if row else Payout(member_id, 0, 0, 0)

    async def closed_at(self, leaderboard_id: str, period: str) -> datetime | None:
        row = (
            await self.session.execute(
                select(leaderboard_closes.c.closed_at).where(
                    leaderboard_closes.c.leaderboard_id == leaderboard_id,
                    leaderboard_closes.c.period == period,
                )
            )
        ).first()
        return row.closed_at if row else None

    async def close(self, board: StoredLeaderboard, scope: str, period: str, now: datetime) -> bool:
        """Mark the period closed and write the rewards owed, ranked by a window function in
        one statement per reward; False (nothing written) when it was closed before."""
        result = await self.session.execute(
            insert(leaderboard_closes)
            .values(leaderboard_id=board.leaderboard_id, period=period, closed_at=now)
            .on_conflict_do_nothing()
            .returning(leaderboard_closes.c.period)
        )
        if result.first() is None:
            return False
        for i, reward in enumerate(board.spec.rewards):
            await self.session.execute(
                text(
                    "INSERT INTO leaderboard_payouts "
                    "(leaderboard_id, period, member_id, reward, rank, score) "
                    "SELECT :board, :p, member_id, :reward, rank, score FROM ("
                    "  SELECT member_id, score, rank() OVER (ORDER BY score DESC) AS rank"
                    "  FROM leaderboard_scores"
                    "  WHERE metric = :m AND scope = :s AND period = :p"
                    "    AND score >= :floor"
                    ") ranked WHERE (:max_rank = 0 OR rank <= :max_rank) "
                    "ON CONFLICT DO NOTHING"
                ),
                {
                    "board": board.leaderboard_id,
                    "p": period,
                    "reward": i,
                    "m": board.spec.metric.value,
                    "s": scope,
                    "floor": max(reward.threshold, 1),
                    "max_rank": reward.rank,
                },
            )
        return True

    async def unpaid(self, leaderboard_id: str, period: str, limit: int) -> list[Payout]:
        rows = await self.session.execute(
            select(leaderboard_payouts)
            .where(
                leaderboard_payouts.c.leaderboard_id == leaderboard_id,
                leaderboard_payouts.c.period == period,
                leaderboard_payouts.c.paid_at.is_(None),
            )
            .order_by(leaderboard_payouts.c.member_id, leaderboard_payouts.c.reward)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [Payout(r.member_id, r.reward, r.rank, r.score) for r in rows]

    async def paid(self, leaderboard_id: str, period: str, payout: Payout, now: datetime) -> None:
        await self.session.execute(
            update(leaderboard_payouts)
            .where(
                leaderboard_payouts.c.leaderboard_id == leaderboard_id,
                leaderboard_payouts.c.period == period,
                leaderboard_payouts.c.member_id == payout.member_id,
                leaderboard_payouts.c.reward == payout.reward,
            )
            .values(paid_at=now)
        )

    async def payouts_total(self, leaderboard_id: str, period: str) -> int:
        return int(
            (
                await self.session.execute(
                    select(func.count()).where(
                        leaderboard_payouts.c.leaderboard_id == leaderboard_id,
                        leaderboard_payouts.c.period == period,
                    )
                )
            ).scalar_one()
        )


def _progress(row: Any) -> Progress:
    last: date | None = row.last_day
    return Progress(row.value, frozenset(row.units), last, Decimal(row.spend))
