"""Dynamic segments' rules, checked: each problem named by its path in the request, limits of
depth and size, values parsed per field; stored rules read back the same."""

from __future__ import annotations

from hypothesis import given
from loyalty_insights.domain.segments import (
    MAX_DEPTH,
    All,
    AnyOf,
    Condition,
    Not,
    Operator,
    Rule,
    SegmentField,
    Unset,
    compile_rule,
    holds,
    rule_from_json,
    rule_to_json,
    violations_of,
)

from tests.insights.segment_rules import NOW, rules

GOLD = Condition(SegmentField.TIER, Operator.IN, values=("gold", "platinum", "diamond"))


def paths(rule: Rule) -> dict[str, str]:
    return {v.path: v.description for v in violations_of(rule, "segment.rule")}


def test_a_good_rule_has_no_violations() -> None:
    rule = All(
        (
            GOLD,
            Condition(SegmentField.UNITS_12M, Operator.CONTAINS_ANY, values=("hotel",)),
            Not(Condition(SegmentField.LAST_ACTIVE, Operator.WITHIN_DAYS, "90")),
            Condition(SegmentField.SPEND_12M, Operator.AT_LEAST, "20000.00"),
            Condition(SegmentField.BIRTHDAY_MONTH, Operator.THIS_MONTH),
        )
    )
    assert paths(rule) == {}


def test_each_problem_is_named_by_its_path() -> None:
    rule = All(
        (
            GOLD,
            Condition(SegmentField.SPEND_12M, Operator.AT_LEAST, "lots"),
            AnyOf((Condition(SegmentField.TAGS, Operator.AT_LEAST, "1"), Unset())),
            Not(Condition(None, Operator.EQUALS, "x")),
            Condition(SegmentField.RFM_SEGMENT, Operator.IN, values=("champions", "royals")),
            Condition(SegmentField.P_ALIVE, Operator.GREATER_THAN, "1.5"),
            Condition(SegmentField.LAST_ACTIVE, Operator.WITHIN_DAYS, "-3"),
            Condition(SegmentField.OFFERS_CONSENT, Operator.IS_TRUE, "yes"),
            Condition(SegmentField.TIER, Operator.IN),
        )
    )
    found = paths(rule)
    assert set(found) == {
        "segment.rule.all.rules[1].condition.value",
        "segment.rule.all.rules[2].any.rules[0].condition.operator",
        "segment.rule.all.rules[2].any.rules[1]",
        "segment.rule.all.rules[3].not.condition.field",
        "segment.rule.all.rules[4].condition.values[1]",
        "segment.rule.all.rules[5].condition.value",
        "segment.rule.all.rules[6].condition.value",
        "segment.rule.all.rules[7].condition.value",
        "segment.rule.all.rules[8].condition.values",
    }
    assert "not a decimal" in found["segment.rule.all.rules[1].condition.value"]
    assert "royals" in found["segment.rule.all.rules[4].condition.values[1]"]


def test_too_deep_and_too_big_rules_are_refused() -> None:
    deep: Rule = GOLD
    for _ in range(MAX_DEPTH + 1):
        deep = Not(deep)
    assert any("deeper" in d for d in paths(deep).values())
    big = All(tuple(GOLD for _ in range(100)))
    assert "at most 100" in paths(big)["segment.rule"]


def test_values_never_enter_the_sql_text() -> None:
    sneaky = "gold'; DROP TABLE segments; --"
    predicate = compile_rule(Condition(SegmentField.TIER, Operator.EQUALS, sneaky), NOW)
    assert sneaky not in predicate.sql
    assert list(predicate.params.values()) == [sneaky]


def test_a_member_without_the_figure_meets_the_condition_s_not() -> None:
    rule = Condition(SegmentField.RECENCY_DAYS, Operator.AT_MOST, "30")
    assert not holds(rule, {"recency_days": None}, NOW)
    assert holds(Not(rule), {"recency_days": None}, NOW)


@given(rules)
def test_a_stored_rule_reads_back_the_same(rule: Rule) -> None:
    assert rule_from_json(rule_to_json(rule)) == rule
