"""Generated legacy member files of Huayue's units, with known overlaps, and calling the
MemberImportService as a unit's importer would: the files a test makes, the people behind their
rows, uploads in parts, waiting for an import to end, its report and its events on the bus."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import grpc
from loyalty.identity.v1 import events_pb2, member_import_pb2_grpc
from loyalty.identity.v1 import member_import_pb2 as pb
from loyalty_devstack.testing import metadata_for
from loyalty_kit import events
from loyalty_kit.caller import Caller
from loyalty_kit.settings import Settings

from tests.support.events import stream_messages

SMS = "CONSENT_PURPOSE_MARKETING_SMS"
GIVEN_NAMES = ("伟", "芳", "娜", "敏", "静", "磊", "洋", "艳", "勇", "军")
FAMILY_NAMES = ("王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周")


def importer(unit: str) -> Caller:
    """A unit's client that imports its legacy members."""
    return Caller(unit=unit, client_id=f"{unit}-crm", scopes=frozenset({"members:import"}))


@dataclass
class Person:
    """Someone a unit's legacy system knows, and what each unit calls them."""

    index: int
    phone: str  # national number, as legacy systems keep it
    email: str
    unionid: str
    name: str
    birthday: date
    legacy: dict[str, list[str]] = field(default_factory=dict)  # unit -> legacy numbers

    @property
    def e164(self) -> str:
        return f"+86{self.phone}"


PHONE_STRIDE = 7919  # prime to 10**8: k -> k * stride mod 10**8 never repeats within 10**8
_next_phone = secrets.randbelow(10**8)  # where this test process's phones begin


