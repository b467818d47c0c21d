"""The programme file, offline: the Huayue file reads as the demo's messages, each problem is
reported at its line and field, the schema in docs/ is the one the contracts generate, and the
comparison that makes apply idempotent sees through the services' spelling of a document."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_pb
from loyalty_admin import schema
from loyalty_admin.cli import main
from loyalty_admin.document import InvalidFile, loads
from loyalty_admin.messages import canonical, changes
from loyalty_devstack.demo import HUAYUE, huayue_ladder, huayue_programme

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = ROOT / "docs" / "programme.schema.json"


def _problems(text: str) -> list[str]:
    with pytest.raises(InvalidFile) as raised:
        loads(text)
    return [problem.render("f.yaml") for problem in raised.value.problems]


def _huayue(*edits: tuple[str, str]) -> str:
    text = HUAYUE.read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def test_the_schema_in_docs_is_the_one_the_contracts_generate() -> None:
    assert SCHEMA.read_text() == schema.rendered(), (
        "docs/programme.schema.json is stale: "
        "python -m loyalty_admin.schema > docs/programme.schema.json"
    )


def test_the_huayue_file_follows_the_schema_and_reads_as_the_services_messages() -> None:
    jsonschema.validate(yaml.safe_load(HUAYUE.read_text()), schema.programme_schema())
    found = loads(HUAYUE.read_text())
    assert found.sections == [
        "points",
        "tiers",
        "benefits",
        "reward_stock",
        "journeys",
        "challenges",
    ]
    assert [j.key for j in found.journeys or []] == [
        "win-back",
        "expiring-points",
        "hotel-to-cinema",
        "welcome-silver",
        "welcome-gold",
        "welcome-platinum",
        "welcome-diamond",
        "birthday-gift",
    ]
    assert found.points == huayue_programme()
    assert found.points is not None and found.points.units[1].multiplier == "2"
    assert found.points.effective_from.ToJsonString() == "2019-12-31T16:00:00Z"  # +08:00 kept
    assert [t.code for t in huayue_ladder().tiers] == [
        "basic",
        "silver",
        "gold",
        "platinum",
        "diamond",
    ]
    assert found.reward_stock == {
        "cinema-ticket": 200,
        "mall-voucher-100": 500,
        "hotel-breakfast": 100,
    }


def test_problems_point_at_the_line_and_field() -> None:
    problems = _problems(
        _huayue(
            ('    multiplier: "2"\n    pending_days: 7', "    multiplier: 2\n    pending_dayz: 7"),
            ("stacking: STACKING_EXCLUSIVE", "stacking: STACKING_ALONE"),
            ('start_time: "2025-06-01T00:00:00+08:00"', 'start_time: "June 1st"'),
            ("coupon_template: hotel-breakfast", "coupon_template: hotel-brekfast"),
        )
    )
    lines = HUAYUE.read_text().splitlines()

    def line(text: str) -> int:
        return lines.index(text) + 1

    hotel = line("  - unit: hotel")
    start = line('    start_time: "2025-06-01T00:00:00+08:00"')
    stacking = line("    stacking: STACKING_EXCLUSIVE")
    template = line("    coupon_template: hotel-breakfast")
    assert problems == [
        f"f.yaml:{hotel + 1}:17: points.units[1].multiplier: 2 is not a string: decimals are "
        'written in quotes ("2")',
        f"f.yaml:{hotel + 2}:5: points.units[1].pending_dayz: unknown field (known: "
        "legacy_points_per_point, multiplier, pending_days, unit)",
        f"f.yaml:{start}:17: "
        "points.campaigns[1].start_time: 'June 1st' is not an RFC 3339 timestamp, e.g. "
        "2026-01-01T00:00:00+08:00",
        f"f.yaml:{stacking}:15: "
        "points.campaigns[1].stacking: 'STACKING_ALONE' is not one of STACKING_EXCLUSIVE, "
        "STACKING_COMBINABLE",
        f"f.yaml:{template}:22: "
        "benefits.rewards[2].coupon_template: 'hotel-brekfast': no such coupon template in the "
        "file",
    ]


def test_sections_are_checked_against_each_other_and_required_fields_named() -> None:
    problems = _problems(
        """\
tiers:
  tiers:
  - code: basic
  - code: gold
benefits:
  tiers:
  - tier: basic
  - tier: platinum
  benefits:
  - code: lounge
    kind: BENEFIT_KIND_FREE_SERVICE
    tiers: [diamond]
reward_stock:
  tea-set: 5
points:
  units:
  - unit: mall
    multiplier: "1"
  units: []
