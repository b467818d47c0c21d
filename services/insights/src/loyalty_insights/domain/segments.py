"""Dynamic segments' rules (动态分群): a tree of all/any/not over conditions on a member's
figures (one `member_figures` row), checked, then compiled to one SQL predicate over that row
with bound parameters, and evaluated in Python by the same rule (the reference the tests hold
the SQL to).

A condition on a figure the member lacks (NULL: no purchase yet, no tier known) does not hold,
and its `not` does: every condition compiles to `(...) IS TRUE`, so NOT, AND and OR follow
two-valued logic in SQL as in Python. Values never enter the SQL text: each is a parameter
(`:p0`, `:p1`, ...), cast to the column's type; column names come from the table below only.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from loyalty_insights.domain.rfm import RfmSegment

MAX_DEPTH = 8  # levels of all/any/not above a condition
MAX_NODES = 100  # rules and conditions in one tree
MAX_VALUES = 100  # values of one condition
MAX_VALUE_LENGTH = 128
MAX_DAYS = 36_500
MAX_COUNT = 1_000_000_000


class SegmentField(enum.Enum):
    TIER = "tier"
    UNITS = "units"
    UNITS_12M = "units_12m"
    VISITS_12M = "visits_12m"
    SPEND_12M = "spend_12m"
    LAST_ACTIVE = "last_active"
    RECENCY_DAYS = "recency_days"
    RFM_SEGMENT = "rfm_segment"
    PREDICTED_VALUE_12M = "predicted_value_12m"
    P_ALIVE = "p_alive"
    BIRTHDAY_MONTH = "birthday_month"
    REGISTERED_UNIT = "registered_unit"
    REGISTERED = "registered"
    TAGS = "tags"
    OFFERS_CONSENT = "offers_consent"
    BADGES = "badges"


class Operator(enum.Enum):
    EQUALS = "equals"
    IN = "in"
    LESS_THAN = "less_than"
    AT_MOST = "at_most"
    GREATER_THAN = "greater_than"
    AT_LEAST = "at_least"
    CONTAINS_ANY = "contains_any"
    CONTAINS_ALL = "contains_all"
    WITHIN_DAYS = "within_days"
    NOT_WITHIN_DAYS = "not_within_days"
    THIS_MONTH = "this_month"
    IS_TRUE = "is_true"
    IS_FALSE = "is_false"


class Kind(enum.Enum):
    """What a field holds, which decides its operators, how its values read and its SQL type."""

    TEXT = "text"
    TEXT_SET = "text[]"
    COUNT = "integer"
    AMOUNT = "numeric"
    PROBABILITY = "float8"
    MOMENT = "timestamptz"
    MONTH = "smallint"
    FLAG = "boolean"


@dataclass(frozen=True)
class Column:
    name: str  # in member_figures
    kind: Kind


COLUMNS: dict[SegmentField, Column] = {
    SegmentField.TIER: Column("tier", Kind.TEXT),
    SegmentField.UNITS: Column("units", Kind.TEXT_SET),
    SegmentField.UNITS_12M: Column("units_12m", Kind.TEXT_SET),
    SegmentField.VISITS_12M: Column("visits_12m", Kind.COUNT),
    SegmentField.SPEND_12M: Column("spend_12m", Kind.AMOUNT),
    SegmentField.LAST_ACTIVE: Column("last_active_at", Kind.MOMENT),
    SegmentField.RECENCY_DAYS: Column("recency_days", Kind.COUNT),
    SegmentField.RFM_SEGMENT: Column("rfm_segment", Kind.TEXT),
    SegmentField.PREDICTED_VALUE_12M: Column("predicted_value_12m", Kind.AMOUNT),
    SegmentField.P_ALIVE: Column("p_alive", Kind.PROBABILITY),
    SegmentField.BIRTHDAY_MONTH: Column("birthday_month", Kind.MONTH),
    SegmentField.REGISTERED_UNIT: Column("registered_unit", Kind.TEXT),
    SegmentField.REGISTERED: Column("registered_at", Kind.MOMENT),
    SegmentField.TAGS: Column("tags", Kind.TEXT_SET),
    SegmentField.OFFERS_CONSENT: Column("offers_consent", Kind.FLAG),
    SegmentField.BADGES: Column("badges", Kind.TEXT_SET),
}

_COMPARISONS = {
    Operator.EQUALS: "=",
    Operator.LESS_THAN: "<",
    Operator.AT_MOST: "<=",
    Operator.GREATER_THAN: ">",
    Operator.AT_LEAST: ">=",
}

OPERATORS: dict[Kind, frozenset[Operator]] = {
    Kind.TEXT: frozenset({Operator.EQUALS, Operator.IN}),
    Kind.TEXT_SET: frozenset({Operator.CONTAINS_ANY, Operator.CONTAINS_ALL}),
    Kind.COUNT: frozenset(_COMPARISONS),
    Kind.AMOUNT: frozenset(_COMPARISONS),
    Kind.PROBABILITY: frozenset(_COMPARISONS),
    Kind.MOMENT: frozenset({Operator.WITHIN_DAYS, Operator.NOT_WITHIN_DAYS}),
    Kind.MONTH: frozenset({Operator.EQUALS, Operator.IN, Operator.THIS_MONTH}),
    Kind.FLAG: frozenset({Operator.IS_TRUE, Operator.IS_FALSE}),
}

_LIST_OPERATORS = frozenset({Operator.IN, Operator.CONTAINS_ANY, Operator.CONTAINS_ALL})
_NO_VALUE_OPERATORS = frozenset({Operator.THIS_MONTH, Operator.IS_TRUE, Operator.IS_FALSE})


@dataclass(frozen=True)
class Condition:
    field: SegmentField | None  # None: not set (or unknown)
    operator: Operator | None
    value: str = ""
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class All:
    rules: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class AnyOf:
    rules: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class Not:
    rule: Rule


@dataclass(frozen=True)
class Unset:
    """A rule with none of all/any/not/condition."""


Rule = All | AnyOf | Not | Condition | Unset


@dataclass(frozen=True)
class Violation:
    path: str  # "segment.rule.all.rules[1].condition.value"
    description: str


def violations_of(rule: Rule, path: str) -> list[Violation]:
    """Everything wrong with `rule` (named by paths below `path`); empty: it can be compiled."""
    found: list[Violation] = []
    nodes = _count(rule)
    if nodes > MAX_NODES:
        found.append(Violation(path, f"{nodes} rules and conditions; at most {MAX_NODES}"))
    _check(rule, path, 0, found)
    return found


def _count(rule: Rule) -> int:
    if isinstance(rule, All | AnyOf):
        return 1 + sum(_count(r) for r in rule.rules)
    if isinstance(rule, Not):
        return 1 + _count(rule.rule)
    return 1


def _check(rule: Rule, path: str, depth: int, found: list[Violation]) -> None:
    if depth > MAX_DEPTH:
        found.append(Violation(path, f"nested deeper than {MAX_DEPTH} levels"))
        return
    if isinstance(rule, Unset):
        found.append(Violation(path, "one of all, any, not or condition is required"))
    elif isinstance(rule, All | AnyOf):
        branch = "all" if isinstance(rule, All) else "any"
        for i, inner in enumerate(rule.rules):
            _check(inner, f"{path}.{branch}.rules[{i}]", depth + 1, found)
    elif isinstance(rule, Not):
        _check(rule.rule, f"{path}.not", depth + 1, found)
    else:
        found.extend(_condition_violations(rule, f"{path}.condition"))


def _condition_violations(condition: Condition, path: str) -> list[Violation]:
    if condition.field is None:
        return [Violation(f"{path}.field", "required: one of the segment fields")]
    column = COLUMNS[condition.field]
    allowed = OPERATORS[column.kind]
    if condition.operator not in allowed:
        names = ", ".join(sorted(op.name for op in allowed))
        return [Violation(f"{path}.operator", f"for {condition.field.name} one of {names}")]
    operator = condition.operator
    assert operator is not None
    found: list[Violation] = []
    if operator in _LIST_OPERATORS:
        if condition.value:
            found.append(Violation(f"{path}.value", f"{operator.name} takes `values`"))
        if not condition.values:
            found.append(Violation(f"{path}.values", "at least one value is required"))
        if len(condition.values) > MAX_VALUES:
            found.append(Violation(f"{path}.values", f"at most {MAX_VALUES} values"))
        for i, value in enumerate(condition.values[:MAX_VALUES]):
            problem = _value_problem(condition.field, column.kind, operator, value)
            if problem:
                found.append(Violation(f"{path}.values[{i}]", problem))
        return found
    if condition.values:
        found.append(Violation(f"{path}.values", f"{operator.name} takes `value`"))
    if operator in _NO_VALUE_OPERATORS:
        if condition.value:
            found.append(Violation(f"{path}.value", f"{operator.name} takes no value"))
        return found
    problem = _value_problem(condition.field, column.kind, operator, condition.value)
    if problem:
        found.append(Violation(f"{path}.value", problem))
    return found


def _value_problem(field: SegmentField, kind: Kind, operator: Operator, value: str) -> str:
    """What is wrong with one value ('' when nothing)."""
    if not value:
        return "required"
    if len(value) > MAX_VALUE_LENGTH:
        return f"at most {MAX_VALUE_LENGTH} characters"
    try:
        _parse(field, kind, operator, value)
    except ValueError as error:
        return str(error)
    return ""


def _parse(field: SegmentField, kind: Kind, operator: Operator, value: str) -> Any:
    """The value as the column compares it; ValueError saying what is wrong."""
    if operator in (Operator.WITHIN_DAYS, Operator.NOT_WITHIN_DAYS):
        return _whole(value, 0, MAX_DAYS, "days")
    if kind is Kind.COUNT:
        return _whole(value, 0, MAX_COUNT, "a count")
    if kind is Kind.MONTH:
        return _whole(value, 1, 12, "a month")
    if kind is Kind.AMOUNT:
        try:
            amount = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"{value[:32]!r} is not a decimal") from None
        exponent = amount.as_tuple().exponent
        if not amount.is_finite() or amount.adjusted() >= 18 or int(exponent) < -12:
            raise ValueError("a decimal of at most 18 digits before the point and 12 after")
        return amount
    if kind is Kind.PROBABILITY:
        try:
            probability = float(value)
        except ValueError:
            raise ValueError(f"{value[:32]!r} is not a number") from None
        if not 0 <= probability <= 1:
            raise ValueError("a probability from 0 to 1")
        return probability
    if field is SegmentField.RFM_SEGMENT:
        try:
            return RfmSegment(value).value
        except ValueError:
            names = ", ".join(s.value for s in RfmSegment)
            raise ValueError(f"{value[:32]!r} is none of {names}") from None
    return value


def _whole(value: str, low: int, high: int, what: str) -> int:
    if not value.isascii() or not value.isdigit():
        raise ValueError(f"{value[:32]!r} is not {what} (a whole number)")
    number = int(value)
    if not low <= number <= high:
        raise ValueError(f"{what} from {low} to {high}")
    return number


@dataclass
class Predicate:
    """A boolean SQL expression over member_figures' columns, with its parameters."""

    sql: str
    params: dict[str, Any] = field(default_factory=dict)


