"""The checker's pure parts, fast: the sorted merge of two streams, what a member's postings and
tiers' activity differ by, and the report's limits, text and JSON."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from loyalty_check.crossdb import _which, merge
from loyalty_check.findings import Finding, Report, RuleResult


async def _stream(*keys: str) -> AsyncIterator[Any]:
    for key in keys:
        yield {"k": key}


@pytest.mark.asyncio(loop_scope="session")
async def test_the_merge_meets_every_key_once_with_whichever_sides_have_it() -> None:
    seen: list[tuple[str, bool, bool]] = []
    await merge(
        _stream("a", "c", "d"),
        _stream("b", "c", "e"),
        "k",
        lambda key, left, right: seen.append((key, left is not None, right is not None)),
    )
    assert seen == [
        ("a", True, False),
        ("b", False, True),
        ("c", True, True),
        ("d", True, False),
        ("e", False, True),
    ]


def test_a_members_difference_names_postings_missing_doubled_unknown_and_changed() -> None:
    posted = [("p1", 100), ("p2", 50), ("p3", -20), ("p4", 10)]
    counted = [("p1", 100), ("p2", 50), ("p2", 50), ("x9", 5), ("p4", 11)]
    assert _which(posted, counted) == (
        "not counted: posting p3; counted twice: posting p2; "
        "counted without a posting: event x9; other points than the ledger: posting p4"
    )
    many = [(f"p{i}", 1) for i in range(5)]
    assert _which(many, []) == "not counted: posting p0, p1, p2 and 2 more"


def test_a_rule_keeps_its_first_findings_and_counts_the_rest() -> None:
    result = RuleResult("outbox-published", "no outbox row unpublished")
    result.add([Finding("outbox-published", "", "a", "b", "points")] * 2, 2, limit=3)
    result.add([Finding("outbox-published", "", "a", "b", "tiers")] * 3, 5, limit=3)
    assert (len(result.findings), result.total, result.more) == (3, 7, 4)
    report = Report([result, RuleResult("balance-lots", "lots")], seconds=1.5)
    assert not report.clean
    text = report.text().splitlines()
    assert text[0] == "outbox-published  -  expected a  found b  (points)"
    assert text[3] == "outbox-published  ... and 4 more"
    assert text[-1].split() == ["total", "7", "findings", "1.50"]
    data = json.loads(report.dumps())
    assert [(r["rule"], r["findings"], r["shown"], r["more"]) for r in data["rules"]] == [
        ("outbox-published", 7, 3, 4),
        ("balance-lots", 0, 0, 0),
    ]
    assert Report([RuleResult("balance-lots", "lots")]).clean