"""
    )
    assert problems == [
        "f.yaml:7:3: benefits.tiers: the catalogue's tiers ['basic', 'platinum'] are not the "
        "ladder's ['basic', 'gold']",
        "f.yaml:12:13: benefits.benefits[0].tiers[0]: 'diamond': no such tier of the ladder in "
        "the file",
        "f.yaml:14:3: reward_stock.tea-set: 'tea-set': no such reward in benefits.rewards in "
        "the file",
        "f.yaml:16:3: points: required field 'currencies' is missing",
        "f.yaml:19:3: points.units: given twice",
        "f.yaml:19:10: points.units: [] should be non-empty",
    ]


def test_a_file_that_is_not_yaml_says_where() -> None:
    assert _problems("points: [1, 2\n") == [
        "f.yaml:2:1: (file): not YAML: expected ',' or ']', but got '<stream end>'"
    ]


def test_validate_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["programme", "validate", str(HUAYUE)]) == 0
    assert (
        capsys.readouterr().out
        == f"{HUAYUE}: valid (points, tiers, benefits, reward_stock, journeys, "
        "challenges)\n"
    )
    broken = tmp_path / "broken.yaml"
    broken.write_text(_huayue(("window_months: 12", "window_months: twelve")))
    assert main(["programme", "validate", str(broken)]) == 1
    err = capsys.readouterr().err
    assert "tiers.window_months: 'twelve' is not of type 'integer'" in err
    assert err.endswith("1 problem(s); nothing applied\n")


def test_the_comparison_sees_through_the_services_spelling() -> None:
    """A ladder as stored ("5000.00", defaults filled in, enums named) equals the file's."""
    written = tiers_pb.Ladder(
        tiers=[
            tiers_pb.Tier(code="basic"),
            tiers_pb.Tier(
                code="silver",
                thresholds=[
                    tiers_pb.Threshold(metric=tiers_pb.METRIC_QUALIFYING_SPEND, value="5000"),
                    tiers_pb.Threshold(metric=tiers_pb.METRIC_VISITS, value="3"),
                ],
            ),
        ],
        growth_weights={"hotel": "2"},
    )
    stored = tiers_pb.Ladder(version=3, window_months=12, time_zone="UTC", base_currency_code="CNY")
    stored.CopyFrom(written)
    stored.version, stored.window_months, stored.time_zone = 3, 12, "UTC"
    stored.downgrade_policy = tiers_pb.DOWNGRADE_POLICY_ONE_LEVEL
    stored.growth_weights["hotel"] = "2.0"
    del stored.tiers[1].thresholds[:]
    stored.tiers[1].thresholds.add(metric=tiers_pb.METRIC_VISITS, value="3")
    stored.tiers[1].thresholds.add(metric=tiers_pb.METRIC_QUALIFYING_SPEND, value="5000.00")
    for tier in stored.tiers:
        tier.combine = tiers_pb.COMBINE_ANY
    assert canonical(stored) == canonical(written)
    # ... but the ladder's order is meaning.
    swapped = tiers_pb.Ladder()
    swapped.CopyFrom(written)
    swapped.tiers[0].code, swapped.tiers[1].code = "silver", "basic"
    assert canonical(swapped) != canonical(written)


def test_changes_name_the_element_and_field() -> None:
    before = huayue_programme()
    after = huayue_programme()
    after.units[1].multiplier = "2.5"
    del after.campaigns[0]
    after.partners[0].min_points = 2000
    found = changes(canonical(before), canonical(after))
    assert found[0] == '~ units[hotel].multiplier: "2" -> "2.5"'
    assert found[1].startswith('- campaigns[double-11-2025]: {"code": "double-11-2025", "name"')
    assert found[1].endswith("...")  # a long value is cut short
    assert found[2:] == ["~ partners[skyair].min_points: 1000 -> 2000"]


def test_the_command_line_lists_every_job() -> None:
    from loyalty_admin import cli, jobs

    assert {name: job.what for name, job in jobs.JOBS.items()} == cli.JOBS


def test_a_journey_is_checked_offline_where_it_is_written() -> None:
    problems = _problems(
        _huayue(
            ("- key: expiring-points", "- key: win-back"),
            ("      template: cinema-ticket\n      unit: cinema", "      template: cinema\n"),
            ("- key: welcome-gold", "- key: Welcome_Gold"),
            (
                "  steps:\n  - issue_coupon:\n      template: welcome-platinum\n"
                "      grant_key: welcome:platinum\n",
                "  stepz: []\n",
            ),
            ("  state: JOURNEY_STATE_ACTIVE\n", "  state: JOURNEY_STATE_ENDED\n"),
        )
    )
    text = "\n".join(problems)
    assert "journeys[0].state: one of JOURNEY_STATE_DRAFT, JOURNEY_STATE_ACTIVE" in text
    assert "journeys[1].key: 'win-back' is the key of journeys[0]" in text
    assert "journeys[2].steps[0].issue_coupon.template: 'cinema': no such coupon template" in text
    assert 'journeys[4].key: lowercase letters, digits and "-", at most 63' in text
    assert "journeys[5].stepz: unknown field (known: " in text
    assert "journeys[5]: required field 'steps' is missing" in text
    assert all(problem.startswith("f.yaml:") and ":0:" not in problem for problem in problems)


def test_a_journey_compares_by_what_the_service_keeps() -> None:
    """The service answers the group's unit, the DRAFT state, the dev channel and empty
    messages a file leaves out: the same journey; steps are in order."""
    from loyalty.engagement.v1 import engagement_service_pb2 as pb
    from loyalty.identity.v1 import member_pb2

    sms = member_pb2.CONSENT_PURPOSE_MARKETING_SMS
    written = pb.Journey(
        key="k",
        display_name="n",
        trigger=pb.Trigger(kind=pb.TRIGGER_KIND_BIRTHDAY),
        steps=[
            pb.Step(send_message=pb.SendMessage(purpose=sms, body="hi")),
            pb.Step(delay=pb.Delay(seconds=60)),
        ],
    )
    kept = pb.Journey()
    kept.CopyFrom(written)
    kept.name, kept.version, kept.unit = "journeys/x", 3, "group"
    kept.state = pb.JOURNEY_STATE_DRAFT
    kept.steps[0].send_message.channel = "dev"
    kept.conditions.SetInParent()
    kept.frequency_cap.SetInParent()
    kept.budget.SetInParent()
    assert canonical(kept) == canonical(written)
    swapped = pb.Journey()
    swapped.CopyFrom(written)
    swapped.steps[0].CopyFrom(written.steps[1])
    swapped.steps[1].CopyFrom(written.steps[0])
    assert changes(canonical(written), canonical(swapped))
