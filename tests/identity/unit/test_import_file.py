"""The import file reader: a unit's legacy member file, in parts split anywhere, becomes parsed
and rejected rows (no I/O)."""

from __future__ import annotations

import csv
import io
import itertools
import json
import tracemalloc
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loyalty_identity.domain.identities import ChannelIdentity, IdentityKind, IdentityType
from loyalty_identity.domain.import_file import MAX_RECORD_BYTES, FileReader
from loyalty_identity.domain.imports import (
    ColumnMapping,
    ConsentColumns,
    ImportFileError,
    ImportFormat,
    ImportSpec,
    ParsedRow,
    RejectedRow,
    RowConsent,
)
from loyalty_identity.domain.member import Gender

NOW = datetime(2026, 3, 1, 4, tzinfo=UTC)  # noon in Shanghai
SHANGHAI = ZoneInfo("Asia/Shanghai")
TYPES = {
    "phone": IdentityType("phone", IdentityKind.PHONE),
    "email": IdentityType("email", IdentityKind.EMAIL),
    "wechat_openid": IdentityType("wechat_openid", IdentityKind.TOKEN, r"[A-Za-z0-9_-]{16,64}"),
    "wechat_unionid": IdentityType("wechat_unionid", IdentityKind.TOKEN, r"[A-Za-z0-9_-]{16,64}"),
    "store_card": IdentityType("store_card", IdentityKind.TOKEN, r"[0-9A-Z]{6,32}"),
}
SMS = "CONSENT_PURPOSE_MARKETING_SMS"
# The mall's export: Chinese column names, as its legacy system writes them.
MALL = ColumnMapping(
    legacy_number="会员号",
    phone="手机",
    email="邮箱",
    wechat_unionid="unionid",
    wechat_openid="openid",
    card_number="卡号",
    name="姓名",
    gender="性别",
    birthday="生日",
    region="地区",
    tags="标签",
    points_balance="积分",
    points_expire_at="积分到期",
    tier="等级",
    consents=(ConsentColumns(SMS, "短信同意", "短信同意时间"),),
    joined_at="入会日期",
)
HEADER = [*MALL.columns(), "备注"]  # one column not imported
TIERS = {"金卡": "gold", "Platinum": "platinum"}
SPEC = ImportSpec(unit="mall", mapping=MALL, tier_mapping=TIERS)
UNION = "oUnion0000000000000001"


def csv_file(*rows: dict[str, str], header: list[str] = HEADER, encoding: str = "utf-8") -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([row.get(column, "") for column in header])
    return text.getvalue().encode(encoding)


def read(
    data: bytes | Iterable[bytes], spec: ImportSpec = SPEC, time_zone: ZoneInfo | None = None
) -> list[ParsedRow | RejectedRow]:
    reader = FileReader(spec, TYPES, now=NOW, time_zone=time_zone)
    return list(reader.rows([data] if isinstance(data, bytes) else data))


def one(data: bytes, spec: ImportSpec = SPEC) -> ParsedRow | RejectedRow:
    [row] = read(data, spec)
    return row


def parsed(row: ParsedRow | RejectedRow) -> ParsedRow:
    assert isinstance(row, ParsedRow), row
    return row


def rejected(row: ParsedRow | RejectedRow) -> RejectedRow:
    assert isinstance(row, RejectedRow), row
    return row


