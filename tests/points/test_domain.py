"""The ledger's rules, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from loyalty_points.domain.ledger import Lot, LotStatus, forfeit_all


def lot(lot_id: str, remaining: int, status: LotStatus, day: int) -> Lot:
    earned = datetime(2026, 1, day, tzinfo=UTC)
    return Lot(lot_id, "mall", remaining, earned, earned + timedelta(days=730), status)


def test_forfeiting_empties_open_lots_and_cancels_pending_ones() -> None:
    lots = [
        lot("open", 300, LotStatus.OPEN, 1),
        lot("pending", 200, LotStatus.PENDING, 2),
        lot("spent", 0, LotStatus.OPEN, 3),
        lot("expired", 0, LotStatus.EXPIRED, 4),
    ]
    forfeit = forfeit_all(lots)
    assert (forfeit.available, forfeit.pending, forfeit.points) == (300, 200, 500)
    assert [(found.lot_id, moved) for found, moved in forfeit.moves] == [
        ("open", -300),
        ("pending", -200),
    ]
    assert [(found.remaining, found.status) for found in lots] == [
        (0, LotStatus.OPEN),
        (0, LotStatus.CANCELLED),
        (0, LotStatus.OPEN),
        (0, LotStatus.EXPIRED),
    ]
    assert forfeit_all(lots).points == 0  # twice: nothing more
