"""The inter-unit settlement: per unit, points issued, redeemed, expired and forfeited, and
the matrix of points earned at one unit and redeemed at another."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from loyalty_kit.errors import FieldViolation, InvalidArgument

from loyalty_points.domain.ledger import GROUP, ISSUING, REDEEMING, PostingKind
from loyalty_points.domain.programme import Programme
from loyalty_points.service_layer.accounts import programme_at
from loyalty_points.service_layer.ports import PointsWork


@dataclass
class UnitFigures:
    issued: int = 0
    redeemed: int = 0
    expired: int = 0
    forfeited: int = 0


@dataclass
class Settlement:
    units: dict[str, UnitFigures] = field(default_factory=dict)
    flows: list[tuple[str, str, int]] = field(default_factory=list)
    ledger_points: int = 0
    programme: Programme | None = None


async def settlement(uow: PointsWork, start: datetime, end: datetime, now: datetime) -> Settlement:
    if end <= start:
        raise InvalidArgument.of([FieldViolation("end_time", "must be after start_time")])
    raw = await uow.ledger.settlement(start, end)
    result = Settlement(ledger_points=raw["total"], programme=await programme_at(uow.ledger, now))
    for unit, kind, points in raw["by_unit_kind"]:
        figures = result.units.setdefault(unit, UnitFigures())
        if kind in ISSUING or (kind is PostingKind.PARTNER_EXCHANGE_REVERSE and points < 0):
            figures.issued += points
        elif kind in REDEEMING or kind is PostingKind.PARTNER_EXCHANGE_REVERSE:
            figures.redeemed -= points
    for unit, points in raw["expired"].items():
        result.units.setdefault(unit, UnitFigures()).expired += points
    for unit, points in raw["forfeited"].items():
        result.units.setdefault(unit, UnitFigures()).forfeited += points
    if not any(vars(result.units.get(GROUP, UnitFigures())).values()):
        # Expiry and erasure forfeits are attributed to the units that issued the points.
        result.units.pop(GROUP, None)
    result.flows = [flow for flow in raw["flows"] if flow[2]]
    return result
