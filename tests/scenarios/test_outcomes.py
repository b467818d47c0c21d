"""The row of a fault scenario: what was acknowledged, found on the ledger once, twice or
not at all; which answers are bugs whatever failed; how long the load took to recover."""

from __future__ import annotations

import uuid

from loyalty_devstack.reliability.outcomes import (
    CHECKOUT,
    CONNECTION,
    OK,
    PURCHASE,
    REDEEM,
    REFUSED,
    TIMEOUT,
    Attempt,
    Ledger,
    Posting,
    Request,
    engagement_awards,
    recovery,
    tally,
)


def request(kind: str, order: str, *codes: str, answer: str = OK) -> Request:
    made = Request(kind, f"rid-{order}", order, "m1")
    made.attempts = [Attempt(float(i), float(i) + 0.5, code) for i, code in enumerate(codes)]
    made.answer = answer
    return made


def earn(posting: str, order: str) -> Posting:
    return Posting(posting, "EARN", order)


def redemption(posting: str, order: str) -> Posting:
    return Posting(posting, "REDEEM", order)


def cancel(posting: str, of: str) -> Posting:
    return Posting(posting, "REDEMPTION_CANCEL", "", of)


def test_acknowledged_requests_found_once_are_on_the_ledger() -> None:
    row = tally(
        "s",
        [request(PURCHASE, "o1", "503", "200"), request(REDEEM, "o2", "200")],
        Ledger.of_postings([earn("p1", "o1"), redemption("p2", "o2")]),
        fault_at=None,
        deadline_seconds=8,
    )
    row.checker_findings = 0
    row.judge()
    assert (row.requests, row.acknowledged, row.on_ledger) == (2, 2, 2)
    assert (row.duplicates, row.lost) == (0, 0)
    assert row.passed
    assert row.codes == {"200": 2, "503": 1}


def test_an_acknowledged_request_missing_from_the_ledger_is_lost() -> None:
    row = tally(
        "s", [request(PURCHASE, "o1", "200")], Ledger(), fault_at=None, deadline_seconds=8
    ).judge()
    assert (row.acknowledged, row.on_ledger, row.lost) == (1, 0, 1)
    assert not row.passed
    assert "1 acknowledged request(s) not on the ledger" in row.problems


def test_an_order_earned_twice_is_one_duplicate() -> None:
    row = tally(
        "s",
        [request(PURCHASE, "o1", "504", "200")],
        Ledger.of_postings([earn("p1", "o1"), earn("p2", "o1")]),
        fault_at=None,
        deadline_seconds=8,
    ).judge()
    assert (row.on_ledger, row.duplicates, row.lost) == (1, 1, 0)
    assert "1 effect(s) more than once" in row.problems


def test_a_checkout_attempt_given_back_is_no_effect() -> None:
    """The first attempt's redemption was cancelled (its answer was a 503); the retry's
    redemption is the one effect."""
    ledger = Ledger.of_postings(
        [redemption("r1", "co1"), cancel("c1", "r1"), redemption("r2", "co1")]
    )
    row = tally(
        "s",
        [request(CHECKOUT, "co1", "503", "200")],
        ledger,
        fault_at=None,
        deadline_seconds=8,
    ).judge()
    assert (row.on_ledger, row.duplicates, row.lost) == (1, 0, 0)


def test_a_checkout_redeemed_twice_and_not_given_back_is_a_duplicate() -> None:
    ledger = Ledger.of_postings([redemption("r1", "co1"), redemption("r2", "co1")])
    row = tally("s", [request(CHECKOUT, "co1", "200")], ledger, fault_at=None, deadline_seconds=8)
    assert row.duplicates == 1


def test_a_refused_request_that_took_something_fails_the_row() -> None:
    row = tally(
        "s",
        [request(REDEEM, "o1", "400", answer=REFUSED)],
        Ledger.of_postings([redemption("r1", "o1")]),
        fault_at=None,
        deadline_seconds=8,
    ).judge()
    assert (row.acknowledged, row.refused, row.refused_but_taken) == (0, 1, 1)
    assert not row.passed


def test_postings_of_other_orders_and_kinds_are_no_effect_of_the_load() -> None:
    ledger = Ledger.of_postings(
        [Posting("a1", "ADJUST", ""), earn("p1", "other"), Posting("x", "REVERSE", "o1")]
    )
    assert ledger.of(request(PURCHASE, "o1", "200")) == 0


def test_internal_unknown_and_5xx_other_than_503_and_504_are_bad_answers() -> None:
    attempts = [
        Attempt(0, 1, "500", "INTERNAL"),
        Attempt(0, 1, "502"),
        Attempt(0, 1, "400", "UNKNOWN"),
        Attempt(0, 1, "503", "UNAVAILABLE"),
        Attempt(0, 1, "504", "DEADLINE_EXCEEDED"),
        Attempt(0, 1, CONNECTION),
        Attempt(0, 1, TIMEOUT),
        Attempt(0, 1, "409", "ABORTED"),
    ]
    assert [a.bad for a in attempts] == [True, True, True, False, False, False, False, False]
    assert [a.retried for a in attempts] == [False, False, False, True, True, True, True, True]


