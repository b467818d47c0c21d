"""What the load asked and got, what the ledger holds, and the row that compares them: pure
arithmetic, no I/O.

A request is one purchase, checkout or redemption with its own request_id and order id, sent
again with the same request_id until it gets an answer. Its effects are found on the ledger by
its order id: earn postings for a purchase; redemption postings not cancelled for a checkout or
a redemption (a checkout attempt that was given back leaves a redemption and its cancellation,
which is no effect).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

PURCHASE, CHECKOUT, REDEEM = "purchase", "checkout", "redeem"
KINDS = (PURCHASE, CHECKOUT, REDEEM)

OK = "ok"  # a success answer
REFUSED = "refused"  # a final refusal (4xx other than those retried)
UNANSWERED = "unanswered"  # no answer before the client gave up

# Answers the client retries with the same request_id, and that are no fault of the suite's
# while something it depends on is down: 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED (a deadline
# that held), 429 (rate), 409 ABORTED (a checkout still being worked on), and no answer at all
# (connection refused or reset, the client's own timeout).
RETRIED_HTTP = {409, 429, 503, 504}
CONNECTION = "connection"
SLOWEST_SHOWN = 3
# Calls under the gateway's deadline one after another in the worst case of each kind: a
# checkout whose step ran out of time looks the step up and gives it back before answering.
DEADLINES_IN_SEQUENCE = {PURCHASE: 1, REDEEM: 1, CHECKOUT: 2}
TIMEOUT = "timeout"


@dataclass
class Attempt:
    started: float  # seconds since the load began
    ended: float
    code: str  # "200", "503", ... or CONNECTION / TIMEOUT
    status: str = ""  # google.rpc code name of an error answer, e.g. UNAVAILABLE
    reason: str = ""  # its ErrorInfo reason

    @property
    def ok(self) -> bool:
        return self.code in ("200", "201")

    @property
    def retried(self) -> bool:
        return self.code in (CONNECTION, TIMEOUT) or (
            self.code.isdigit() and int(self.code) in RETRIED_HTTP
        )

    @property
    def bad(self) -> bool:
        """An answer that is a bug whatever failed: a 5xx other than 503 / 504, or a status of
        INTERNAL or UNKNOWN in any answer."""
        if self.status in ("INTERNAL", "UNKNOWN"):
            return True
        return self.code.isdigit() and int(self.code) >= 500 and int(self.code) not in (503, 504)


@dataclass
class Request:
    kind: str
    request_id: str
    order_id: str
    member_id: str
    attempts: list[Attempt] = field(default_factory=list)
    answer: str = UNANSWERED

    @property
    def acknowledged(self) -> bool:
        return self.answer == OK


@dataclass
class Ledger:
    """Effects on the ledger by (kind, order id), counted from the members' postings."""

    effects: Counter[tuple[str, str]] = field(default_factory=Counter)

    @classmethod
    def of_postings(cls, postings: Iterable[Posting]) -> Ledger:
        """Earns by order count for purchases; redemptions by order, less those cancelled,
        count for checkouts and redemptions (which one is told by the request's kind)."""
        every = list(postings)
        cancelled = {p.related_posting_id for p in every if p.kind == "REDEMPTION_CANCEL"}
        ledger = cls()
        for p in every:
            if not p.order_id:
                continue
            if p.kind == "EARN":
                ledger.effects[(PURCHASE, p.order_id)] += 1
            elif p.kind == "REDEEM" and p.posting_id not in cancelled:
                ledger.effects[(REDEEM, p.order_id)] += 1
        return ledger

    def of(self, request: Request) -> int:
        kind = PURCHASE if request.kind == PURCHASE else REDEEM
        return self.effects[(kind, request.order_id)]


@dataclass(frozen=True)
class Posting:
    posting_id: str
    kind: str  # the PostingKind without its prefix: EARN, REDEEM, REDEMPTION_CANCEL, ...
    order_id: str
    related_posting_id: str = ""
    member_id: str = ""
    reason: str = ""