def compile_rule(rule: Rule, now: datetime, prefix: str = "p") -> Predicate:
    """One SQL predicate for a checked rule (`violations_of` empty), its times relative to
    `now`. Parameters are named `<prefix>0`, `<prefix>1`, ..."""
    params: dict[str, Any] = {}
    sql = _sql(rule, now, prefix, params)
    return Predicate(sql, params)


def _sql(rule: Rule, now: datetime, prefix: str, params: dict[str, Any]) -> str:
    if isinstance(rule, All):
        if not rule.rules:
            return "TRUE"
        return "(" + " AND ".join(_sql(r, now, prefix, params) for r in rule.rules) + ")"
    if isinstance(rule, AnyOf):
        if not rule.rules:
            return "FALSE"
        return "(" + " OR ".join(_sql(r, now, prefix, params) for r in rule.rules) + ")"
    if isinstance(rule, Not):
        return f"(NOT {_sql(rule.rule, now, prefix, params)})"
    if isinstance(rule, Unset):
        raise ValueError("an unchecked rule")
    return _condition_sql(rule, now, prefix, params)


def _condition_sql(condition: Condition, now: datetime, prefix: str, params: dict[str, Any]) -> str:
    assert condition.field is not None and condition.operator is not None
    column = COLUMNS[condition.field]
    operator = condition.operator
    kind = column.kind

    def bind(value: Any, sql_type: str) -> str:
        name = f"{prefix}{len(params)}"
        params[name] = value
        return f"CAST(:{name} AS {sql_type})"

    if operator is Operator.IS_TRUE:
        return f"({column.name} IS TRUE)"
    if operator is Operator.IS_FALSE:
        return f"({column.name} IS FALSE)"
    if operator is Operator.THIS_MONTH:
        return f"(({column.name} = {bind(now.month, kind.value)}) IS TRUE)"
    if operator in (Operator.WITHIN_DAYS, Operator.NOT_WITHIN_DAYS):
        since = now - timedelta(days=_parse(condition.field, kind, operator, condition.value))
        within = f"(({column.name} >= {bind(since, 'timestamptz')}) IS TRUE)"
        return within if operator is Operator.WITHIN_DAYS else f"(NOT {within})"
    values = [_parse(condition.field, kind, operator, v) for v in condition.values]
    if operator is Operator.IN:
        return f"(({column.name} = ANY({bind(values, kind.value + '[]')})) IS TRUE)"
    if operator is Operator.CONTAINS_ANY:
        return f"(({column.name} && {bind(values, 'text[]')}) IS TRUE)"
    if operator is Operator.CONTAINS_ALL:
        return f"(({column.name} @> {bind(values, 'text[]')}) IS TRUE)"
    value = _parse(condition.field, kind, operator, condition.value)
    return f"(({column.name} {_COMPARISONS[operator]} {bind(value, kind.value)}) IS TRUE)"