def population(count: int) -> list[Person]:
    """`count` people no other test has (their phones, e-mails and unionids are fresh). The
    phones of one process's populations never repeat: each takes the next numbers of one walk
    (random ones collided once the session had imported tens of thousands of rows). They begin
    158, which no other test's numbers do: a 139 number another test drew at random, or a
    fixed one of the Huayue examples, was once already a member when the walk reached it."""
    global _next_phone
    tag = secrets.token_hex(4)
    base, _next_phone = _next_phone, _next_phone + count
    people = []
    for i in range(count):
        people.append(
            Person(
                index=i,
                phone=f"158{(base + i) * PHONE_STRIDE % 10**8:08d}",
                email=f"p{i}.{tag}@example.com",
                unionid=f"oU{tag}{i:014d}",
                name=FAMILY_NAMES[i % 10] + GIVEN_NAMES[(i // 10) % 10],
                birthday=date(1970 + i % 40, 1 + i % 12, 1 + i % 28),
            )
        )
    return people


def legacy_number(unit: str, person: Person, card: int = 0) -> str:
    number = f"{unit[0].upper()}{secrets.token_hex(5)}{person.index}-{card}"
    person.legacy.setdefault(unit, []).append(number)
    return number


def csv_bytes(
    header: Sequence[str], rows: Iterable[Sequence[str]], encoding: str = "utf-8"
) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue().encode(encoding)


# --- Huayue's three units -----------------------------------------------------------------------
MALL_MAPPING = pb.ColumnMapping(
    legacy_number="card_no",
    phone="mobile",
    name="name",
    gender="gender",
    birthday="birthday",
    points_balance="points",
    points_expire_at="points_expiry",
    tier="level",
    tags="tags",
    consents=[pb.ConsentColumns(purpose=SMS, granted="sms_ok", changed_at="sms_at")],
)
MALL_HEADER = (
    "card_no",
    "mobile",
    "name",
    "gender",
    "birthday",
    "points",
    "points_expiry",
    "level",
    "tags",
    "sms_ok",
    "sms_at",
)


def mall_file(people: Sequence[Person], second_card: Sequence[Person] = ()) -> bytes:
    """The mall's card members (UTF-8 CSV): a phone each; some people hold two cards."""
    rows = []
    for person in people:
        for card in range(2 if person in second_card else 1):
            rows.append(
                (
                    legacy_number("mall", person, card),
                    person.phone,
                    person.name,
                    "女" if person.index % 2 else "男",
                    person.birthday.isoformat(),
                    str(100 * (person.index + 1)),
                    "2027-12-31",
                    "金卡" if person.index % 5 == 0 else "普通卡",
                    "bu:mall",
                    "是" if person.index % 3 else "否",
                    "2024-05-01",
                )
            )
    return csv_bytes(MALL_HEADER, rows)


def mall_spec(**options: Any) -> pb.MemberImportSpec:
    return pb.MemberImportSpec(
        unit="mall",
        format=pb.IMPORT_FORMAT_CSV,
        mapping=MALL_MAPPING,
        tier_mapping={"金卡": "gold"},
        file_name="mall-members.csv",
        **options,
    )


HOTEL_HEADER = ("会员号", "手机", "邮箱", "姓名", "积分", "等级", "入会日期")


def hotel_joined(person: Person) -> date:
    """When the person joined the hotel's programme (the file says so for odd indexes)."""
    return date(2015, 1, 1) + timedelta(days=37 * person.index)


def hotel_file(people: Sequence[Person], with_phone: Sequence[Person]) -> bytes:
    """The hotel's programme (GB18030 CSV, as its system exports): an e-mail each, the phone
    of some."""
    rows = [
        (
            legacy_number("hotel", person),
            person.phone if person in with_phone else "",
            person.email,
            person.name,
            str(1000 + person.index),
            "白金" if person.index % 4 == 0 else "",
            hotel_joined(person).isoformat() if person.index % 2 else "",
        )
        for person in people
    ]
    return csv_bytes(HOTEL_HEADER, rows, "gb18030")


def hotel_spec() -> pb.MemberImportSpec:
    return pb.MemberImportSpec(
        unit="hotel",
        format=pb.IMPORT_FORMAT_CSV,
        encoding="GBK",  # as the hotel's system calls it: read as GB18030, which extends it
        mapping=pb.ColumnMapping(
            legacy_number="会员号",
            phone="手机",
            email="邮箱",
            name="姓名",
            points_balance="积分",
            tier="等级",
            joined_at="入会日期",
        ),
        tier_mapping={"白金": "platinum"},
        file_name="酒店会员.csv",
    )


def cinema_file(people: Sequence[Person], with_phone: Sequence[Person]) -> bytes:
    """The cinema's app users (JSON Lines): a WeChat unionid and an e-mail each, the phone of
    some."""
    lines = []
    for person in people:
        item: dict[str, Any] = {
            "uid": legacy_number("cinema", person),
            "unionid": person.unionid,
            "mail": person.email,
            "points": 50 * person.index,
        }
        if person in with_phone:
            item["tel"] = person.phone
        lines.append(json.dumps(item, ensure_ascii=False))
    return ("\n".join(lines) + "\n").encode()


def cinema_spec() -> pb.MemberImportSpec:
    return pb.MemberImportSpec(
        unit="cinema",
        format=pb.IMPORT_FORMAT_JSON_LINES,
        mapping=pb.ColumnMapping(
            legacy_number="uid",
            phone="tel",
            email="mail",
            wechat_unionid="unionid",
            points_balance="points",
        ),
        file_name="cinema-users.jsonl",
    )


class FailingNow(datetime):
    """An import's time that fails the reader on the first row time compared with it, quoting
    that time (as an unexpected error's text may quote a row's values). Picklable: the worker
    process reading the file gets it as the import's creation time."""

    def __lt__(self, other: object) -> bool:
        raise ValueError(f"cannot place {other} of the row")

    def __gt__(self, other: object) -> bool:
        raise ValueError(f"cannot place {other} of the row")


# --- calling the service ------------------------------------------------------------------------
def stub(channel: grpc.aio.Channel) -> member_import_pb2_grpc.MemberImportServiceStub:
    return member_import_pb2_grpc.MemberImportServiceStub(channel)


async def messages(
    spec: pb.MemberImportSpec, content: bytes, request_id: str, part: int
) -> AsyncIterator[pb.CreateMemberImportRequest]:
    yield pb.CreateMemberImportRequest(request_id=request_id, spec=spec)
    for start in range(0, len(content), part):
        yield pb.CreateMemberImportRequest(content=content[start : start + part])


async def upload(
    channel: grpc.aio.Channel,
    caller: Caller,
    spec: pb.MemberImportSpec,
    content: bytes,
    *,
    request_id: str = "",
    part: int = 4096,
) -> pb.MemberImport:
    """The file sent in parts of `part` bytes (split anywhere, as a client may)."""
    answer = await stub(channel).CreateMemberImport(
        messages(spec, content, request_id or uuid.uuid4().hex, part),
        metadata=metadata_for(caller),
        timeout=60,
    )
    made: pb.MemberImport = answer.member_import
    return made


async def get(channel: grpc.aio.Channel, caller: Caller, name: str) -> pb.MemberImport:
    answer = await stub(channel).GetMemberImport(
        pb.GetMemberImportRequest(name=name), metadata=metadata_for(caller), timeout=15
    )
    found: pb.MemberImport = answer.member_import
    return found


async def ended(
    channel: grpc.aio.Channel, caller: Caller, name: str, timeout: float = 60
) -> pb.MemberImport:
    """The import once it is no longer RUNNING."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await get(channel, caller, name)
        if found.state != pb.MemberImport.STATE_RUNNING:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{name} still running: {found.progress}")
        await asyncio.sleep(0.1)


async def imported(
    channel: grpc.aio.Channel, caller: Caller, spec: pb.MemberImportSpec, content: bytes
) -> pb.MemberImport:
    """Upload and wait for the end."""
    made = await upload(channel, caller, spec, content)
    return await ended(channel, caller, made.name)


async def report(
    channel: grpc.aio.Channel,
    caller: Caller,
    name: str,
    outcome: pb.ImportRowOutcome.ValueType = pb.IMPORT_ROW_OUTCOME_UNSPECIFIED,
    page_size: int = 0,
) -> list[pb.MemberImportRow]:
    """Every row of an import's report, page by page."""
    rows: list[pb.MemberImportRow] = []
    token = ""
    while True:
        page = await stub(channel).ListMemberImportRows(
            pb.ListMemberImportRowsRequest(
                parent=name, outcome=outcome, page_size=page_size, page_token=token
            ),
            metadata=metadata_for(caller),
            timeout=15,
        )
        rows += page.rows
        token = page.next_page_token
        if not token:
            return rows


async def imported_events(
    settings: Settings, name: str, settle: float = 0.5
) -> list[events_pb2.MembersImported]:
    """The MembersImported events of an import on the bus (read again after `settle` seconds,
    so a late one is seen too)."""
    client = await events.connect(settings.nats_url, "identity-import-tests")
    js = client.jetstream()
    stream = events.stream_name(settings.event_namespace, "identity")
    subject = events.subject_of(
        events_pb2.MembersImported.DESCRIPTOR.full_name, settings.event_namespace
    )

    async def read() -> list[events_pb2.MembersImported]:
        read = (
            events_pb2.MembersImported.FromString(msg.data)
            for msg in await stream_messages(js, subject, stream)
        )
        return [event for event in read if event.member_import == name]

    try:
        await asyncio.sleep(settle)
        return await read()
    finally:
        await client.close()
