"""Dynamic segments' rules compiled to SQL and run by PostgreSQL over generated
member_figures rows select exactly the members the domain's Python reference selects, and the
compiled SQL keeps the laws of NOT, AND and OR (a member without a figure included)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from hypothesis import given
from hypothesis import settings as examples
from loyalty_insights.domain.segments import All, AnyOf, Not, Rule, compile_rule, holds
from loyalty_kit.settings import Settings
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.insights.segment_rules import DDL, NOW, rows, rules

_COLUMNS = [
    "member_id",
    "tier",
    "units",
    "units_12m",
    "visits_12m",
    "spend_12m",
    "last_active_at",
    "recency_days",
    "rfm_segment",
    "predicted_value_12m",
    "p_alive",
    "birthday_month",
    "registered_unit",
    "registered_at",
    "tags",
    "offers_consent",
    "badges",
]


def selected(settings: Settings, found: list[dict[str, Any]], asked: list[Rule]) -> list[set[str]]:
    """The members each rule's SQL selects from a temporary member_figures of `found` (in a
    thread of its own: the test session's event loop stays untouched)."""

    async def run() -> list[set[str]]:
        engine = create_async_engine(settings.server_url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                await conn.execute(text(DDL))
                if found:
                    await conn.execute(
                        text(
                            f"INSERT INTO member_figures (updated_at, {', '.join(_COLUMNS)}) "
                            f"VALUES (now(), {', '.join(':' + c for c in _COLUMNS)})"
                        ),
                        found,
                    )
                answers = []
                for rule in asked:
                    predicate = compile_rule(rule, NOW)
                    result = await conn.execute(
                        text(f"SELECT member_id FROM member_figures WHERE {predicate.sql}"),
                        predicate.params,
                    )
                    answers.append({r[0] for r in result})
                return answers
        finally:
            await engine.dispose()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


@examples(max_examples=60)
@given(rows, rules, rules)
def test_sql_selects_what_the_reference_selects_and_keeps_not_and_or(
    settings: Settings, found: list[dict[str, Any]], a: Rule, b: Rule
) -> None:
    every = {r["member_id"] for r in found}
    sql_a, sql_not_a, sql_and, sql_or = selected(
        settings, found, [a, Not(a), All((a, b)), AnyOf((a, b))]
    )
    reference = {r["member_id"] for r in found if holds(a, r, NOW)}
    reference_b = {r["member_id"] for r in found if holds(b, r, NOW)}
    assert sql_a == reference
    assert sql_not_a == every - reference
    assert sql_and == reference & reference_b
    assert sql_or == reference | reference_b
