"""An import's rows read in a worker process: what crosses the process boundary becomes the same
rows the reader makes in the service's process, with the identities' blind indexes made there;
a file that cannot be read fails the same way."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from loyalty_identity.adapters.crypto import AheadSealer, Keyring, new_key_text, sealed_as, unseal
from loyalty_identity.adapters.row_process import (
    ProcessRowSource,
    member_plain,
    member_reader,
    member_row,
    order_plain,
    order_reader,
    order_row,
    prepared,
)
from loyalty_identity.domain.identities import IdentityKind, IdentityType
from loyalty_identity.domain.imports import (
    ColumnMapping,
    ConsentColumns,
    ImportFileError,
    ImportSpec,
    ParsedRow,
    RejectedRow,
)
from loyalty_identity.domain.order_import import (
    OrderColumnMapping,
    OrderImportSpec,
    ParsedOrder,
)

NOW = datetime(2026, 3, 1, 4, tzinfo=UTC)
ZONE = "Asia/Shanghai"
KEYRING = Keyring.parse(f"k1:{new_key_text()}", new_key_text())
TYPES = {
    "phone": IdentityType("phone", IdentityKind.PHONE),
    "email": IdentityType("email", IdentityKind.EMAIL),
    "store_card": IdentityType("store_card", IdentityKind.TOKEN, r"[0-9A-Z]{6,32}"),
}
MEMBER_SPEC = ImportSpec(
    unit="mall",
    mapping=ColumnMapping(
        legacy_number="会员号",
        phone="手机",
        email="邮箱",
        card_number="卡号",
        name="姓名",
        gender="性别",
        birthday="生日",
        tags="标签",
        points_balance="积分",
        points_expire_at="到期",
        tier="等级",
        consents=(ConsentColumns("CONSENT_PURPOSE_MARKETING_SMS", "短信", "短信时间"),),
    ),
    tier_mapping={"金卡": "gold"},
)
MEMBER_FILE = (
    "会员号,手机,邮箱,卡号,姓名,性别,生日,标签,积分,到期,等级,短信,短信时间\n"
    + "".join(
        f"M{i:05},1380013{i:04},p{i}@example.com,CARD{i:06},李{i},女,"
        f"1990-0{i % 9 + 1}-1{i % 9},bu:vip;bu:new,{i * 10},2026-12-31,"
        f"{'金卡' if i % 3 else '银卡'},{'是' if i % 2 else '否'},2024-05-01\n"
        for i in range(1, 2501)
    )
    + "M 9,12,bad,,,,,,,,,,\n"  # refused: an invalid legacy number
    + "M02600,,,,,,2099-01-01,,,,,,\n"  # refused: a birthday in the future
).encode()
ORDER_SPEC = OrderImportSpec(
    unit="mall",
    mapping=OrderColumnMapping(
        order_id="单号", amount="金额", occurred_at="时间", legacy_number="会员号", phone="手机"
    ),
)
ORDER_FILE = (
    "会员号,手机,单号,金额,时间\n"
    + "".join(f"M{i:05},1380013{i:04},O-{i},{i}.5,2025-0{i % 9 + 1}-01\n" for i in range(1, 1501))
    + ",,O-x,1,2025-01-01\n"  # refused: no member
).encode()


def parts(content: bytes, size: int = 7_777) -> Iterator[bytes]:
    return (content[at : at + size] for at in range(0, len(content), size))


def test_a_member_row_crosses_as_plain_values_and_comes_back_the_same() -> None:
    inline = list(member_reader(MEMBER_SPEC, TYPES, NOW, ZONE).rows(parts(MEMBER_FILE)))
    assert sum(isinstance(r, RejectedRow) for r in inline) == 2
    assert {n for r in inline if isinstance(r, ParsedRow) for n in r.notes} == {"UNMAPPED_TIER"}

    crossed = [member_row(member_plain(r, KEYRING.index_key)) for r in inline]

    assert crossed == inline
    for before, after in zip(inline, crossed, strict=True):
        assert type(before) is type(after)
        if isinstance(after, ParsedRow) and isinstance(before, ParsedRow):
            assert after.consents == before.consents and after.birthday == before.birthday
            assert after.indexes == tuple(KEYRING.blind_index(i) for i in after.identities)


def test_a_member_row_crosses_with_its_data_sealed_for_the_member_it_would_make() -> None:
    inline = list(member_reader(MEMBER_SPEC, TYPES, NOW, ZONE).rows(parts(MEMBER_FILE)))
    sealer = AheadSealer(KEYRING.active_key_id, KEYRING.master_keys[KEYRING.active_key_id])

    crossed = [member_row(member_plain(r, KEYRING.index_key, sealer)) for r in inline]

    assert crossed == inline  # the same rows; what was sealed ahead rides along
    parsed = [r for r in crossed if isinstance(r, ParsedRow)]
    assert len({r.sealed.member_id for r in parsed if r.sealed}) == len(parsed) == 2500
    for row in parsed[:50]:
        sealed = row.sealed
        assert sealed is not None and row.birthday is not None
        member = sealed.member_id
        key = KEYRING.unwrap(member, sealed.key_id, sealed.wrapped_key)  # as the service does
        assert key == sealed.data_key
        opened = [
            unseal(key, value, sealed_as(member, f"identity/{i.type}"))
            for i, value in zip(row.identities, sealed.identities, strict=True)
        ]
        assert opened == [i.value for i in row.identities]
        assert sealed.name is not None and sealed.birthday is not None
        assert unseal(key, sealed.name, sealed_as(member, "full_name")) == row.name
        assert unseal(key, sealed.birthday, sealed_as(member, "birthday")) == (
            row.birthday.isoformat()
        )
    unsealed = [member_row(member_plain(r, KEYRING.index_key)) for r in parsed]
    assert all(isinstance(r, ParsedRow) and r.sealed is None for r in unsealed)


def test_an_order_row_crosses_as_plain_values_and_comes_back_the_same() -> None:
    inline = list(order_reader(ORDER_SPEC, NOW, ZONE).rows(parts(ORDER_FILE)))
    crossed = [order_row(order_plain(r, KEYRING.index_key)) for r in inline]

    assert crossed == inline
    orders = [r for r in crossed if isinstance(r, ParsedOrder)]
    assert len(orders) == 1500 and orders[0].amount == Decimal("1.5")
    indexes = prepared(crossed)
    assert indexes == {i: KEYRING.blind_index(i) for o in orders for i in o.identities}


def test_a_file_read_in_a_worker_process_gives_the_rows_and_bytes_read_inline() -> None:
    reader = member_reader(MEMBER_SPEC, TYPES, NOW, ZONE)
    inline = list(reader.rows(parts(MEMBER_FILE)))
    source = ProcessRowSource(
        "member", (MEMBER_SPEC, TYPES, NOW, ZONE), KEYRING.index_key, member_row
    )

    offsets: list[int] = []
    rows = []
    for row in source.rows(parts(MEMBER_FILE)):
        rows.append(row)
        offsets.append(source.bytes_read)

    assert rows == inline
    assert offsets == sorted(offsets) and source.bytes_read == reader.bytes_read
    assert all(r.indexes for r in rows if isinstance(r, ParsedRow))


def test_a_file_the_worker_process_cannot_read_fails_as_inline() -> None:
    source = ProcessRowSource("order", (ORDER_SPEC, NOW, ZONE), KEYRING.index_key, order_row)
    with pytest.raises(ImportFileError) as refused:
        list(source.rows(iter([b"\xef\xbb\xbf\xe4\xbc\x9a,x\n"])))
    assert refused.value.reason == "MISSING_COLUMNS"
