"""The figures' pure rules, without a server: how the ledger's sums become a unit's liability
(the settlement's rules) and which months a period touches."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from loyalty_insights.domain import cohorts as cohort_figures
from loyalty_insights.domain.crossunit import shares, shares_at
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


def test_one_units_share_has_its_own_spend_as_the_total() -> None:
    from decimal import Decimal

    rows = [("mall", Decimal("300"), 3), ("hotel", Decimal("100"), 1)]
    found, total = shares_at(rows, "mall")
    assert (total, [(s.unit, s.share) for s in found]) == (Decimal("300"), [("mall", 0.75)])
    assert shares_at(rows, "") == shares(rows)
    assert shares_at(rows, "cinema") == ([], Decimal(0))


def test_cohorts_run_from_their_month_to_the_period_end_with_zeros() -> None:
    found = cohort_figures.cohorts(
        ["2026-01", "2026-02", "2026-03"],
        [("2026-02", 4, 1), ("2026-01", 2, 0)],
        {("2026-01", "2026-01"): 2, ("2026-01", "2026-03"): 1, ("2026-02", "2026-03"): 3},
    )
    assert [(c.month, c.members, c.imported) for c in found] == [
        ("2026-01", 2, 0),
        ("2026-02", 4, 1),
    ]
    assert [(m.month, m.offset, m.active, m.retention) for m in found[0].months] == [
        ("2026-01", 0, 2, 1.0),
        ("2026-02", 1, 0, 0.0),
        ("2026-03", 2, 1, 0.5),
    ]
    assert [(m.offset, m.retention) for m in found[1].months] == [(0, 0.0), (1, 0.75)]
    assert cohort_figures.month_index("2027-01") - cohort_figures.month_index("2026-11") == 2


def test_health_counts_active_members_without_a_registration_and_fills_empty_months() -> None:
    found = cohort_figures.health(
        ["2026-01", "2026-02"],
        {"2026-01": cohort_figures.MonthActivity("2026-01", 3, 2, 1, 1)},
        {"2026-01": [("silver", 2), ("gold", 1)]},
        {},
    )
    january, february = found
    assert (january.members, january.active, january.active_rate) == (4, 2, 0.5)
    assert (january.redeeming, january.redemption_rate) == (1, 0.5)
    assert january.tiers == [("gold", 1), ("silver", 2)]
    assert (february.members, february.active_rate, february.redemption_rate) == (0, 0.0, 0.0)


def test_months_end_at_the_next_month_or_the_period_end() -> None:
    period = Period(datetime(2026, 11, 20, tzinfo=UTC), datetime(2027, 1, 10, tzinfo=UTC))
    assert period.month_ends() == [
        ("2026-11", datetime(2026, 12, 1, tzinfo=UTC)),
        ("2026-12", datetime(2027, 1, 1, tzinfo=UTC)),
        ("2027-01", datetime(2027, 1, 10, tzinfo=UTC)),
    ]
