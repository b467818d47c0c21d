"""The order file reader and a chunk's decisions (no I/O): a unit's past orders, in parts split
anywhere, become parsed and refused rows; parsed rows meet their members."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from loyalty_identity.domain.identities import ChannelIdentity
from loyalty_identity.domain.imports import ImportFileError, ImportFormat, RejectedRow
from loyalty_identity.domain.order_file import _PLAIN_AMOUNT, OrderFileReader, _amount
from loyalty_identity.domain.order_import import (
    OrderColumnMapping,
    OrderImportSpec,
    OrderOutcome,
    ParsedOrder,
    validate_order_spec,
)
from loyalty_identity.service_layer.order_imports import decide
from loyalty_kit.errors import InvalidArgument
from loyalty_kit.kernel.money import fraction_digits

NOW = datetime(2026, 3, 1, 4, tzinfo=UTC)  # noon in Shanghai
MAPPING = OrderColumnMapping(
    legacy_number="卡号", phone="手机", order_id="单号", amount="金额", occurred_at="时间"
)
HEADER = "卡号,手机,单号,金额,时间,备注"


def spec(**options: object) -> OrderImportSpec:
    return OrderImportSpec(unit="mall", mapping=MAPPING, **options)  # type: ignore[arg-type]


def parts(content: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(content), size):
        yield content[start : start + size]


def read(content: bytes, *, part: int = 7, **options: object) -> list[ParsedOrder | RejectedRow]:
    return list(OrderFileReader(spec(**options), now=NOW).rows(parts(content, part)))


def csv_file(*rows: str, encoding: str = "utf-8") -> bytes:
    return ("\r\n".join((HEADER, *rows)) + "\r\n").encode(encoding)


def reasons(rows: list[ParsedOrder | RejectedRow]) -> list[str]:
    return [r.reason if isinstance(r, RejectedRow) else "OK" for r in rows]


def test_orders_are_read_with_their_member_keys_amounts_and_times() -> None:
    rows = read(
        csv_file(
            "M001,,A-1,1234.5,2025-06-01,备注",
            ",13912345678,A-2,0,2025-06-01T10:30:00+08:00,",
            "M003,139 1234 5679,pos:7.1_x,88.00,2025/6/2 18:00,",
        )
    )
    first, second, third = rows
    assert isinstance(first, ParsedOrder) and isinstance(second, ParsedOrder)
    assert isinstance(third, ParsedOrder)
    assert first.identities == (ChannelIdentity("legacy:mall", "M001"),)
    assert (first.order_id, first.amount, first.currency) == ("A-1", Decimal("1234.5"), "CNY")
    assert first.occurred_at == datetime(2025, 5, 31, 16, tzinfo=UTC)  # the day, in Shanghai
    assert second.identities == (ChannelIdentity("phone", "+8613912345678"),)
    assert second.occurred_at == datetime(2025, 6, 1, 2, 30, tzinfo=UTC)
    assert [i.type for i in third.identities] == ["legacy:mall", "phone"]  # legacy first
    assert third.occurred_at == datetime(2025, 6, 2, 10, tzinfo=UTC)
    assert [r.number for r in rows] == [1, 2, 3]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (",,A-1,10,2025-06-01,", "MISSING_MEMBER"),
        ("M 1,,A-1,10,2025-06-01,", "INVALID_LEGACY_NUMBER"),
        (",12345,A-1,10,2025-06-01,", "INVALID_PHONE"),
        ("M1,,,10,2025-06-01,", "MISSING_ORDER_ID"),
        ("M1,,A/1,10,2025-06-01,", "INVALID_ORDER_ID"),
        ("M1,,A-1,-10,2025-06-01,", "INVALID_AMOUNT"),
        ("M1,,A-1,10.001,2025-06-01,", "INVALID_AMOUNT"),
        ("M1,,A-1,1e3,2025-06-01,", "INVALID_AMOUNT"),
        ("M1,,A-1,,2025-06-01,", "INVALID_AMOUNT"),
        ("M1,,A-1,ten,2025-06-01,", "INVALID_AMOUNT"),
        ("M1,,A-1,10,2026-03-02,", "DATE_IN_FUTURE"),
        ("M1,,A-1,10,1999-12-31,", "INVALID_DATE"),
        ("M1,,A-1,10,2025-02-30,", "INVALID_DATE"),
        ("M1,,A-1,10,,", "INVALID_DATE"),
        ("M1,,A\u202e1,10,2025-06-01,", "CONTROL_CHARACTERS"),
        ("M1,,A-1,10,2025-06-01", "WRONG_COLUMN_COUNT"),
    ],
)
def test_a_bad_row_is_refused_with_its_reason(row: str, reason: str) -> None:
    (refused,) = read(csv_file(row))
    assert isinstance(refused, RejectedRow) and refused.reason == reason
    assert "13912345678" not in refused.detail


def test_an_amounts_places_are_counted_as_its_decimal_counts_them() -> None:
    texts = ["0", "10", "007", "10.5", "10.50", "10.500", "0.0", "0.000001", "1.", ".5"]
    texts += ["1,000", "1e3", "-1", "+1", " 1", "1.2.3", "999999999999999", "1" * 16]
    for text in texts:
        for digits in (0, 2, 3, 6):
            plain = _PLAIN_AMOUNT.fullmatch(text) is not None
            expected = Decimal(text) if plain and fraction_digits(Decimal(text)) <= digits else None
            assert _amount(text, digits) == expected, (text, digits)
            if expected is not None:
                assert str(_amount(text, digits)) == str(expected)


def test_a_refused_phone_is_masked_in_the_detail() -> None:
    (refused,) = read(csv_file(",1391234567899,A-1,10,2025-06-01,"))
    assert isinstance(refused, RejectedRow) and refused.reason == "INVALID_PHONE"
    assert "1391234567899" not in refused.detail and "****" in refused.detail


def test_a_currency_column_says_each_amounts_currency() -> None:
    mapping = OrderColumnMapping(
        legacy_number="no", order_id="id", amount="amt", occurred_at="at", currency="cur"
    )
    content = b"no,id,amt,at,cur\nM1,1,100,2025-01-01,JPY\nM1,2,1.5,2025-01-01,JPY\n"
    content += b"M1,3,1.5,2025-01-01,\nM1,4,1,2025-01-01,XYZ\n"
    rows = list(
        OrderFileReader(
            OrderImportSpec(unit="mall", mapping=mapping, currency="HKD"), now=NOW
        ).rows([content])
    )
    assert reasons(rows) == ["OK", "INVALID_AMOUNT", "OK", "INVALID_CURRENCY"]
    assert isinstance(rows[2], ParsedOrder) and rows[2].currency == "HKD"


def test_json_lines_and_gb18030_files() -> None:
    mapping = OrderColumnMapping(
        legacy_number="card", order_id="id", amount="amount", occurred_at="at"
    )
    content = (
        b'{"card": "M1", "id": "9", "amount": 12.5, "at": "2025-01-01"}\n'
        b"not json\n"
        b'{"card": "M1", "id": "10", "amount": [1], "at": "2025-01-01"}\n'
    )
    rows = list(
        OrderFileReader(
            OrderImportSpec(unit="mall", mapping=mapping, format=ImportFormat.JSON_LINES),
            now=NOW,
        ).rows(parts(content, 5))
    )
    assert reasons(rows) == ["OK", "INVALID_JSON", "INVALID_VALUE"]
    assert isinstance(rows[0], ParsedOrder) and rows[0].amount == Decimal("12.5")
    gb = read(csv_file("M1,,单-1,10,2025-01-01,中文备注", encoding="gb18030"), encoding="gb18030")
    assert reasons(gb) == ["INVALID_ORDER_ID"]  # read (a Chinese order ID is not an ID)


def test_a_file_that_cannot_be_read_fails_whole() -> None:
    with pytest.raises(ImportFileError) as missing:
        read(b"card,amount\nM1,10\n")
    assert missing.value.reason == "MISSING_COLUMNS" and "单号" in missing.value.detail
    with pytest.raises(ImportFileError) as empty:
        read(HEADER.encode() + b"\n")
    assert empty.value.reason == "EMPTY_FILE"


def test_a_spec_needs_a_member_column_and_the_order_columns() -> None:
    with pytest.raises(InvalidArgument) as refused:
        validate_order_spec(
            OrderImportSpec(
                unit="Mall!",
                mapping=OrderColumnMapping(order_id="", amount="a", occurred_at="t"),
                encoding="latin-1",
            ),
            known_currency=False,
        )
    assert sorted(v.field for v in refused.value.field_violations) == [
        "spec.currency",
        "spec.encoding",
        "spec.mapping.legacy_number",
        "spec.mapping.order_id",
        "spec.unit",
    ]


def order(number: int, order_id: str, *keys: str) -> ParsedOrder:
    return ParsedOrder(
        number,
        tuple(ChannelIdentity("legacy:mall", k) for k in keys),
        order_id,
        Decimal(1),
        "CNY",
        NOW,
    )


def test_a_chunk_carries_over_each_order_of_a_known_member_once() -> None:
    orders = [
        order(1, "A", "m1"),
        order(2, "B", "nobody"),
        order(3, "A", "m1"),  # the same order again in the chunk
        order(4, "C", "unknown-legacy", "by-phone"),  # matched by its second key
    ]
    members = ["member-1", None, "member-1", None, "member-2"]
    carry, report = decide(orders, members)
    assert [(o.number, m) for o, m in carry] == [(1, "member-1"), (4, "member-2")]
    assert [(r.row_number, r.outcome, r.reason) for r in report] == [
        (2, OrderOutcome.UNKNOWN_MEMBER, "UNKNOWN_MEMBER"),
        (3, OrderOutcome.DUPLICATE, "DUPLICATE"),
    ]
    assert report[1].detail == "the order ID of row 1 again"
