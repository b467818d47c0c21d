"""The review the console shows, offline: a file's problems at their lines, and per section what
is added, changed and removed against the live programme, each at its line in the new file,
with a digest that follows the live state."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from loyalty.engagement.v1 import engagement_service_pb2 as engagement_pb
from loyalty_admin.document import loads
from loyalty_admin.live import Live
from loyalty_admin.programme import PlanRefused
from loyalty_admin.review import Change, Review, SectionReview, Stale, apply, review
from loyalty_devstack.demo import HUAYUE

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _huayue(*edits: tuple[str, str]) -> str:
    text = HUAYUE.read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def _live(text: str | None = None) -> Live:
    """The services holding the file `text` (the Huayue file by default)."""
    file = loads(text or HUAYUE.read_text())
    return Live(
        points=file.points,
        points_in_force=1,
        tiers=file.tiers,
        benefits=file.benefits,
        stock=dict(file.reward_stock or {}),
        journeys=list(file.journeys or []),
        challenges=list(file.challenges or []),
    )


def _line_of(text: str, needle: str, after: str = "") -> int:
    """The 1-based line of `needle` (the first after the line holding `after`)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if after in line) if after else 0
    return next(i for i, line in enumerate(lines) if i >= start and needle in line) + 1


def _section(found: Review, name: str) -> SectionReview:
    (section,) = [s for s in found.sections if s.section == name]
    return section


def _only_change(found: Review, name: str) -> Change:
    changed = [s.section for s in found.sections if s.changed]
    assert changed == [name], changed
    (change,) = _section(found, name).changes
    return change


def test_the_live_programme_itself_is_unchanged_and_its_digest_stable() -> None:
    text = HUAYUE.read_text()
    found = review(text, _live(), now=NOW)
    assert found.ok and not found.changed and not found.problems
    assert [s.section for s in found.sections] == [
        "points",
        "tiers",
        "benefits",
        "reward_stock",
        "journeys",
        "challenges",
    ]
    lines = text.splitlines()
    assert _section(found, "tiers").line == lines.index("tiers:") + 1
    assert _section(found, "journeys").line == lines.index("journeys:") + 1
    assert review(text, _live(), now=NOW).digest == found.digest


def test_problems_are_given_at_their_lines_and_columns() -> None:
    text = _huayue(
        ('    multiplier: "2"\n    pending_days: 7', '    multiplyer: "2"\n    pending_days: 7'),
        ("    kind: TRIGGER_KIND_INACTIVE", "    kind: TRIGGER_KIND_SOMETIMES"),
    )
    found = review(text, _live(), now=NOW)
    assert not found.ok and not found.sections
    where = {(p.line, p.column): p.message for p in found.problems}
    misspelt = _line_of(text, "multiplyer")
    trigger = _line_of(text, "TRIGGER_KIND_SOMETIMES")
    assert (misspelt, 5) in where and "unknown field" in where[(misspelt, 5)]
    assert (trigger, 11) in where and "TRIGGER_KIND_SOMETIMES" in where[(trigger, 11)]
    assert [p.line for p in found.problems] == sorted(p.line for p in found.problems)


def test_a_file_that_is_not_yaml_is_one_problem_at_its_line() -> None:
    found = review("points:\n  units: [\n", _live(), now=NOW)
    assert not found.ok
    (problem,) = found.problems
    assert problem.line == 3 and problem.message.startswith("not YAML")


def test_a_changed_ladder_threshold_is_a_change_at_its_line() -> None:
    text = _huayue(('      value: "20000"', '      value: "25000"'))
    found = review(text, _live(), now=NOW)
    change = _only_change(found, "tiers")
    assert change.kind == "changed"
    assert change.path == "tiers[gold].thresholds[METRIC_QUALIFYING_SPEND].value"
    assert (change.before, change.after) == ('"20000"', '"25000"')
    assert change.line == _line_of(text, '"25000"')
    assert _section(found, "tiers").counts() == {"added": 0, "changed": 1, "removed": 0}
    assert found.digest != review(HUAYUE.read_text(), _live(), now=NOW).digest


