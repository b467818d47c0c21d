"""An order that earned points, and what a refund of some of its lines takes back."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from loyalty_kit.errors import FieldViolation, InvalidArgument

from loyalty_points.domain.errors import NothingToReverse
from loyalty_points.domain.programme import Earned, Line


@dataclass
class OrderRecord:
    unit: str
    order_id: str
    member_id: str
    posting_id: str
    lot_id: str
    currency: str
    # line_id -> {"points": int, "reversed": int, "amount": str, "refunded": bool}
    lines: dict[str, dict[str, Any]] = field(default_factory=dict)
    bonus_points: int = 0
    bonus_reversed: bool = False

    @classmethod
    def earned(
        cls,
        unit: str,
        order_id: str,
        member_id: str,
        posting_id: str,
        lot_id: str,
        lines: list[Line],
        earned: Earned,
    ) -> OrderRecord:
        return cls(
            unit=unit,
            order_id=order_id,
            member_id=member_id,
            posting_id=posting_id,
            lot_id=lot_id,
            currency=earned.spend.currency,
            lines={
                line.line_id: {
                    "points": earned.line_points[line.line_id],
                    "reversed": 0,
                    "amount": str(line.amount.value),
                    "refunded": False,
                }
                for line in lines
            },
            bonus_points=sum(p for _, p in earned.bonuses),
        )

    def refund(self, line_ids: list[str]) -> Refund:
        """Mark the lines refunded (all of them when none are named) and answer the points and
        spend they take back. The order's bonus goes with its last line."""
        unknown = [i for i, line_id in enumerate(line_ids) if line_id not in self.lines]
        if unknown:
            raise InvalidArgument.of(
                [FieldViolation(f"line_ids[{i}]", "not a line of the order") for i in unknown]
            )
        chosen = line_ids or list(self.lines)
        refunding = [line_id for line_id in chosen if not self.lines[line_id]["refunded"]]
        if not refunding:
            raise NothingToReverse(self.order_id)
        points = sum(int(self.lines[line_id]["points"]) for line_id in refunding)
        spend = sum((Decimal(self.lines[line_id]["amount"]) for line_id in refunding), Decimal(0))
        for line_id in refunding:
            self.lines[line_id]["refunded"] = True
            self.lines[line_id]["reversed"] = self.lines[line_id]["points"]
        if all(line["refunded"] for line in self.lines.values()) and not self.bonus_reversed:
            points += self.bonus_points
            self.bonus_reversed = True
        return Refund(points, spend)


@dataclass(frozen=True)
class Refund:
    points: int  # the points the refunded lines earned (and the bonus, with the last line)
    spend: Decimal  # their amount, in the order's currency