def holds(rule: Rule, row: Mapping[str, Any], now: datetime) -> bool:
    """Whether a member_figures row (column -> value) meets a checked rule at `now`."""
    if isinstance(rule, All):
        return all(holds(r, row, now) for r in rule.rules)
    if isinstance(rule, AnyOf):
        return any(holds(r, row, now) for r in rule.rules)
    if isinstance(rule, Not):
        return not holds(rule.rule, row, now)
    if isinstance(rule, Unset):
        raise ValueError("an unchecked rule")
    return _condition_holds(rule, row, now)


def _condition_holds(condition: Condition, row: Mapping[str, Any], now: datetime) -> bool:
    assert condition.field is not None and condition.operator is not None
    column = COLUMNS[condition.field]
    operator = condition.operator
    kind = column.kind
    found = row.get(column.name)
    if operator in (Operator.WITHIN_DAYS, Operator.NOT_WITHIN_DAYS):
        since = now - timedelta(days=_parse(condition.field, kind, operator, condition.value))
        within = found is not None and found >= since
        return within if operator is Operator.WITHIN_DAYS else not within
    if found is None:
        return False
    if operator is Operator.IS_TRUE:
        return found is True
    if operator is Operator.IS_FALSE:
        return found is False
    if operator is Operator.THIS_MONTH:
        return bool(found == now.month)
    values = [_parse(condition.field, kind, operator, v) for v in condition.values]
    if operator is Operator.IN:
        return found in values
    if operator is Operator.CONTAINS_ANY:
        return bool(set(found) & set(values))
    if operator is Operator.CONTAINS_ALL:
        return set(values) <= set(found)
    value = _parse(condition.field, kind, operator, condition.value)
    return bool(
        {
            Operator.EQUALS: found == value,
            Operator.LESS_THAN: found < value,
            Operator.AT_MOST: found <= value,
            Operator.GREATER_THAN: found > value,
            Operator.AT_LEAST: found >= value,
        }[operator]
    )


