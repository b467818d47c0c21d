"""The programme page's pure helpers: a submitted file's line breaks as the review saw them, its
lines numbered with their problems and changes, confirmations remembered by request_id, and
the page refused to every role but the group admin."""

from __future__ import annotations

import uuid

from loyalty_admin.document import Problem
from loyalty_admin.programme import Outcome
from loyalty_admin.review import Change, Review, SectionReview
from loyalty_gateway.console.pages.programme import (
    KEPT,
    Applies,
    changed_lines,
    normalised,
    numbered,
    valid_request_id,
)

from tests.gateway.unit.test_console_auth import MemoryAccounts, client, signed_in


def test_a_forms_line_breaks_are_the_files() -> None:
    assert normalised("a:\r\n  b: 1\r\nc: 2\r") == "a:\n  b: 1\nc: 2\n"
    assert normalised("a: 1\n") == "a: 1\n"


def test_lines_are_numbered_from_one_with_their_problems_and_changes() -> None:
    problems = (
        Problem(("tiers",), "not a list", 2, 3),
        Problem(("tiers",), "again", 2, 5),
        Problem((), "the file", 0),
    )
    lines = numbered("points:\ntiers: 1\nbenefits: {}", problems, {3})
    assert [line.number for line in lines] == [1, 2, 3]
    assert [p.message for p in lines[1].problems] == ["not a list", "again"]
    assert not lines[0].problems and not lines[0].changed
    assert lines[2].changed and lines[2].text == "benefits: {}"


def test_the_changed_lines_of_a_review() -> None:
    found = Review(
        "x",
        "d",
        sections=(
            SectionReview(
                "tiers",
                "tiers",
                3,
                1,
                (
                    Change("changed", "tiers[gold].thresholds", "1", "2", 7),
                    Change("removed", "x", "1", "", 0),
                ),
            ),
        ),
    )
    assert changed_lines(found) == {7}


def test_request_ids_are_uuids() -> None:
    assert valid_request_id(str(uuid.uuid4()))
    assert not valid_request_id("")
    assert not valid_request_id("1; drop")


def test_confirmations_are_remembered_per_operator_and_bounded() -> None:
    applies = Applies()
    first = Outcome(done={"tiers": "v4"})
    applies.keep("op-a", "r1", first)
    assert applies.get("op-a", "r1") is first
    assert applies.get("op-b", "r1") is None
    for n in range(KEPT):
        applies.keep("op-a", f"more-{n}", Outcome())
    assert applies.get("op-a", "r1") is None and len(applies.done) == KEPT


def test_only_a_group_admin_has_the_programme_page() -> None:
    for role, unit in (
        ("analyst", "group"),
        ("customer_service", "group"),
        ("unit_manager", "hotel"),
    ):
        accounts = MemoryAccounts()
        login = f"op-{uuid.uuid4().hex[:8]}"
        accounts.add(login, role, unit)
        http = client(accounts)
        token = signed_in(http, login)
        assert http.get("/console/programme").status_code == 403
        refused = http.post(
            "/console/programme/apply",
            data={
                "csrf": token,
                "text": "tiers: []",
                "digest": "d",
                "request_id": str(uuid.uuid4()),
                "reason": "r",
            },
            headers={"Origin": "http://testserver"},
        )
        assert refused.status_code == 403
        assert 'href="/console/programme"' not in http.get("/console/").text