def test_an_answer_later_than_the_deadline_fails_the_row() -> None:
    """A deadline of 5 s and a margin of 3: 8 s for a purchase; a checkout that gives back
    after its step ran out of time may take two deadlines, 13 s."""
    slow = request(PURCHASE, "o1")
    slow.attempts = [Attempt(1.0, 9.5, "200")]
    checkouts = [request(CHECKOUT, "co1"), request(CHECKOUT, "co2")]
    checkouts[0].attempts = [Attempt(1.0, 11.0, "503"), Attempt(11.0, 12.0, "200")]
    checkouts[1].attempts = [Attempt(1.0, 15.0, "200")]
    row = tally(
        "s",
        [slow, *checkouts],
        Ledger.of_postings([earn("p1", "o1"), redemption("r1", "co1"), redemption("r2", "co2")]),
        fault_at=None,
        deadline_seconds=5,
        margin_seconds=3,
    ).judge()
    assert (row.slow_answers, row.slowest_seconds) == (2, 14.0)
    assert "2 answer(s) later than the deadline" in row.problems


def test_a_request_never_answered_fails_the_row() -> None:
    row = tally(
        "s",
        [request(PURCHASE, "o1", TIMEOUT, answer="unanswered")],
        Ledger(),
        fault_at=None,
        deadline_seconds=8,
    ).judge()
    assert row.unanswered == 1 and not row.passed


def test_checker_findings_fail_the_row_and_a_checker_that_did_not_run_too() -> None:
    found = tally("s", [], Ledger(), fault_at=None, deadline_seconds=8)
    found.checker_findings = 2
    assert found.judge().problems == ["loyalty-check: 2 finding(s)"]
    missing = tally("s", [], Ledger(), fault_at=None, deadline_seconds=8)
    assert missing.judge().problems == ["loyalty-check did not run"]


def test_recovery_is_from_the_fault_to_the_first_success_after_the_last_failure() -> None:
    timeline = Request(PURCHASE, "r", "o", "m")
    timeline.attempts = [
        Attempt(0.0, 1.0, "200"),  # before the fault
        Attempt(9.0, 10.5, "503"),
        Attempt(10.0, 11.0, "200"),  # a success between failures is not recovery yet
        Attempt(11.0, 14.0, CONNECTION),
        Attempt(14.5, 16.0, "200"),
        Attempt(16.0, 17.0, "200"),
    ]
    assert recovery([timeline], fault_at=10.0) == 6.0
    assert recovery([timeline], fault_at=None) is None


def test_recovery_is_zero_when_nothing_failed_after_the_fault() -> None:
    timeline = Request(PURCHASE, "r", "o", "m")
    timeline.attempts = [Attempt(0.0, 1.0, "503"), Attempt(1.0, 2.0, "200")]
    assert recovery([timeline], fault_at=5.0) == 0.0


def test_no_success_after_the_last_failure_is_no_recovery() -> None:
    timeline = Request(PURCHASE, "r", "o", "m")
    timeline.attempts = [Attempt(5.0, 6.0, "503")]
    assert recovery([timeline], fault_at=5.0) is None


def test_an_engagement_award_done_twice_or_lost_is_a_problem() -> None:
    def earn(member: str) -> Posting:
        return Posting(uuid.uuid4().hex, "EARN", uuid.uuid4().hex, "", member)

    def award(member: str, reason: str) -> Posting:
        return Posting(uuid.uuid4().hex, "ADJUST", "", "", member, reason)

    once = [earn("a"), award("a", "j"), earn("a"), award("a", "j"), earn("a"), award("a", "j")]
    fourth = [earn("a"), award("a", "j"), award("a", "c")]
    assert engagement_awards([*once, *fourth], "j", "c", 3) == []
    assert engagement_awards([earn("c"), award("c", "j")], "j", "c", 3) == []
    twice = [*once, award("a", "j"), award("a", "c")]
    lost = [earn("b"), earn("b"), earn("b"), award("b", "j"), award("b", "c"), award("b", "c")]
    assert engagement_awards(twice + lost, "j", "c", 3) == [
        "engagement: member a 3 purchases, 4 journey awards",
        "engagement: member b 3 purchases, 1 journey awards",
        "engagement: member b 3 purchases, 2 challenge rewards (once a month from 3)",
    ]
    # Across a month's end the challenge may pay twice (or not at all), never three times.
    assert engagement_awards([*once, award("a", "c"), award("a", "c")], "j", "c", 3, 2) == []
    assert engagement_awards(once, "j", "c", 3, 2) == []
