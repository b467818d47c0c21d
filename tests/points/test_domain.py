"""The ledger's rules, without I/O."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from loyalty_points.domain.ledger import Lot, LotStatus, forfeit_all
from loyalty_points.domain.programme import Programme, in_force, in_force_between

from tests.points.unit.conftest import programme


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


def version(number: int, at: datetime) -> Programme:
    return dataclasses.replace(programme(), version=number, effective_from=at)


def day(d: int) -> datetime:
    return datetime(2026, 1, d, tzinfo=UTC)


def test_the_version_in_force_is_the_last_effective_by_then() -> None:
    # in effect order; versions 2 and 3 take effect at the same moment: the later one wins
    versions = [version(1, day(1)), version(2, day(10)), version(3, day(10)), version(4, day(20))]

    assert in_force(versions, day(1) - timedelta(seconds=1)) is None
    found = [in_force(versions, day(d)) for d in (1, 9, 10, 19, 20, 31)]
    assert [p.version if p else None for p in found] == [1, 1, 3, 3, 4, 4]


def test_the_versions_of_a_time_range_pick_as_all_versions_do() -> None:
    versions = [version(1, day(1)), version(2, day(10)), version(3, day(10)), version(4, day(20))]
    before = datetime(2025, 12, 1, tzinfo=UTC)

    def kept(since: datetime, until: datetime) -> list[int]:
        return [p.version for p in in_force_between(versions, since, until)]

    assert kept(day(12), day(15)) == [3]
    assert kept(day(10), day(19)) == [3]
    assert kept(day(5), day(20)) == [1, 2, 3, 4]
    assert kept(before, day(2)) == [1]
    assert kept(before, before) == []
    for since, until in ((day(5), day(20)), (day(10), day(31)), (before, day(12))):
        some = in_force_between(versions, since, until)
        moment = since
        while moment <= until:
            assert in_force(some, moment) is in_force(versions, moment)
            moment += timedelta(hours=7)
