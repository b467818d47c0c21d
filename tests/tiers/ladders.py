"""Huayue's ladder in domain terms, for the pure and the use-case tests."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from loyalty_tiers.domain.ladder import Ladder, Metric, TierRule

SPEND = Metric.QUALIFYING_SPEND


def huayue(**options: Any) -> Ladder:
    """Silver 5,000, gold 20,000, platinum 80,000, diamond 300,000 CNY in 12 months; kept with
    half of that in the tier year."""

    def tier(code: str, threshold: int) -> TierRule:
        return TierRule(
            code,
            thresholds={SPEND: Decimal(threshold)},
            retention={SPEND: Decimal(threshold // 2)},
        )

    return Ladder(
        version=1,
        tiers=[
            TierRule("basic"),
            tier("silver", 5_000),
            tier("gold", 20_000),
            tier("platinum", 80_000),
            tier("diamond", 300_000),
        ],
        **options,
    )
