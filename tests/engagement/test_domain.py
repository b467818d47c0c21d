"""Journeys' decisions without storage: triggers, conditions, the control-group split and the
frequency cap."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from loyalty_engagement.domain import journeys as j

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def spec(**changes: object) -> j.JourneySpec:
    base: dict[str, object] = {
        "display_name": "welcome",
        "unit": "group",
        "trigger": j.Trigger(j.TriggerKind.PURCHASE, unit="hotel"),
        "steps": (j.IssueCoupon("welcome-gold", "hotel"),),
    }
    base.update(changes)
    return j.JourneySpec(**base)  # type: ignore[arg-type]


def event(kind: j.TriggerKind = j.TriggerKind.PURCHASE, **more: str) -> j.TriggerEvent:
    return j.TriggerEvent(kind, "m1", "k1", NOW, **more)


def test_a_purchase_triggers_only_at_its_unit() -> None:
    trigger = j.Trigger(j.TriggerKind.PURCHASE, unit="hotel")
    assert j.triggered_by(trigger, event(unit="hotel"))
    assert not j.triggered_by(trigger, event(unit="mall"))
    assert not j.triggered_by(trigger, event(j.TriggerKind.TIER_CHANGED, unit="hotel"))
    assert j.triggered_by(j.Trigger(j.TriggerKind.PURCHASE), event(unit="mall"))


def test_tier_and_segment_triggers_filter_on_their_target() -> None:
    gold = j.Trigger(j.TriggerKind.TIER_CHANGED, to_tier="gold")
    assert j.triggered_by(gold, event(j.TriggerKind.TIER_CHANGED, to_tier="gold"))
    assert not j.triggered_by(gold, event(j.TriggerKind.TIER_CHANGED, to_tier="silver"))
    seg = j.Trigger(j.TriggerKind.SEGMENT_LEFT, segment="segments/a")
    assert j.triggered_by(seg, event(j.TriggerKind.SEGMENT_LEFT, segment="segments/a"))
    assert not j.triggered_by(seg, event(j.TriggerKind.SEGMENT_LEFT, segment="segments/b"))
    assert not j.triggered_by(seg, event(j.TriggerKind.SEGMENT_ENTERED, segment="segments/a"))


def test_conditions_on_unit_tier_and_consent() -> None:
    c = j.Conditions(units=("hotel",), tiers=("gold",), consents=("CONSENT_PURPOSE_MARKETING_SMS",))
    member = j.MemberFacts("gold", frozenset({"CONSENT_PURPOSE_MARKETING_SMS"}))
    assert j.conditions_hold(c, "hotel", member)
    assert not j.conditions_hold(c, "mall", member)
    assert not j.conditions_hold(c, "hotel", j.MemberFacts("silver", member.consents))
    assert not j.conditions_hold(c, "hotel", j.MemberFacts("gold", frozenset()))
    assert j.conditions_hold(j.Conditions(), "", j.MemberFacts())


def test_validation_names_each_bad_field() -> None:
    bad = spec(steps=(), control_share=2.0, frequency_cap=j.FrequencyCap(3, 0))
    assert {v.field for v in j.validate(bad)} == {
        "journey.steps",
        "journey.control_share",
        "journey.frequency_cap.period_days",
    }
    mall = spec(unit="mall", steps=(j.AwardPoints(10, "hotel"), j.ChangeTags()))
    assert [v.field for v in j.validate(mall)] == [
        "journey.steps[0].award_points.funding_unit",
        "journey.steps[1].change_tags",
    ]
    assert j.validate(spec()) == []


def test_a_grant_key_takes_the_year_where_the_journey_is() -> None:
    birthday = j.IssueCoupon("birthday-gift", grant_key="birthday:{year}")
    new_year_in_shanghai = datetime(2026, 12, 31, 17, tzinfo=UTC)
    assert birthday.grant_key_at(new_year_in_shanghai, "UTC") == "birthday:2026"
    assert birthday.grant_key_at(new_year_in_shanghai, "Asia/Shanghai") == "birthday:2027"
    assert j.IssueCoupon("x", grant_key="welcome:gold").grant_key_at(NOW, "UTC") == "welcome:gold"
    bad = spec(steps=(j.IssueCoupon("x", "hotel", "birthday:{month}"),))
    assert [v.field for v in j.validate(bad)] == ["journey.steps[0].issue_coupon.grant_key"]


def test_the_entry_id_is_the_same_for_the_same_event_and_version() -> None:
    assert j.entry_id("j", 1, "m", "k") == j.entry_id("j", 1, "m", "k")
    assert j.entry_id("j", 1, "m", "k") != j.entry_id("j", 2, "m", "k")
    assert j.step_key("e", 0) != j.step_key("e", 1)


@settings(max_examples=60, deadline=None)
@given(share=st.floats(min_value=0.0, max_value=1.0), seed=st.integers(0, 2**32))
def test_the_control_split_is_stable_and_near_the_share(share: float, seed: int) -> None:
    journey = str(uuid.UUID(int=seed))
    members = [f"m{i}" for i in range(2000)]
    held = [m for m in members if j.held_out(journey, m, share)]
    # Stable: the same members every time.
    assert held == [m for m in members if j.held_out(journey, m, share)]
    # Near the share: within 5 standard deviations of a binomial draw.
    sd = (len(members) * share * (1 - share)) ** 0.5
    assert abs(len(held) - len(members) * share) <= 5 * sd + 1


@settings(max_examples=100, deadline=None)
@given(
    cap=st.integers(1, 5),
    days=st.integers(1, 30),
    ages=st.lists(st.integers(0, 60 * 24 * 60), max_size=12),
)
def test_the_cap_counts_entries_within_the_period_only(
    cap: int, days: int, ages: list[int]
) -> None:
    earlier = [NOW - timedelta(minutes=a) for a in ages]
    within = sum(1 for a in ages if timedelta(minutes=a) < timedelta(days=days))
    assert j.over_cap(j.FrequencyCap(cap, days), earlier, NOW) == (within >= cap)
    assert not j.over_cap(j.FrequencyCap(0, 0), earlier, NOW)