def rule_to_json(rule: Rule) -> str:
    return json.dumps(_plain(rule), separators=(",", ":"))


def _plain(rule: Rule) -> dict[str, Any]:
    if isinstance(rule, All):
        return {"all": [_plain(r) for r in rule.rules]}
    if isinstance(rule, AnyOf):
        return {"any": [_plain(r) for r in rule.rules]}
    if isinstance(rule, Not):
        return {"not": _plain(rule.rule)}
    if isinstance(rule, Unset):
        raise ValueError("an unchecked rule")
    assert rule.field is not None and rule.operator is not None
    return {
        "field": rule.field.value,
        "operator": rule.operator.value,
        "value": rule.value,
        "values": list(rule.values),
    }


def rule_from_json(stored: str | Mapping[str, Any]) -> Rule:
    return _rule(json.loads(stored) if isinstance(stored, str) else stored)


def _rule(plain: Mapping[str, Any]) -> Rule:
    if "all" in plain:
        return All(tuple(_rule(r) for r in plain["all"]))
    if "any" in plain:
        return AnyOf(tuple(_rule(r) for r in plain["any"]))
    if "not" in plain:
        return Not(_rule(plain["not"]))
    return Condition(
        SegmentField(plain["field"]),
        Operator(plain["operator"]),
        plain.get("value", ""),
        tuple(plain.get("values", ())),
    )


def conditions_of(rule: Rule) -> Sequence[Condition]:
    """Every condition of a rule, in order."""
    if isinstance(rule, All | AnyOf):
        return [c for r in rule.rules for c in conditions_of(r)]
    if isinstance(rule, Not):
        return conditions_of(rule.rule)
    if isinstance(rule, Condition):
        return [rule]
    return []


# A targeting segment leaves out members without the personalised-offers consent.
OFFERS_CONSENTED = Condition(SegmentField.OFFERS_CONSENT, Operator.IS_TRUE)


def membership_rule(rule: Rule, *, targeting: bool) -> Rule:
    """Who is a member: the rule, and for a targeting segment the consent too."""
    return All((rule, OFFERS_CONSENTED)) if targeting else rule
