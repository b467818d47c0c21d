"""Hypothesis strategies for dynamic segments' rules and the member_figures rows they read:
small value domains, so that rules and rows meet (equal values, boundaries of days)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st
from loyalty_insights.domain.segments import (
    COLUMNS,
    OPERATORS,
    All,
    AnyOf,
    Condition,
    Kind,
    Not,
    Operator,
    Rule,
    SegmentField,
)

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
UNITS = ["mall", "hotel", "cinema"]
TIERS = ["basic", "silver", "gold"]
RFM = ["champions", "lost", "at_risk"]
TAGS = ["vip", "bu:hotel-active", "new"]
BADGES = ["explorer", "founder", "night-owl"]
DAYS = [0, 1, 30, 90]
AMOUNTS = [Decimal("0"), Decimal("99.50"), Decimal("100"), Decimal("5000")]
PROBABILITIES = [0.0, 0.25, 0.5, 1.0]

TEXTS = {
    SegmentField.TIER: TIERS,
    SegmentField.RFM_SEGMENT: RFM,
    SegmentField.REGISTERED_UNIT: UNITS,
    SegmentField.UNITS: UNITS,
    SegmentField.UNITS_12M: UNITS,
    SegmentField.TAGS: TAGS,
    SegmentField.BADGES: BADGES,
}

# The table the rules are compiled over (as migrations 0003 and 0015 make member_figures).
DDL = """
CREATE TEMP TABLE member_figures (
    member_id text PRIMARY KEY, updated_at timestamptz NOT NULL, registered_at timestamptz,
    registered_unit text, first_active_at timestamptz, last_active_at timestamptz,
    units text[] NOT NULL DEFAULT '{}', units_12m text[] NOT NULL DEFAULT '{}',
    visits_12m integer NOT NULL DEFAULT 0, spend_12m numeric NOT NULL DEFAULT 0,
    recency_days integer, rfm_r smallint, rfm_f smallint, rfm_m smallint, rfm_segment text,
    tier text, birthday_month smallint, offers_consent boolean NOT NULL DEFAULT true,
    tags text[] NOT NULL DEFAULT '{}', predicted_value_12m numeric, p_alive double precision,
    badges text[] NOT NULL DEFAULT '{}'
)
"""


def _moment() -> st.SearchStrategy[datetime | None]:
    # exactly on a day boundary too: WITHIN_DAYS includes it
    return st.none() | st.builds(
        lambda d, s: NOW - timedelta(days=d, seconds=s),
        st.sampled_from([*DAYS, 400]),
        st.sampled_from([-1, 0, 1]),
    )


def _subset(values: list[str]) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(values), unique=True, max_size=len(values))


rows = st.lists(
    st.fixed_dictionaries(
        {
            "tier": st.none() | st.sampled_from(TIERS),
            "units": _subset(UNITS),
            "units_12m": _subset(UNITS),
            "visits_12m": st.sampled_from([0, 1, 2, 5]),
            "spend_12m": st.sampled_from(AMOUNTS),
            "last_active_at": _moment(),
            "recency_days": st.none() | st.sampled_from([0, 1, 2, 5]),
            "rfm_segment": st.none() | st.sampled_from(RFM),
            "predicted_value_12m": st.none() | st.sampled_from(AMOUNTS),
            "p_alive": st.none() | st.sampled_from(PROBABILITIES),
            "birthday_month": st.none() | st.sampled_from([1, 6, 12]),
            "registered_unit": st.none() | st.sampled_from(UNITS),
            "registered_at": _moment(),
            "tags": _subset(TAGS),
            "badges": _subset(BADGES),
            "offers_consent": st.booleans(),
        }
    ),
    max_size=12,
).map(lambda found: [dict(r, member_id=f"m{i:03d}") for i, r in enumerate(found)])


def _values(field: SegmentField, kind: Kind, operator: Operator) -> st.SearchStrategy[Any]:
    if operator in (Operator.WITHIN_DAYS, Operator.NOT_WITHIN_DAYS):
        return st.sampled_from([str(d) for d in DAYS])
    if kind is Kind.COUNT:
        return st.sampled_from(["0", "1", "2", "5"])
    if kind is Kind.AMOUNT:
        return st.sampled_from([str(a) for a in AMOUNTS])
    if kind is Kind.PROBABILITY:
        return st.sampled_from([str(p) for p in PROBABILITIES])
    if kind is Kind.MONTH:
        return st.sampled_from(["1", "6", "12"])
    return st.sampled_from(TEXTS[field])


@st.composite
def conditions(draw: st.DrawFn) -> Condition:
    field = draw(st.sampled_from(list(SegmentField)))
    kind = COLUMNS[field].kind
    operator = draw(st.sampled_from(sorted(OPERATORS[kind], key=lambda o: o.value)))
    if operator in (Operator.THIS_MONTH, Operator.IS_TRUE, Operator.IS_FALSE):
        return Condition(field, operator)
    values = _values(field, kind, operator)
    if operator in (Operator.IN, Operator.CONTAINS_ANY, Operator.CONTAINS_ALL):
        return Condition(field, operator, "", tuple(draw(st.lists(values, min_size=1, max_size=3))))
    return Condition(field, operator, draw(values))


rules: st.SearchStrategy[Rule] = st.recursive(
    conditions(),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda rs: All(tuple(rs))),
        st.lists(inner, max_size=3).map(lambda rs: AnyOf(tuple(rs))),
        inner.map(Not),
    ),
    max_leaves=8,
)
