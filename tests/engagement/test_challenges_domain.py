"""Challenges' rules without a database: periods in the programme's time zone, progress per goal,
streaks across day boundaries, validation naming fields; and the counting use case over an
in-memory store (property-based: an event never counts twice, a completion is paid at most once
per period)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loyalty_engagement.adapters.challenges import KeptPurchase, MemberProgress, StoredChallenge
from loyalty_engagement.domain import challenges as c
from loyalty_engagement.service_layer import challenges as use_cases
from loyalty_kit.errors import InvalidArgument

SHANGHAI = "Asia/Shanghai"
START = datetime(2026, 1, 1, tzinfo=UTC)


def purchase(unit: str, at: datetime, key: str = "", spend: str = "0") -> c.Occurrence:
    return c.Occurrence(key or uuid.uuid4().hex, "m1", at, unit=unit, spend=Decimal(spend))


def check_in(at: datetime) -> c.Occurrence:
    return c.Occurrence(uuid.uuid4().hex, "m1", at, unit="mall", activity_type="check_in")


def explorer(**changes: Any) -> c.ChallengeSpec:
    base: dict[str, Any] = {
        "display_name": "Explorer",
        "unit": "group",
        "goal": c.Goal(c.GoalKind.DISTINCT_UNITS, 3, units=("mall", "hotel", "cinema")),
        "window": c.Window(c.WindowKind.QUARTER),
        "reward": c.Reward(points=1000, funding_unit="group", badge="explorer"),
        "repeatable": False,
        "time_zone": SHANGHAI,
        "start_at": None,
        "end_at": None,
    }
    base.update(changes)
    return c.ChallengeSpec(**base)


def test_periods_are_cut_in_the_programme_time_zone() -> None:
    # 2026-03-31 17:00 UTC is already 1 April in Shanghai: the second quarter.
    late = datetime(2026, 3, 31, 17, 0, tzinfo=UTC)
    assert c.period_of(c.Window(c.WindowKind.QUARTER), late, SHANGHAI, START) == "2026-Q2"
    assert c.period_of(c.Window(c.WindowKind.QUARTER), late, "UTC", START) == "2026-Q1"
    assert c.period_of(c.Window(c.WindowKind.MONTH), late, SHANGHAI, START) == "2026-04"
    rolling = c.Window(c.WindowKind.ROLLING_DAYS, 30)
    assert c.period_of(rolling, datetime(2026, 2, 5, tzinfo=UTC), SHANGHAI, START) == (
        "2026-01-31+30"
    )
    first, end = c.period_bounds(c.Window(c.WindowKind.QUARTER), "2026-Q2", SHANGHAI)
    assert (first, end) == (
        datetime(2026, 3, 31, 16, tzinfo=UTC),
        datetime(2026, 6, 30, 16, tzinfo=UTC),
    )


def test_distinct_units_count_each_unit_once_and_only_the_listed_ones() -> None:
    spec = explorer()
    progress = c.Progress()
    for unit in ("mall", "mall", "hotel", "airport"):
        event = purchase(unit, START)
        if c.counts_for(spec.goal, event):
            progress = progress.count(spec.goal, event, SHANGHAI)
    assert (progress.value, progress.units) == (2, frozenset({"mall", "hotel"}))
    assert not progress.reached(spec.goal)
    progress = progress.count(spec.goal, purchase("cinema", START), SHANGHAI)
    assert progress.reached(spec.goal)


def test_purchases_at_a_unit_and_spend_in_whole_base_currency() -> None:
    visits = c.Goal(c.GoalKind.PURCHASES, 5, unit="cinema")
    assert c.counts_for(visits, purchase("cinema", START))
    assert not c.counts_for(visits, purchase("mall", START))
    assert not c.counts_for(visits, check_in(START))
    spend = c.Goal(c.GoalKind.SPEND, 100)
    progress = c.Progress()
    for amount in ("49.60", "50.39"):
        progress = progress.count(spend, purchase("mall", START, spend=amount), SHANGHAI)
    assert (progress.value, progress.spend) == (99, Decimal("99.99"))
    progress = progress.count(spend, purchase("mall", START, spend="0.01"), SHANGHAI)
    assert progress.reached(spend)


def test_a_streak_counts_days_in_the_programme_time_zone_not_in_utc() -> None:
    goal = c.Goal(c.GoalKind.STREAK, 3, activity_type="check_in")
    # 23:30 and 00:30 Shanghai time: two days, though the same UTC day.
    evening = datetime(2026, 5, 1, 15, 30, tzinfo=UTC)
    after_midnight = evening + timedelta(hours=1)
    progress = c.Progress().count(goal, check_in(evening), SHANGHAI)
    progress = progress.count(goal, check_in(after_midnight), SHANGHAI)
    assert (progress.value, progress.last_day) == (2, date(2026, 5, 2))
    # In UTC the same two check-ins are one day.
    utc = c.Progress().count(goal, check_in(evening), "UTC")
    assert utc.count(goal, check_in(after_midnight), "UTC").value == 1


def test_a_streak_stands_on_the_same_day_and_starts_again_after_a_day_missed() -> None:
    goal = c.Goal(c.GoalKind.STREAK, 7, activity_type="check_in")
    day = datetime(2026, 5, 1, 2, tzinfo=UTC)
    progress = c.Progress()
    for offset in (0, 1, 1, 2):
        progress = progress.count(goal, check_in(day + timedelta(days=offset)), SHANGHAI)
    assert progress.value == 3
    progress = progress.count(goal, check_in(day), SHANGHAI)  # a late event: no change
    assert progress.value == 3
    progress = progress.count(goal, check_in(day + timedelta(days=4)), SHANGHAI)
    assert (progress.value, progress.last_day) == (1, date(2026, 5, 5))


def test_bad_challenges_name_each_field() -> None:
    spec = explorer(
        unit="mall",
        goal=c.Goal(c.GoalKind.STREAK, 0),
        window=c.Window(c.WindowKind.ROLLING_DAYS, 0),
        reward=c.Reward(points=10, funding_unit="hotel", badge="Not A Badge"),
        time_zone="Mars/Olympus",
    )
    with pytest.raises(InvalidArgument) as raised:
        spec.check()
    assert {v.field for v in raised.value.field_violations} == {
        "challenge.goal.target",
        "challenge.goal.activity_type",
        "challenge.window.days",
        "challenge.time_zone",
        "challenge.reward.funding_unit",
        "challenge.reward.badge",
    }


def test_a_leaderboard_reward_is_a_rank_or_a_threshold() -> None:
    board = c.LeaderboardSpec(
        "referrals",
        "group",
        c.Metric.REFERRALS,
        "mall",
        c.WindowKind.ROLLING_DAYS,
        (c.LeaderboardReward(rank=3, threshold=5, coupon_template="x"), c.LeaderboardReward()),
    )
    with pytest.raises(InvalidArgument) as raised:
        board.check()
    assert {v.field for v in raised.value.field_violations} == {
        "leaderboard.period",
        "leaderboard.scope_unit",
        "leaderboard.rewards[0]",
        "leaderboard.rewards[1]",
    }


# --- the counting use case over an in-memory store ----------------------------------------------


@dataclass
class FakeStore:
    running_challenges: list[StoredChallenge]
    seen: set[tuple[str, str]] = field(default_factory=set)
    progress: dict[tuple[str, str, str], c.Progress] = field(default_factory=dict)
    completions: dict[tuple[str, str, str], str] = field(default_factory=dict)
    badges: set[tuple[str, str]] = field(default_factory=set)
    purchases: dict[str, tuple[str, datetime, c.Purchase]] = field(default_factory=dict)
    refunds: dict[str, tuple[str, Decimal]] = field(default_factory=dict)
    contributions: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    scores: dict[tuple[str, str, str, str], int] = field(default_factory=dict)

    async def get(self, cid: str) -> StoredChallenge | None:
        return next((x for x in self.running_challenges if x.challenge_id == cid), None)

    async def serialize(self, key: str) -> None:
        pass

    async def survivor_of(self, member: str) -> str:
        return member

    async def keep_purchase(
        self, key: str, member: str, unit: str, spend: Decimal, at: datetime
    ) -> None:
        self.purchases.setdefault(key, (member, at, c.Purchase(key, unit, spend)))

    async def kept_purchase(self, key: str) -> Any:
        if key not in self.purchases:
            return None
        member, at, bought = self.purchases[key]
        refunded = [spend for purchase, spend in self.refunds.values() if purchase == key]
        net = replace(bought, refunded=sum(refunded, Decimal(0)), refunds=len(refunded))
        return KeptPurchase(member, at, net)

    async def add_refund(
        self, refund: str, key: str, member: str, spend: Decimal, at: datetime
    ) -> bool:
        new = refund not in self.refunds
        self.refunds.setdefault(refund, (key, spend))
        return new

    async def add_contribution(self, cid: str, key: str, member: str, period: str) -> None:
        self.contributions.setdefault((cid, key), (member, period))

    async def contributions_of(self, key: str) -> list[tuple[str, str, str]]:
        return [(cid, m, p) for (cid, k), (m, p) in self.contributions.items() if k == key]

    async def period_purchases(self, cid: str, member: str, period: str) -> list[c.Purchase]:
        keys = [k for (i, k), mp in self.contributions.items() if (i, *mp) == (cid, member, period)]
        return [(await self.kept_purchase(k)).purchase for k in keys]

    async def counted(self, counter: str, key: str) -> bool:
        return (counter, key) in self.seen

    async def running(self, kinds: Any, at: datetime) -> list[StoredChallenge]:
        return [x for x in self.running_challenges if x.spec.goal.kind in kinds]

    async def first_count(self, counter: str, key: str, now: datetime) -> bool:
        new = (counter, key) not in self.seen
        self.seen.add((counter, key))
        return new

    async def locked_progress(self, cid: str, member: str, period: str, now: datetime) -> Any:
        return self.progress.get((cid, member, period), c.Progress())

    async def save_progress(
        self, cid: str, member: str, period: str, progress: c.Progress, now: datetime
    ) -> None:
        self.progress[(cid, member, period)] = progress

    async def completed(self, cid: str, member: str, key: str) -> bool:
        return (cid, member, key) in self.completions

    async def complete(self, cid: str, member: str, key: str, period: str, now: datetime) -> bool:
        if (cid, member, key) in self.completions:
            return False
        self.completions[(cid, member, key)] = ""
        return True

    async def note_rewards(self, cid: str, member: str, key: str, note: str) -> None:
        self.completions[(cid, member, key)] = note

    async def award_badge(self, member: str, badge: str, source: str, now: datetime) -> bool:
        new = (member, badge) not in self.badges
        self.badges.add((member, badge))
        return new

    async def add_scores(self, rows: Any) -> None:
        for metric, scope, period, member, score in rows:
            at = (metric, scope, period, member)
            self.scores[at] = self.scores.get(at, 0) + score


class FakeOutbox:
    def __init__(self) -> None:
        self.events: list[Any] = []

    async def add(self, message: Any) -> None:
        self.events.append(message)


@dataclass
class FakeUow:
    challenges: FakeStore
    outbox: FakeOutbox = field(default_factory=FakeOutbox)


@dataclass
class FakeActions:
    awarded: list[tuple[str, int, str, str]] = field(default_factory=list)

    async def award_points(
        self, member_id: str, points: int, funding_unit: str, reason: str, key: str
    ) -> str:
        self.awarded.append((member_id, points, funding_unit, key))
        return f"p-{len(self.awarded)}"

    async def issue_coupon(self, member_id: str, template: str, unit: str, key: str) -> str:
        return "code"


def _stored(spec: c.ChallengeSpec) -> StoredChallenge:
    return StoredChallenge("explorer", spec, START, START)


_events = st.lists(
    st.tuples(
        st.sampled_from(["mall", "hotel", "cinema", "airport"]),
        st.integers(min_value=0, max_value=400),  # days after the start: a few quarters
        st.integers(min_value=0, max_value=5),  # how often it arrives
    ),
    max_size=25,
)


_GOALS = {
    "distinct units": c.Goal(c.GoalKind.DISTINCT_UNITS, 3, units=("mall", "hotel", "cinema")),
    "purchases": c.Goal(c.GoalKind.PURCHASES, 3, unit="mall"),
}


@settings(max_examples=80, deadline=None)
@given(events=_events, repeatable=st.booleans(), goal=st.sampled_from(sorted(_GOALS)))
async def test_no_event_counts_twice_and_each_period_pays_at_most_once(
    events: list[tuple[str, int, int]], repeatable: bool, goal: str
) -> None:
    spec = explorer(repeatable=repeatable, goal=_GOALS[goal])
    store = FakeStore([_stored(spec)])
    uow, actions = FakeUow(store), FakeActions()
    # The model: each event once, in order; a period stops counting once completed (a
    # challenge that is not repeatable stops for good).
    seen: dict[str, list[str]] = {}
    paid: list[str] = []
    for i, (unit, day, copies) in enumerate(events):
        at = START + timedelta(days=day, hours=3)
        event = purchase(unit, at, key=f"e{i}")
        for _ in range(copies + 1):  # redelivered or replayed
            await use_cases.on_occurrence(uow, actions, event, at)  # type: ignore[arg-type]
        period = c.period_of(spec.window, at, SHANGHAI, START)
        key = c.completion_key(repeatable, period)
        if not c.counts_for(spec.goal, event) or key in paid:
            continue
        seen.setdefault(period, []).append(unit)
        units = seen[period]
        value = len(set(units)) if spec.goal.kind is c.GoalKind.DISTINCT_UNITS else len(units)
        if value >= 3:
            paid.append(key)
    for (_, _, period), progress in store.progress.items():
        units = seen.get(period, [])
        expected = len(set(units)) if spec.goal.kind is c.GoalKind.DISTINCT_UNITS else len(units)
        assert progress.value == expected
    assert [a[3] for a in actions.awarded] == [f"challenge-explorer-m1-{k}" for k in paid]
    assert len(uow.outbox.events) == min(1, len(paid))  # the badge once, whatever the periods


# A purchase (index, unit, spend in fen) and its refunds (fen each; the model caps them at the
# spend), every message arriving 1 to 3 times, in any order the draw makes.
_bought = st.lists(
    st.tuples(
        st.sampled_from(["mall", "hotel", "cinema"]),
        st.integers(min_value=0, max_value=30000),
        st.lists(st.integers(min_value=0, max_value=30000), max_size=3),
    ),
    max_size=8,
)
_REFUND_GOALS = {
    "spend": c.Goal(c.GoalKind.SPEND, 10**9),
    "purchases": c.Goal(c.GoalKind.PURCHASES, 10**9),
    "distinct units": c.Goal(c.GoalKind.DISTINCT_UNITS, 10**9),
}


@settings(max_examples=120, deadline=None)
@given(
    bought=_bought,
    goal=st.sampled_from(sorted(_REFUND_GOALS)),
    copies=st.lists(st.integers(min_value=1, max_value=3), min_size=40, max_size=40),
    order=st.randoms(use_true_random=False),
)
async def test_progress_after_purchases_refunds_and_replays_in_any_order_is_the_net_purchases(
    bought: list[tuple[str, int, list[int]]], goal: str, copies: list[int], order: Any
) -> None:
    spec = explorer(goal=_REFUND_GOALS[goal], window=c.Window(c.WindowKind.MONTH))
    store = FakeStore([_stored(spec)])
    uow, actions = FakeUow(store), FakeActions()
    at = START + timedelta(days=3)
    messages: list[tuple[str, Any]] = []
    net: list[c.Purchase] = []
    for i, (unit, fen, refunds) in enumerate(bought):
        spend = Decimal(fen) / 100
        messages.append(("purchase", c.Occurrence(f"purchase:{i}", "m1", at, unit, spend)))
        left, taken = spend, []
        for j, refund_fen in enumerate(refunds):
            refund = min(Decimal(refund_fen) / 100, left)  # never more than was paid
            left -= refund
            taken.append(refund)
            messages.append(("refund", (f"refund:{i}.{j}", f"purchase:{i}", refund)))
        net.append(c.Purchase(f"purchase:{i}", unit, spend, sum(taken, Decimal(0)), len(taken)))
    arrivals = [m for m, n in zip(messages, copies, strict=False) for _ in range(n)]
    order.shuffle(arrivals)
    for kind, body in arrivals:
        if kind == "purchase":
            await use_cases.on_occurrence(uow, actions, body, at)  # type: ignore[arg-type]
        else:
            refund, key, spend = body
            await use_cases.on_refund(uow, refund, key, "m1", spend, at, at)  # type: ignore[arg-type]
    period = c.period_of(spec.window, at, SHANGHAI, START)
    arrived = {m[1].key for m in arrivals if m[0] == "purchase"}
    expected = c.purchase_progress(spec.goal, [p for p in net if p.key in arrived])
    assert store.progress.get(("explorer", "m1", period), c.Progress()) == expected
    # The leaderboards' spend and visits are the net purchases' too, each rounded down.
    month = c.period_of(c.Window(c.WindowKind.MONTH), at, SHANGHAI, at)
    for metric in (c.Metric.SPEND, c.Metric.VISITS):
        wanted = sum(c.purchase_scores(p)[metric] for p in net if p.key in arrived)
        assert store.scores.get((metric.value, "group", month, "m1"), 0) == wanted
    assert actions.awarded == []


def test_a_purchase_refunded_in_full_no_longer_counts_nor_its_unit() -> None:
    goal = c.Goal(c.GoalKind.DISTINCT_UNITS, 3)
    kept = c.Purchase("a", "mall", Decimal(100), Decimal(40), 1)
    gone = c.Purchase("b", "hotel", Decimal(80), Decimal(80), 2)
    free_refunded = c.Purchase("c", "cinema", Decimal(0), Decimal(0), 1)
    assert c.purchase_progress(goal, [kept, gone, free_refunded]).units == {"mall"}
    spend = c.purchase_progress(c.Goal(c.GoalKind.SPEND, 1), [kept, gone])
    assert (spend.value, spend.spend) == (60, Decimal(60))
    assert c.purchase_scores(gone) == {c.Metric.VISITS: 0, c.Metric.SPEND: 0}


def test_a_merge_keeps_the_longer_streak() -> None:
    short = c.Progress(2, last_day=date(2026, 3, 9))
    long = c.Progress(5, last_day=date(2026, 3, 4))
    assert c.longer_streak(short, long) == long
    assert c.longer_streak(long, short) == long


class CommitsBetweenReads:
    """A store whose reads each see what was committed when they ran: the batch that reaches the
    goal (its progress and its completion, one transaction) commits right after the first read
    of the member's view, whichever read that is."""

    def __init__(self, challenge: StoredChallenge, period: str, key: str) -> None:
        self.challenge, self.period, self.key = challenge, period, key
        self.committed = False

    def _read(self) -> bool:
        seen, self.committed = self.committed, True
        return seen

    async def running(self, kinds: Any, at: datetime) -> list[StoredChallenge]:
        return [self.challenge]

    async def completions(self, member: str) -> dict[tuple[str, str], datetime]:
        return {(self.challenge.challenge_id, self.key): START} if self._read() else {}

    async def member_progress(self, member: str) -> list[MemberProgress]:
        reached = c.Progress(value=3, units=frozenset({"mall", "hotel", "cinema"}))
        cid = self.challenge.challenge_id
        return [MemberProgress(cid, self.period, reached, START)] if self._read() else []


async def test_a_members_view_never_shows_a_completion_without_its_progress() -> None:
    """The view reads completions and progress in two statements; a completion committed
    between them must not show as completed with nothing done (0, no units)."""
    stored = _stored(explorer())
    now = datetime(2026, 2, 1, tzinfo=UTC)
    spec = stored.spec
    period = c.period_of(spec.window, now, spec.time_zone, stored.start_at)
    store = CommitsBetweenReads(stored, period, c.completion_key(spec.repeatable, period))
    (view,) = await use_cases.member_progress(FakeUow(store), "m1", now)  # type: ignore[arg-type]
    shown = (view.progress.value, sorted(view.progress.units), view.completed_at is not None)
    assert shown in ((0, [], False), (3, ["cinema", "hotel", "mall"], False)), shown