def cut(data: bytes, at: Iterable[int]) -> list[bytes]:
    edges = [0, *sorted(set(at)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


FULL_ROW = {
    "会员号": "M000123",
    "手机": "138 1234 5678",
    "邮箱": "Wei.Li@Example.COM",
    "unionid": UNION,
    "openid": "oOpen00000000000001",
    "卡号": "HY2026",
    "姓名": "  李伟 ",
    "性别": "男",
    "生日": "1990/1/5",
    "地区": "CN-31",
    "标签": "bu:mall; vip:gold ;;bu:mall",
    "积分": "1200",
    "积分到期": "2026-12-31",
    "等级": "金卡",
    "短信同意": "是",
    "短信同意时间": "2024-05-01",
    "入会日期": "2019-08-15",
    "备注": "not imported, 随便",
}


# --- a row ----------------------------------------------------------------------------------------
def test_a_row_is_normalised_into_identities_profile_consents_balance_and_tier() -> None:
    row = parsed(one(csv_file(FULL_ROW)))

    assert row.number == 1
    assert row.identities == (
        ChannelIdentity("legacy:mall", "M000123"),
        ChannelIdentity("phone", "+8613812345678"),
        ChannelIdentity("email", "wei.li@example.com"),
        ChannelIdentity("wechat_unionid", UNION),
        ChannelIdentity("wechat_openid", "oOpen00000000000001"),
        ChannelIdentity("store_card", "HY2026"),
    )
    assert row.legacy == ChannelIdentity("legacy:mall", "M000123")
    assert (row.name, row.gender, row.birthday, row.region) == (
        "李伟",
        Gender.MALE,
        date(1990, 1, 5),
        "CN-31",
    )
    assert row.tags == ("bu:mall", "vip:gold")
    assert row.consents == (RowConsent(SMS, True, datetime(2024, 5, 1, tzinfo=SHANGHAI)),)
    assert row.legacy_points == 1200
    # The end of the day in Shanghai: the first instant of the next, when the points are gone.
    assert row.points_expire_at == datetime(2027, 1, 1, tzinfo=SHANGHAI)
    assert (row.legacy_tier, row.tier_code, row.notes) == ("金卡", "gold", ())
    # When the member joined the mall's card programme: the start of that day in Shanghai.
    assert row.joined_at == datetime(2019, 8, 15, tzinfo=SHANGHAI)


def test_empty_optional_fields_are_absent() -> None:
    row = parsed(one(csv_file({"会员号": "M1"})))

    assert row == ParsedRow(number=1, identities=(ChannelIdentity("legacy:mall", "M1"),))


def test_phones_are_read_in_the_spec_default_region() -> None:
    hong_kong = ImportSpec(unit="hotel", mapping=MALL, default_region="HK")

    row = parsed(one(csv_file({"会员号": "H1", "手机": "9123 4567"}), hong_kong))

    assert row.identities == (
        ChannelIdentity("legacy:hotel", "H1"),
        ChannelIdentity("phone", "+85291234567"),
    )


@pytest.mark.parametrize(
    ("written", "gender", "notes"),
    [
        ("male", Gender.MALE, ()),
        ("M", Gender.MALE, ()),
        ("女", Gender.FEMALE, ()),
        ("Female", Gender.FEMALE, ()),
        ("f", Gender.FEMALE, ()),
        ("other", Gender.OTHER, ()),
        ("保密", Gender.UNSPECIFIED, ()),
        ("unknown", Gender.UNSPECIFIED, ()),
        ("13812345678", Gender.UNSPECIFIED, ("UNKNOWN_GENDER",)),
    ],
)
def test_genders_map_and_the_unknown_stay_unspecified(
    written: str, gender: Gender, notes: tuple[str, ...]
) -> None:
    row = parsed(one(csv_file({"会员号": "M1", "性别": written})))

    assert (row.gender, row.notes) == (gender, notes)


@pytest.mark.parametrize("written", ["1990-01-05", "1990/01/05", "1990/1/5", "19900105"])
def test_birthdays_in_each_format(written: str) -> None:
    assert parsed(one(csv_file({"会员号": "M1", "生日": written}))).birthday == date(1990, 1, 5)


@pytest.mark.parametrize(
    ("written", "granted"),
    [
        *[("true", True), ("YES", True), ("1", True), ("Y", True), ("是", True)],
        *[("false", False), ("no", False), ("0", False), ("n", False), ("否", False)],
    ],
)
def test_consent_answers(written: str, granted: bool) -> None:
    row = parsed(one(csv_file({"会员号": "M1", "短信同意": written})))

    assert row.consents == (RowConsent(SMS, granted, None),)


@pytest.mark.parametrize(
    ("written", "instant"),
    [
        ("2026-06-30", datetime(2026, 7, 1, tzinfo=SHANGHAI)),
        ("20260630", datetime(2026, 7, 1, tzinfo=SHANGHAI)),
        ("2026/06/30 18:30:00", datetime(2026, 6, 30, 18, 30, tzinfo=SHANGHAI)),
        ("2026/6/30 18:30", datetime(2026, 6, 30, 18, 30, tzinfo=SHANGHAI)),
        ("2026-06-30T10:00:00Z", datetime(2026, 6, 30, 10, tzinfo=UTC)),
        ("2026-06-30T10:00:00+09:00", datetime(2026, 6, 30, 1, tzinfo=UTC)),
    ],
)
def test_expiry_dates_end_with_their_day_and_times_are_read_in_the_zone(
    written: str, instant: datetime
) -> None:
    row = parsed(one(csv_file({"会员号": "M1", "积分": "5", "积分到期": written})))

    assert row.points_expire_at == instant


def test_dates_without_offset_are_read_in_the_given_time_zone() -> None:
    [row] = read(csv_file({"会员号": "M1", "积分到期": "2026-06-30"}), time_zone=ZoneInfo("UTC"))

    assert parsed(row).points_expire_at == datetime(2026, 7, 1, tzinfo=UTC)


def test_an_unmapped_tier_is_imported_without_a_tier_and_noted() -> None:
    gold = parsed(one(csv_file({"会员号": "M1", "等级": "platinum"})))
    unknown = parsed(one(csv_file({"会员号": "M2", "等级": "钻石卡"})))

    assert (gold.tier_code, gold.notes) == ("platinum", ())  # mapped ignoring case
    assert (unknown.legacy_tier, unknown.tier_code, unknown.notes) == (
        "钻石卡",
        "",
        ("UNMAPPED_TIER",),
    )


def test_balances_are_whole_points_up_to_int64() -> None:
    for written, points in [("0", 0), ("100.00", 100), ("9223372036854775807", 2**63 - 1)]:
        assert parsed(one(csv_file({"会员号": "M1", "积分": written}))).legacy_points == points


def test_emoji_in_names_are_kept() -> None:
    row = parsed(one(csv_file({"会员号": "M1", "姓名": "小王🐱‍👤✨"})))

    assert row.name == "小王🐱‍👤✨"


# --- every reason a row is refused --------------------------------------------------------------
REASONS = [
    ("会员号", "", "MISSING_LEGACY_NUMBER"),
    ("会员号", "M 001", "INVALID_LEGACY_NUMBER"),
    ("会员号", "x" * 65, "INVALID_LEGACY_NUMBER"),
    ("会员号", "会员001", "INVALID_LEGACY_NUMBER"),
    ("手机", "1381234567", "INVALID_PHONE"),
    ("手机", "+999 1234567", "INVALID_PHONE"),
    ("邮箱", "wei.li@@example.com", "INVALID_EMAIL"),
    ("邮箱", "wei.li", "INVALID_EMAIL"),
    ("unionid", "short", "INVALID_WECHAT_UNIONID"),
    ("openid", "o" * 65, "INVALID_WECHAT_OPENID"),
    ("卡号", "hy-2026", "INVALID_STORE_CARD"),
    ("姓名", "李\x07伟", "CONTROL_CHARACTERS"),
    ("姓名", "李\n伟", "CONTROL_CHARACTERS"),
    ("姓名", "李\t伟", "CONTROL_CHARACTERS"),
    ("姓名", "Li\u202eieW", "CONTROL_CHARACTERS"),
    ("手机", "138\x001234\x005678", "CONTROL_CHARACTERS"),
    ("地区", "CN-31\x85", "CONTROL_CHARACTERS"),
    ("姓名", "李" * 129, "VALUE_TOO_LONG"),
    ("地区", "r" * 65, "VALUE_TOO_LONG"),
    ("等级", "g" * 65, "VALUE_TOO_LONG"),
    ("生日", "1899-12-31", "INVALID_BIRTHDAY"),
    ("生日", "1990-02-30", "INVALID_BIRTHDAY"),
    ("生日", "05/01/1990", "INVALID_BIRTHDAY"),
    ("生日", "yesterday", "INVALID_BIRTHDAY"),
    ("生日", "2026-03-02", "BIRTHDAY_IN_FUTURE"),
    ("标签", "bu:mall;VIP gold", "INVALID_TAG"),
    ("标签", "nonamespace", "INVALID_TAG"),
    ("标签", ";".join(f"t:{i}" for i in range(201)), "TOO_MANY_TAGS"),
    ("短信同意", "maybe", "INVALID_CONSENT"),
    ("短信同意时间", "2027-01-01", "DATE_IN_FUTURE"),
    ("短信同意时间", "2026-03-01T12:00:01+08:00", "DATE_IN_FUTURE"),
    ("短信同意时间", "last spring", "INVALID_DATE"),
    ("积分", "-50", "NEGATIVE_BALANCE"),
    ("积分", "-0.5", "NEGATIVE_BALANCE"),
    ("积分", "12.5", "INVALID_BALANCE"),
    ("积分", "1,200", "INVALID_BALANCE"),
    ("积分", "lots", "INVALID_BALANCE"),
    ("积分", "9223372036854775808", "INVALID_BALANCE"),
    ("积分", "9" * 5000, "INVALID_BALANCE"),
    ("积分到期", "2026-13-01", "INVALID_DATE"),
    ("积分到期", "soon", "INVALID_DATE"),
    ("入会日期", "2026-03-02", "DATE_IN_FUTURE"),
    ("入会日期", "long ago", "INVALID_DATE"),
    ("入会日期", "0001-01-01", "INVALID_DATE"),  # before datetime.min in UTC+8
    ("短信同意时间", "0001-01-01", "INVALID_DATE"),
]


@pytest.mark.parametrize(("column", "value", "reason"), REASONS)
def test_a_bad_value_rejects_its_row_with_a_reason(column: str, value: str, reason: str) -> None:
    row = {"会员号": "M000123", "短信同意": "是", column: value}

    refused = rejected(one(csv_file(row)))

    assert (refused.number, refused.reason) == (1, reason)
    assert f'column "{column}"' in refused.detail
    if column in ("会员号", "手机", "邮箱", "unionid", "openid", "卡号", "姓名") and len(value) > 4:
        assert value not in refused.detail  # masked


def test_details_mask_personal_data() -> None:
    phone = rejected(one(csv_file({"会员号": "M1", "手机": "138123456"})))
    email = rejected(one(csv_file({"会员号": "M1", "邮箱": "wei.li.secret@@example.com"})))
    card = rejected(one(csv_file({"会员号": "M1", "卡号": "13812345678:x"})))

    assert "138123456" not in phone.detail and "3456" in phone.detail
    assert "wei.li.secret" not in email.detail and "w***" in email.detail
    assert "1381234" not in card.detail


def test_a_row_with_more_or_fewer_fields_than_the_header_is_rejected() -> None:
    header = ",".join(HEADER).encode()
    data = header + b"\nM1" + b"," * (len(HEADER) - 1) + b"\nM2,x\nM3" + b"," * len(HEADER) + b"\n"

    rows = read(data)

    assert [type(r) for r in rows] == [ParsedRow, RejectedRow, RejectedRow]
    assert {rejected(r).reason for r in rows[1:]} == {"WRONG_COLUMN_COUNT"}


def test_a_row_is_rejected_for_its_first_problem_in_mapping_order() -> None:
    row = {"会员号": "M1", "手机": "123", "邮箱": "bad", "积分": "-1"}

    assert rejected(one(csv_file(row))).reason == "INVALID_PHONE"


# --- the file -------------------------------------------------------------------------------------
def test_rows_are_numbered_from_one_after_the_header_counting_blank_lines() -> None:
    data = csv_file({"会员号": "M1"}, {"会员号": ""}, {"会员号": "M4"})
    lines = data.split(b"\r\n")
    data = b"\r\n".join([*lines[:3], b"", *lines[3:]])

    rows = read(data)

    assert [(r.number, type(r).__name__) for r in rows] == [
        (1, "ParsedRow"),
        (2, "RejectedRow"),
        (4, "ParsedRow"),
    ]


def test_quoted_fields_hold_commas_quotes_and_newlines() -> None:
    data = csv_file(
        {"会员号": "M1", "姓名": 'Wei "Will" Li, Jr.', "备注": 'line one\r\nline two\n,"three"'},
        {"会员号": "M2", "备注": '"\n\n"'},
        {"会员号": "M3", "姓名": "王芳"},
    )

    rows = [parsed(r) for r in read(data)]

    assert [(r.number, r.legacy.value, r.name) for r in rows] == [
        (1, "M1", 'Wei "Will" Li, Jr.'),
        (2, "M2", ""),
        (3, "M3", "王芳"),
    ]


def test_a_stray_quote_inside_a_field_does_not_swallow_the_rows_after_it() -> None:
    header = "会员号,姓名,地区\n"
    data = (header + 'M1,Wei "Bob,CN\nM2,"Li"x,CN\nM3,Wang,CN\n').encode()
    spec = ImportSpec(unit="mall", mapping=ColumnMapping("会员号", name="姓名", region="地区"))

    rows = [parsed(r) for r in read(data, spec)]

    assert [(r.legacy.value, r.name) for r in rows] == [
        ("M1", 'Wei "Bob'),
        ("M2", "Lix"),
        ("M3", "Wang"),
    ]


@pytest.mark.parametrize("encoding", ["gb18030", "GBK"])  # GB18030 extends GBK
def test_a_gb18030_file(encoding: str) -> None:
    gb = ImportSpec(unit="mall", mapping=MALL, encoding=encoding, tier_mapping=TIERS)
    data = csv_file({"会员号": "M1", "姓名": "李伟𠀀", "等级": "金卡"}, encoding="gb18030")

    row = parsed(one(data, gb))

    assert (row.name, row.tier_code) == ("李伟𠀀", "gold")


def test_a_gb18030_file_read_as_utf8_is_refused_at_its_header() -> None:
    with pytest.raises(ImportFileError) as refused:
        read(csv_file({"会员号": "M1"}, encoding="gb18030"))

    assert refused.value.reason == "INVALID_ENCODING"


def test_a_utf16_file_is_refused_with_a_hint() -> None:
    with pytest.raises(ImportFileError) as refused:
        read(csv_file({"会员号": "M1"}, encoding="utf-16"))

    assert (refused.value.reason, "UTF-16" in refused.value.detail) == ("INVALID_ENCODING", True)


def test_undecodable_bytes_reject_their_row_only() -> None:
    data = csv_file({"会员号": "M1", "姓名": "张伟"}, {"会员号": "M2"}, {"会员号": "M3"})
    data = data.replace("张伟".encode(), "张伟".encode("gb18030"))

    rows = read(data)

    assert [r.reason if isinstance(r, RejectedRow) else "OK" for r in rows] == [
        "INVALID_ENCODING",
        "OK",
        "OK",
    ]
    assert "row" in rejected(rows[0]).detail and "UTF-8" in rejected(rows[0]).detail


@pytest.mark.parametrize("column", ["会员号", "会员\n号"])  # a quoted field spanning lines
def test_a_byte_order_mark_is_dropped_even_before_a_quoted_column(column: str) -> None:
    data = b"\xef\xbb\xbf" + f'"{column}",姓名\n"M1","Li, Wei"\n'.encode()
    spec = ImportSpec(unit="mall", mapping=ColumnMapping(column, name="姓名"))

    row = parsed(one(data, spec))

    assert (row.number, row.legacy.value, row.name) == (1, "M1", "Li, Wei")


def test_a_gb18030_byte_order_mark_is_dropped() -> None:
    data = "\ufeff会员号,姓名\nM1,李伟\n".encode("gb18030")
    spec = ImportSpec(unit="mall", mapping=ColumnMapping("会员号", name="姓名"), encoding="GB18030")

    assert parsed(one(data, spec)).name == "李伟"


@pytest.mark.parametrize("row", [b"M1,\xff\n", b"M1," + b"x" * MAX_RECORD_BYTES + b"\n"])
def test_a_file_whose_only_row_is_unreadable_is_not_empty(row: bytes) -> None:
    spec = ImportSpec(unit="mall", mapping=ColumnMapping("no", name="name"))

    [refused] = read(b"no,name\n" + row, spec)

    assert rejected(refused).reason in ("INVALID_ENCODING", "LINE_TOO_LONG")


def test_missing_columns_are_named() -> None:
    data = csv_file({"会员号": "M1"}, header=["会员号", "姓名", "备注"])

    with pytest.raises(ImportFileError) as refused:
        read(data)

    assert refused.value.reason == "MISSING_COLUMNS"
    assert '"手机"' in refused.value.detail and '"短信同意时间"' in refused.value.detail
    assert '"姓名"' not in refused.value.detail


def test_a_mapped_column_twice_in_the_header_is_refused() -> None:
    with pytest.raises(ImportFileError) as refused:
        read(csv_file(header=[*HEADER, "手机"]))

    assert (refused.value.reason, '"手机"' in refused.value.detail) == ("DUPLICATE_COLUMNS", True)


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf", b"\r\n\n", csv_file(), csv_file() + b"\n"])
def test_an_empty_file_is_refused(data: bytes) -> None:
    with pytest.raises(ImportFileError) as refused:
        read(data)

    assert refused.value.reason == "EMPTY_FILE"


def test_what_the_spec_asks_but_cannot_be_read_is_refused_before_any_row() -> None:
    no_cards = {k: v for k, v in TYPES.items() if k != "store_card"}
    cases = [
        (ImportSpec(unit="mall", mapping=MALL, encoding="latin-1"), TYPES),
        (
            ImportSpec(
                unit="mall", mapping=MALL, encoding="gb18030", format=ImportFormat.JSON_LINES
            ),
            TYPES,
        ),
        (ImportSpec(unit="mall", mapping=MALL, default_region="XX"), TYPES),
        (SPEC, no_cards),
    ]
    reasons = []
    for spec, types in cases:
        with pytest.raises(ImportFileError) as refused:
            list(FileReader(spec, types, now=NOW).rows(iter(())))
        reasons.append(refused.value.reason)

    assert reasons == [
        "UNSUPPORTED_ENCODING",
        "UNSUPPORTED_ENCODING",
        "INVALID_REGION",
        "UNKNOWN_IDENTITY_TYPE",
    ]


def test_bytes_read_follows_the_rows() -> None:
    data = csv_file({"会员号": "M1"}, {"会员号": "M2"})
    reader = FileReader(SPEC, TYPES, now=NOW)
    header_end = data.index(b"\n") + 1
    first_end = data.index(b"\n", header_end) + 1

    seen = [reader.bytes_read for _ in reader.rows(cut(data, [5, 20, header_end + 3]))]

    assert seen == [first_end, len(data)]
    assert reader.bytes_read == len(data)


# --- parts split anywhere -------------------------------------------------------------------------
SAMPLE = (
    b"\xef\xbb\xbf"
    + csv_file(
        FULL_ROW,
        {"会员号": "M2", "姓名": '"王" 芳, 🐱', "备注": '多行\r\n"备注"\n,,'},
        {"会员号": "M3", "手机": "13812345", "姓名": "李\x07"},
        {"会员号": "M4", "积分": "-5", "生日": "19900105"},
    )[:-2]
)  # the last line without its line break


def test_parts_split_at_every_byte_give_the_same_rows() -> None:
    whole = read(SAMPLE)
    assert [r.number for r in whole] == [1, 2, 3, 4]

    for at in range(len(SAMPLE) + 1):
        assert read(cut(SAMPLE, [at])) == whole, at
    assert read([bytes([b]) for b in SAMPLE]) == whole


@settings(max_examples=200)
@given(st.lists(st.integers(0, len(SAMPLE)), max_size=30))
def test_parts_of_any_sizes_give_the_same_rows(cuts: list[int]) -> None:
    assert read(cut(SAMPLE, cuts)) == read(SAMPLE)


GB_SAMPLE = csv_file(
    {"会员号": "M1", "姓名": "李伟𠀀", "备注": "一\n二"}, {"会员号": "M2", "姓名": "王芳"}
).decode()
GB_SAMPLE_BYTES = GB_SAMPLE.encode("gb18030")


@given(st.lists(st.integers(0, len(GB_SAMPLE_BYTES)), max_size=20))
def test_gb18030_parts_split_inside_characters_give_the_same_rows(cuts: list[int]) -> None:
    gb = ImportSpec(unit="mall", mapping=MALL, encoding="gb18030")

    rows = read(cut(GB_SAMPLE_BYTES, cuts), gb)

    assert [parsed(r).name for r in rows] == ["李伟𠀀", "王芳"]


text_fields = st.lists(
    st.sampled_from(['"', ",", "\n", "\r\n", "a", "Z", " ", "王", "🐱", "\t"]), max_size=12
).map("".join)


@settings(max_examples=150)
@given(st.lists(text_fields, min_size=1, max_size=8), st.lists(st.integers(0, 400), max_size=8))
def test_any_quoted_content_is_framed_as_the_csv_module_frames_it(
    notes: list[str], cuts: list[int]
) -> None:
    header = ["会员号", "备注", "地区"]
    data = csv_file(
        *({"会员号": f"M{i}", "备注": n, "地区": "x"} for i, n in enumerate(notes)), header=header
    )
    spec = ImportSpec(unit="mall", mapping=ColumnMapping("会员号", region="地区"))

    rows = [parsed(r) for r in read(cut(data, [c for c in cuts if c <= len(data)]), spec)]

    assert [(r.number, r.legacy.value, r.region) for r in rows] == [
        (i + 1, f"M{i}", "x") for i in range(len(notes))
    ]


# --- a line too long ------------------------------------------------------------------------------
def ten_megabytes(newline: bytes = b"\n") -> Iterator[bytes]:
    """Parts of a 10 MB line, made as they are read (the file is never whole in memory)."""
    for _ in range(160):
        yield b"x" * 65536
    yield b"y" + newline


@pytest.mark.parametrize("file_format", [ImportFormat.CSV, ImportFormat.JSON_LINES])
def test_a_10_mb_line_is_rejected_and_read_past_in_bounded_memory(
    file_format: ImportFormat,
) -> None:
    if file_format is ImportFormat.CSV:
        spec = ImportSpec(unit="mall", mapping=ColumnMapping("no", name="name"))
        head, before, after = [b"no,name\n"], b"M1,Li\n", b"M3,Wang\n"
    else:
        spec = ImportSpec(unit="mall", mapping=ColumnMapping("no", name="name"), format=file_format)
        head, before, after = [], b'{"no": "M1", "name": "Li"}\n', b'{"no": "M3", "name": "Wang"}\n'

    def parts() -> Iterator[bytes]:
        yield from head
        yield before
        yield from ten_megabytes()
        yield after

    tracemalloc.start()
    try:
        rows = read(parts(), spec)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert [(r.number, type(r).__name__) for r in rows] == [
        (1, "ParsedRow"),
        (2, "RejectedRow"),
        (3, "ParsedRow"),
    ]
    assert rejected(rows[1]).reason == "LINE_TOO_LONG"
    assert peak < 3 * MAX_RECORD_BYTES  # the line is 10 MiB


def test_a_long_line_in_one_part_is_rejected_without_being_copied() -> None:
    data = b"no\nM1\n" + b"x" * (10 * MAX_RECORD_BYTES) + b"\nM3\n"
    spec = ImportSpec(unit="mall", mapping=ColumnMapping("no"))

    tracemalloc.start()
    try:
        rows = read(data, spec)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert [r.reason if isinstance(r, RejectedRow) else "OK" for r in rows] == [
        "OK",
        "LINE_TOO_LONG",
        "OK",
    ]
    assert peak < MAX_RECORD_BYTES


def test_a_long_last_line_without_a_line_break_is_rejected() -> None:
    spec = ImportSpec(unit="mall", mapping=ColumnMapping("no"))

    rows = read([b"no\nM1\n", *ten_megabytes(newline=b"")], spec)

    assert [r.number for r in rows] == [1, 2]
    assert rejected(rows[1]).reason == "LINE_TOO_LONG"


def test_a_header_too_long_fails_the_file() -> None:
    spec = ImportSpec(unit="mall", mapping=ColumnMapping("no"))

    with pytest.raises(ImportFileError) as refused:
        read(ten_megabytes(), spec)

    assert refused.value.reason == "LINE_TOO_LONG"


def test_a_line_of_exactly_the_limit_is_read() -> None:
    spec = ImportSpec(unit="mall", mapping=ColumnMapping("no", region="note"))
    line = b"M1," + b"r" * (MAX_RECORD_BYTES - 4) + b"\n"
    assert len(line) == MAX_RECORD_BYTES

    rows = read([b"no,note\n", line, b"M2,", b"r" * (MAX_RECORD_BYTES - 3) + b"\n"], spec)

    assert [rejected(r).reason for r in rows] == ["VALUE_TOO_LONG", "LINE_TOO_LONG"]


# --- JSON Lines -----------------------------------------------------------------------------------
JSONL = ImportSpec(unit="cinema", mapping=MALL, format=ImportFormat.JSON_LINES, tier_mapping=TIERS)


def jsonl(*lines: object) -> bytes:
    return b"".join(
        (line if isinstance(line, bytes) else json.dumps(line, ensure_ascii=False).encode()) + b"\n"
        for line in lines
    )


def test_json_lines_with_numbers_booleans_nulls_and_a_tag_array() -> None:
    line = {
        "会员号": 100234,
        "手机": 13812345678,
        "姓名": "李伟",
        "生日": None,
        "标签": ["bu:cinema", "vip:gold"],
        "积分": 500,
        "短信同意": True,
        "unused": {"nested": [1, 2]},
    }

    row = parsed(one(jsonl(line), JSONL))

    assert row.identities == (
        ChannelIdentity("legacy:cinema", "100234"),
        ChannelIdentity("phone", "+8613812345678"),
    )
    assert (row.name, row.birthday, row.tags, row.legacy_points) == (
        "李伟",
        None,
        ("bu:cinema", "vip:gold"),
        500,
    )
    assert row.consents == (RowConsent(SMS, True, None),)


def test_json_lines_are_numbered_by_line_and_bad_lines_rejected() -> None:
    data = jsonl(
        {"会员号": "C1"},
        b"",
        [1, 2],
        b'{"\xe4\xbc\x9a\xe5\x91\x98\xe5\x8f\xb7": "C4"',
        {"会员号": "C5", "姓名": {"first": "Wei"}},
        {"会员号": "C6", "积分": -3},
        {"会员号": "C7", "姓名": "Li\u0007"},
        b'{"\xe4\xbc\x9a\xe5\x91\x98\xe5\x8f\xb7": "C8", "x": "\xff"}',
        {"会员号": "C9", "积分": 1.5e3},
    )

    rows = read(data, JSONL)

    assert [(r.number, r.reason if isinstance(r, RejectedRow) else "OK") for r in rows] == [
        (1, "OK"),
        (3, "INVALID_JSON"),
        (4, "INVALID_JSON"),
        (5, "INVALID_JSON"),
        (6, "NEGATIVE_BALANCE"),
        (7, "CONTROL_CHARACTERS"),
        (8, "INVALID_ENCODING"),
        (9, "OK"),
    ]
    assert 'key "姓名"' in rejected(rows[3]).detail
    assert parsed(rows[-1]).legacy_points == 1500


def test_a_json_lines_file_that_does_not_begin_as_utf8_is_refused() -> None:
    with pytest.raises(ImportFileError) as refused:
        read(jsonl({"会员号": "C1"}).decode().encode("utf-16"), JSONL)

    assert refused.value.reason == "INVALID_ENCODING"


def test_json_lines_with_a_byte_order_mark_and_crlf() -> None:
    data = b"\xef\xbb\xbf" + jsonl({"会员号": "C1"}).replace(b"\n", b"\r\n")

    assert parsed(one(data, JSONL)).legacy.value == "C1"


@pytest.mark.parametrize("data", [b"", b"\n\n", b"\xef\xbb\xbf"])
def test_an_empty_json_lines_file_is_refused(data: bytes) -> None:
    with pytest.raises(ImportFileError) as refused:
        read(data, JSONL)

    assert refused.value.reason == "EMPTY_FILE"
