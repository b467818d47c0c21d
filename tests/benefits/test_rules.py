"""The benefits domain's pure rules: quota periods, discounts, birthdays, members' states."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from loyalty_benefits.domain.birthdays import birthdays_on
from loyalty_benefits.domain.catalogue import (
    Benefit,
    BenefitKind,
    Catalogue,
    CouponKind,
    CouponTemplate,
    QuotaPeriod,
)
from loyalty_benefits.domain.coupons import issue
from loyalty_benefits.domain.members import (
    MemberState,
    erased,
    merged,
    reactivated,
    restored_by_unmerge,
    suspended,
)
from loyalty_kit.money import Amount


def benefit(period: QuotaPeriod, quota: int = 2) -> Benefit:
    return Benefit("b", "", "", BenefitKind.FREE_SERVICE, quota=quota, quota_period=period)


def test_a_tier_year_not_yet_judged_runs_on_in_twelve_month_steps() -> None:
    rules = Catalogue(version=1)
    end = datetime(2026, 3, 1, tzinfo=UTC)
    now = datetime(2027, 5, 1, tzinfo=UTC)  # more than a year past the recorded end
    period = rules.period_of(benefit(QuotaPeriod.TIER_YEAR), now, end)
    assert period.end == datetime(2028, 3, 1, tzinfo=UTC)
    before_any = rules.period_of(benefit(QuotaPeriod.TIER_YEAR), now, None)
    assert before_any.key == "year:2027"  # no tier year yet: the calendar year


def test_calendar_periods_follow_the_catalogues_time_zone() -> None:
    rules = Catalogue(version=1, time_zone="Asia/Shanghai")
    new_year_in_shanghai = datetime(2026, 12, 31, 17, 0, tzinfo=UTC)  # 1 January, 01:00 there
    month = rules.period_of(benefit(QuotaPeriod.MONTH), new_year_in_shanghai, None)
    assert month.key == "month:2027-01"
    assert month.end is not None and month.end.astimezone(UTC) == datetime(
        2027, 1, 31, 16, 0, tzinfo=UTC
    )
    unlimited = rules.period_of(benefit(QuotaPeriod.NONE, quota=0), new_year_in_shanghai, None)
    assert (unlimited.key, unlimited.end) == ("unlimited", None)


def test_a_percentage_discount_rounds_down_to_the_currencys_minor_unit() -> None:
    template = CouponTemplate(
        "t", "", "", CouponKind.PERCENTAGE_OFF, percentage=Decimal("15"), valid_days=1
    )
    now = datetime(2026, 11, 23, tzinfo=UTC)
    yen = issue(template, "m", "issue", now).redeem("mall", "o", Amount("JPY", Decimal(999)), now)
    assert yen == Amount("JPY", Decimal(149))  # 149.85: yen have no minor unit
    fen = issue(template, "m", "issue", now).redeem(
        "mall", "o", Amount("CNY", Decimal("333.33")), now
    )
    assert fen == Amount("CNY", Decimal("49.99"))


def test_those_born_on_29_february_celebrate_on_the_28th_in_other_years() -> None:
    assert birthdays_on(date(2026, 2, 28)) == [(2, 28), (2, 29)]
    assert birthdays_on(date(2028, 2, 28)) == [(2, 28)]
    assert birthdays_on(date(2028, 2, 29)) == [(2, 29)]


def test_only_a_member_merged_into_that_survivor_is_restored_by_an_unmerge() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    gone = merged("m", "s", None, now)
    assert restored_by_unmerge(gone, "s")
    assert not restored_by_unmerge(gone, "other")
    assert not restored_by_unmerge(None, "s")  # active already: a redelivery
    assert not restored_by_unmerge(erased("m", gone, now), "s")
    assert not restored_by_unmerge(suspended("m", None, now), "s")


def test_merged_and_erased_are_final_and_each_event_is_idempotent() -> None:
    now = datetime(2026, 11, 24, tzinfo=UTC)
    held = suspended("m", None, now)
    assert held.state is MemberState.SUSPENDED and suspended("m", held, now) == held
    assert reactivated(held) is None and reactivated(None) is None
    gone = merged("m", "s", held, now)  # a suspended member merged away
    assert (gone.state, gone.merged_into) == (MemberState.MERGED, "s")
    assert merged("m", "s", gone, now) == gone
    assert suspended("m", gone, now) == gone and reactivated(gone) == gone
    wiped = erased("m", gone, now)
    assert (wiped.state, wiped.merged_into) == (MemberState.ERASED, "")
    assert erased("m", wiped, now) == wiped
    assert merged("m", "s", wiped, now) == wiped
    assert suspended("m", wiped, now) == wiped and reactivated(wiped) == wiped
    refusal = gone.refusal()
    assert (refusal.reason, refusal.metadata) == (
        "MEMBER_MERGED",
        {"member_id": "m", "state": "merged", "merged_into": "s"},
    )
