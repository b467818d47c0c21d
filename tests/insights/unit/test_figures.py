"""The figures' pure rules, without a server: how the ledger's sums become a unit's liability
(the settlement's rules) and which months a period touches."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from loyalty_insights.domain.crossunit import shares
from loyalty_insights.domain.liability import liabilities, total_of
from loyalty_insights.domain.periods import Period
from loyalty_kit.errors import InvalidArgument


def test_postings_count_as_the_settlement_counts_them() -> None:
    units = liabilities(
        [
            ("mall", "earn", 1000),
            ("mall", "reverse", -100),
            ("mall", "adjust", -20),  # a negative adjustment lowers what was issued
            ("cinema", "migration", 300),
            ("cinema", "redeem", -250),
            ("cinema", "redemption_cancel", 50),
            ("hotel", "partner_exchange_reverse", -40),  # a reversed exchange in: issued less
            ("hotel", "partner_exchange_reverse", 15),  # a reversed exchange out: redeemed less
            ("group", "expire", -70),
            ("group", "merge_in", 5),
            ("group", "merge_out", -5),
        ],
        [("mall", "expire", -60), ("hotel", "expire", -10), ("mall", "erasure_forfeit", -30)],
        [("mall", "2027-03", 500), ("mall", "", 90), ("cinema", "2031-05", 100), ("hotel", "", 0)],
    )
    assert sorted(units) == ["cinema", "hotel", "mall"]  # the group's postings add nothing
    mall = units["mall"]
    assert (mall.issued, mall.redeemed, mall.expired, mall.forfeited) == (880, 0, 60, 30)
    assert (mall.outstanding, mall.months()) == (590, [("2027-03", 500), ("", 90)])
    assert mall.breakage == pytest.approx(60 / 880)
    cinema = units["cinema"]
    assert (cinema.issued, cinema.redeemed, cinema.breakage) == (300, 200, 0.0)
    hotel = units["hotel"]
    assert (hotel.issued, hotel.redeemed, hotel.expired) == (-40, -15, 10)
    assert hotel.breakage == 0.0  # nothing issued: no ratio
    together = total_of(units.values())
    assert (together.issued, together.outstanding) == (1140, 690)


def test_a_period_names_its_months_and_refuses_bad_dates() -> None:
    period = Period.of(datetime(2026, 11, 15, tzinfo=UTC), datetime(2027, 2, 1, tzinfo=UTC))
    assert period.months() == ["2026-11", "2026-12", "2027-01"]
    with pytest.raises(InvalidArgument) as raised:
        Period.of(None, None)
    assert [v.field for v in raised.value.field_violations] == ["start_time", "end_time"]
    with pytest.raises(InvalidArgument) as backwards:
        Period.of(datetime(2027, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
    assert [v.field for v in backwards.value.field_violations] == ["end_time"]


def test_shares_of_spend_add_up_to_one() -> None:
    from decimal import Decimal

    found, total = shares([("mall", Decimal("300"), 3), ("hotel", Decimal("100"), 1)])
    assert total == Decimal("400")
    assert [(s.unit, s.share) for s in found] == [("hotel", 0.25), ("mall", 0.75)]
