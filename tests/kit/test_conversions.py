"""The kit's checked conversions: what a request carries becomes a datetime, a decimal or a
bounded string, or INVALID_ARGUMENT naming the field; never a ValueError or an Overflow for
the server to trip over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st
from loyalty.points.v1 import points_service_pb2
from loyalty.tiers.v1 import tiers_service_pb2
from loyalty_kit.errors import InvalidArgument
from loyalty_kit.money import parse_amount, parse_decimal
from loyalty_kit.timestamps import EARLIEST, LATEST, add_months, moment, moment_of
from loyalty_kit.validation import MAX_KEY_LENGTH, bounded, enum_value, length_violation


def fields_of(error: pytest.ExceptionInfo[InvalidArgument]) -> list[str]:
    return [v.field for v in error.value.field_violations]


@pytest.mark.parametrize(
    ("seconds", "nanos", "field"),
    [
        (0, 1_000_000_000, "as_of.nanos"),
        (0, -1, "as_of.nanos"),
        (-(2**63), 0, "as_of"),
        (-62135596801, 0, "as_of"),  # before year 1
        (253402300799, 0, "as_of"),  # 9999-12-31T23:59:59Z: beyond the supported range
        (1_000_000_000_000, 0, "as_of"),
        (int(LATEST.timestamp()), 0, "as_of"),
        (int(EARLIEST.timestamp()) - 1, 999_999_999, "as_of"),
    ],
)
def test_a_timestamp_outside_the_supported_range_is_refused_naming_the_field(
    seconds: int, nanos: int, field: str
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        moment(Timestamp(seconds=seconds, nanos=nanos), "as_of")
    assert fields_of(refused) == [field]


def test_the_edges_of_the_supported_range_are_moments() -> None:
    assert moment(Timestamp(seconds=int(EARLIEST.timestamp())), "t") == EARLIEST
    last = moment(Timestamp(seconds=int(LATEST.timestamp()) - 1, nanos=999_999_999), "t")
    assert last == LATEST - timedelta(microseconds=1)
    assert last.tzinfo is UTC


@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(8999, 12, 31)))
def test_any_supported_moment_survives_time_zones_and_tier_years(when: datetime) -> None:
    stamp = Timestamp()
    stamp.FromDatetime(when.replace(tzinfo=UTC))
    at = moment(stamp, "as_of")
    for zone in ("Pacific/Kiritimati", "Pacific/Pago_Pago", "Asia/Shanghai"):
        at.astimezone(ZoneInfo(zone))
    add_months(at, 36)
    add_months(at, -36)


def test_moment_of_is_none_when_unset_and_names_the_given_field() -> None:
    request = tiers_service_pb2.CreateTierGrantRequest()
    assert moment_of(request.tier_grant, "end_time") is None
    request.tier_grant.end_time.nanos = 1_000_000_000
    with pytest.raises(InvalidArgument) as refused:
        moment_of(request.tier_grant, "end_time", "tier_grant.end_time")
    assert fields_of(refused) == ["tier_grant.end_time.nanos"]


@pytest.mark.parametrize(
    "text",
    [
        "1E+999999999",
        "-1E+999999999",
        "1E-999999999",
        "NaN",
        "sNaN",
        "Infinity",
        "-Infinity",
        "9" * 19,
        "0." + "0" * 12 + "1",
        "1" * 65,
        "",
        "twelve",
    ],
)
def test_a_decimal_that_is_not_finite_huge_or_too_precise_is_refused(text: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        parse_decimal(text, "activities[0].qualifying_spend")
    assert fields_of(refused) == ["activities[0].qualifying_spend"]


@pytest.mark.parametrize("text", ["0", "12.5", "-3", "9" * 18, "0." + "0" * 11 + "1", "1E+3"])
def test_a_decimal_within_bounds_is_read_exactly(text: str) -> None:
    assert parse_decimal(text, "spend") == Decimal(text)


def test_an_amount_is_checked_by_the_same_rules() -> None:
    with pytest.raises(InvalidArgument) as refused:
        parse_amount("CNY", "NaN", "lines[0].amount")
    assert fields_of(refused) == ["lines[0].amount.amount"]
    assert parse_amount("CNY", "1234.56", "lines[0].amount").value == Decimal("1234.56")


def test_a_key_string_has_one_maximum() -> None:
    assert bounded("H-1", "order_id") == "H-1"
    assert bounded("x" * MAX_KEY_LENGTH, "order_id")
    for text in ("", "   ", "x" * (MAX_KEY_LENGTH + 1), "x" * 12000):
        with pytest.raises(InvalidArgument) as refused:
            bounded(text, "order_id")
        assert fields_of(refused) == ["order_id"]
    assert bounded("", "tag", required=False) == ""
    assert length_violation("x" * 65, "coupon", maximum=64) is not None


def test_an_enum_number_the_contract_does_not_name_is_refused() -> None:
    kinds = points_service_pb2.PostingKind.values()
    assert enum_value(kinds, points_service_pb2.POSTING_KIND_EARN, "kind") == 1
    assert enum_value(kinds, 0, "kind", unspecified_ok=True) == 0
    for number in (0, 9999, -1):
        with pytest.raises(InvalidArgument) as refused:
            enum_value(kinds, number, "kind")
        assert fields_of(refused) == ["kind"]