def test_a_changed_programme_multiplier_is_a_change_at_its_line() -> None:
    text = _huayue(
        ('    multiplier: "2"\n    pending_days: 7', '    multiplier: "3"\n    pending_days: 7')
    )
    change = _only_change(review(text, _live(), now=NOW), "points")
    assert (change.kind, change.path) == ("changed", "units[hotel].multiplier")
    assert change.line == _line_of(text, 'multiplier: "3"')
    assert change.column == 17


def test_a_catalogue_benefit_removed_then_one_added() -> None:
    original = HUAYUE.read_text()
    start = original.index("  - code: mall-platinum-discount")
    end = original.index("  - code:", start + 1)
    removed = original[:start] + original[end:]
    found = review(removed, _live(), now=NOW)
    change = _only_change(found, "benefits")
    assert (change.kind, change.path) == ("removed", "benefits[mall-platinum-discount]")
    assert change.before and not change.after
    # Not in the new file: placed at the list it was in.
    assert change.line == _line_of(removed, "  benefits:", "tiers:")
    # The other way round: the live catalogue lacks it, the file adds it at its line.
    added = review(original, _live(removed), now=NOW)
    change = _only_change(added, "benefits")
    assert (change.kind, change.path) == ("added", "benefits[mall-platinum-discount]")
    assert change.line == _line_of(original, "- code: mall-platinum-discount")


def test_a_changed_journey_and_its_state() -> None:
    text = _huayue(("TRIGGER_KIND_INACTIVE\n    days: 90", "TRIGGER_KIND_INACTIVE\n    days: 60"))
    change = _only_change(review(text, _live(), now=NOW), "journeys")
    assert (change.kind, change.path) == ("changed", "journeys[win-back].trigger.days")
    assert change.line == _line_of(text, "days: 60", "key: win-back")
    live = _live()
    assert live.journeys is not None
    live.journeys[0].state = engagement_pb.JOURNEY_STATE_PAUSED
    change = _only_change(review(HUAYUE.read_text(), live, now=NOW), "journeys")
    assert change.path == "journeys[win-back].state"
    assert change.after == '"JOURNEY_STATE_ACTIVE"'
    assert change.line == _line_of(HUAYUE.read_text(), "state: JOURNEY_STATE_ACTIVE")


def test_the_digest_follows_the_live_sections_the_file_names() -> None:
    text = HUAYUE.read_text()
    before = review(text, _live(), now=NOW).digest
    republished = _live()
    assert republished.tiers is not None
    republished.tiers.version += 1  # the same ladder, published again by someone else
    assert review(text, republished, now=NOW).digest != before
    bought = _live()
    bought.stock = {code: level - 1 for code, level in bought.stock.items()}
    # Members' purchases move the stock all the time: the plan tops it up when it runs.
    assert review(text, bought, now=NOW).digest == before
    only_points = "points:\n" + text.split("points:\n", 1)[1].split("\ntiers:", 1)[0] + "\n"
    assert review(only_points, republished, now=NOW).digest == (
        review(only_points, _live(), now=NOW).digest
    )


def test_a_plan_the_live_programme_refuses_is_not_ok() -> None:
    text = _huayue(("  state: JOURNEY_STATE_ACTIVE", "  state: JOURNEY_STATE_PAUSED"))
    live = _live()
    live.journeys = [j for j in live.journeys or [] if j.key != "win-back"]
    found = review(text, live, now=NOW)
    assert not found.ok and "PAUSED" in found.refused


async def test_apply_refuses_a_review_with_problems_or_a_digest_not_its_own() -> None:
    bad = review("points: 3\n", _live(), now=NOW)
    with pytest.raises(PlanRefused):
        await apply(bad, bad.digest, None)  # type: ignore[arg-type]
    good = review(_huayue(("    days: 90", "    days: 60")), _live(), now=NOW)
    with pytest.raises(Stale):
        await apply(good, "0" * 32, None)  # type: ignore[arg-type]