@dataclass
class Row:
    scenario: str
    requests: int = 0
    acknowledged: int = 0
    on_ledger: int = 0
    duplicates: int = 0
    lost: int = 0
    refused: int = 0
    unanswered: int = 0
    refused_but_taken: int = 0
    recover_seconds: float | None = None
    checker_findings: int | None = None  # None: the checker did not run
    codes: dict[str, int] = field(default_factory=dict)
    bad_answers: int = 0
    slowest_seconds: float = 0.0
    slow_answers: int = 0
    problems: list[str] = field(default_factory=list)
    notes: dict[str, object] = field(default_factory=dict)
    skipped: str = ""

    @property
    def passed(self) -> bool:
        return not self.skipped and not self.problems

    def judge(self) -> Row:
        """The problems of this row: anything lost, doubled, taken without an answer saying
        so, a bad answer, an answer later than the deadline, a checker finding."""
        if self.skipped:
            return self
        found = [
            (self.lost, f"{self.lost} acknowledged request(s) not on the ledger"),
            (self.duplicates, f"{self.duplicates} effect(s) more than once"),
            (self.refused_but_taken, f"{self.refused_but_taken} refused request(s) taken"),
            (self.unanswered, f"{self.unanswered} request(s) never answered"),
            (self.bad_answers, f"{self.bad_answers} INTERNAL/UNKNOWN/5xx answer(s)"),
            (self.slow_answers, f"{self.slow_answers} answer(s) later than the deadline"),
        ]
        self.problems[:0] = [text for count, text in found if count]
        if self.checker_findings:
            self.problems.append(f"loyalty-check: {self.checker_findings} finding(s)")
        elif self.checker_findings is None:
            self.problems.append("loyalty-check did not run")
        return self


def tally(
    scenario: str,
    requests: Sequence[Request],
    ledger: Ledger,
    *,
    fault_at: float | None,
    deadline_seconds: float,
    margin_seconds: float = 0.0,
) -> Row:
    """The row of a scenario: what was asked, acknowledged and found on the ledger. An answer
    is late after the deadline times the kind's DEADLINES_IN_SEQUENCE, plus the margin."""
    row = Row(scenario, requests=len(requests))
    codes: Counter[str] = Counter()
    for request in requests:
        effects = ledger.of(request)
        if request.acknowledged:
            row.acknowledged += 1
            row.on_ledger += effects >= 1
            row.lost += effects == 0
        elif request.answer == REFUSED:
            row.refused += 1
            row.refused_but_taken += effects > 0
        else:
            row.unanswered += 1
        row.duplicates += max(effects - 1, 0)
        bound = deadline_seconds * DEADLINES_IN_SEQUENCE[request.kind] + margin_seconds
        for attempt in request.attempts:
            codes[_label(attempt)] += 1
            row.bad_answers += attempt.bad
            took = attempt.ended - attempt.started
            row.slowest_seconds = max(row.slowest_seconds, took)
            row.slow_answers += took > bound
    row.codes = dict(codes.most_common())
    slowest = sorted(
        ((a.ended - a.started, r.kind, _label(a)) for r in requests for a in r.attempts),
        reverse=True,
    )[:SLOWEST_SHOWN]
    row.notes["slowest"] = [f"{took:.1f} s {kind} {label}" for took, kind, label in slowest]
    row.recover_seconds = recovery(requests, fault_at)
    return row


def _label(attempt: Attempt) -> str:
    return f"{attempt.code} {attempt.status}".strip() if attempt.status else attempt.code


def recovery(requests: Sequence[Request], fault_at: float | None) -> float | None:
    """Seconds from the fault to the first success after the last failed attempt (0 when
    nothing failed after the fault; None without a fault)."""
    if fault_at is None:
        return None
    attempts = [a for r in requests for a in r.attempts if a.ended >= fault_at]
    failed = [a.ended for a in attempts if not a.ok]
    if not failed:
        return 0.0
    last_failure = max(failed)
    after = [a.ended for a in attempts if a.ok and a.ended > last_failure]
    if not after:
        return None  # never recovered while the load ran
    return round(min(after) - fault_at, 1)


def engagement_awards(
    postings: Sequence[Posting],
    journey_reason: str,
    challenge_reason: str,
    target: int,
    months: int = 1,
) -> list[str]:
    """What engagement did other than once, member by member: the journey's award for each
    purchase on the ledger (an earn posting: the load's members earn nothing else), and the
    repeatable challenge's once a month for a member with `target` purchases (a load across a
    month's end, `months` 2, may pay 0 to 2 times: each month's purchases are not told apart)."""
    earned: Counter[str] = Counter()
    journey: Counter[str] = Counter()
    challenge: Counter[str] = Counter()
    for p in postings:
        if p.kind == "EARN":
            earned[p.member_id] += 1
        elif p.reason == journey_reason:
            journey[p.member_id] += 1
        elif p.reason == challenge_reason:
            challenge[p.member_id] += 1
    problems: list[str] = []
    for member in sorted(set(earned) | set(journey) | set(challenge)):
        if journey[member] != earned[member]:
            problems.append(
                f"engagement: member {member} {earned[member]} purchases, "
                f"{journey[member]} journey awards"
            )
        once = int(earned[member] >= target)
        allowed = {once} if months == 1 else set(range(min(months, earned[member]) + 1))
        if challenge[member] not in allowed:
            problems.append(
                f"engagement: member {member} {earned[member]} purchases, "
                f"{challenge[member]} challenge rewards (once a month from {target})"
            )
    return problems
