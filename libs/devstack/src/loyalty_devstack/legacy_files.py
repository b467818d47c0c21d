"""Legacy member files as the Huayue units' old systems export them, made up with a known
overlap, for the import's tests, its benchmark and the example in docs/.

Each unit exports in its own shape (docs/member-import.md):
- the mall's card system: CSV in GB18030 with Chinese headers (卡号, 手机号, 姓名, 性别, 生日,
  积分, 积分有效期, 等级, 入会日期);
- the hotel programme: JSON Lines (member_no, mobile, email, name, points, tier, joined);
- the cinema app: CSV in UTF-8 (user_id, phone, unionid, nickname, points, registered_at).

When each account joined its programme is written only when `accounts` is given a period to
draw it from (`joined_between`; the demo's history does), else the column is empty.

A person is known by one phone everywhere (and, when the cinema knows them, one unionid), so the
platform can tell that two units' rows are one person; `overlap` is the share of all rows that
belong to people who are in two units' files. Everything follows from `seed`: the same arguments
make the same files, and `Truth` says which rows are one person.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

UNITS = ("mall", "hotel", "cinema")

MALL_HEADER = ["卡号", "手机号", "姓名", "性别", "生日", "积分", "积分有效期", "等级", "入会日期"]
HOTEL_KEYS = ["member_no", "mobile", "email", "name", "points", "tier", "joined"]
CINEMA_HEADER = ["user_id", "phone", "unionid", "nickname", "points", "registered_at"]

# The column mappings of the three shapes, as MemberImportSpec.mapping takes them.
MAPPINGS: dict[str, dict[str, str]] = {
    "mall": {
        "legacy_number": "卡号",
        "phone": "手机号",
        "name": "姓名",
        "gender": "性别",
        "birthday": "生日",
        "points_balance": "积分",
        "points_expire_at": "积分有效期",
        "tier": "等级",
        "joined_at": "入会日期",
    },
    "hotel": {
        "legacy_number": "member_no",
        "phone": "mobile",
        "email": "email",
        "name": "name",
        "points_balance": "points",
        "tier": "tier",
        "joined_at": "joined",
    },
    "cinema": {
        "legacy_number": "user_id",
        "phone": "phone",
        "wechat_unionid": "unionid",
        "name": "nickname",
        "points_balance": "points",
        "joined_at": "registered_at",
    },
}
FORMATS = {"mall": "csv", "hotel": "jsonl", "cinema": "csv"}
ENCODINGS = {"mall": "gb18030", "hotel": "utf-8", "cinema": "utf-8"}
# Legacy tier names -> the ladder's tiers (the others are not carried over).
TIER_MAPPINGS = {
    "mall": {"金卡": "gold", "白金卡": "platinum"},
    "hotel": {"Gold": "gold", "Platinum": "platinum"},
    "cinema": {},
}
MALL_TIERS = ("普通卡", "银卡", "金卡", "白金卡")
HOTEL_TIERS = ("Classic", "Silver", "Gold", "Platinum")

SHANGHAI = ZoneInfo("Asia/Shanghai")  # where the units' systems keep their dates
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂"


@dataclass(frozen=True)
class Person:
    key: int
    phone: str  # national form, 11 digits
    name: str
    gender: str  # "男" / "女"
    birthday: date
    email: str
    unionid: str


@dataclass(frozen=True)
class Account:
    """One row of one unit's file."""

    unit: str
    number: str
    person: Person
    points: int
    tier: str
    joined: datetime | None = None  # when it joined the unit's programme (UTC)


@dataclass
class Truth:
    """Who is who: each person's accounts, by unit."""

    accounts: dict[int, list[Account]] = field(default_factory=dict)

    @property
    def people(self) -> int:
        return len(self.accounts)

    def rows(self, unit: str | None = None) -> int:
        return sum(1 for a in self.all() if unit is None or a.unit == unit)

    def all(self) -> Iterator[Account]:
        for accounts in self.accounts.values():
            yield from accounts

    def shared(self) -> int:
        """People in two or more units' files."""
        return sum(1 for accounts in self.accounts.values() if len(accounts) > 1)


def person(key: int, seed: int) -> Person:
    rng = random.Random(seed * 1_000_003 + key)
    # 139 + 8 digits from the key: unique per key, valid in CN.
    phone = f"139{key:08d}"
    name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))
    birthday = date(1950, 1, 1) + timedelta(days=rng.randrange(365 * 55))
    return Person(
        key=key,
        phone=phone,
        name=name,
        gender=rng.choice("男女"),
        birthday=birthday,
        email=f"guest{key}@example.com",
        unionid=f"oU{seed:04d}{key:012d}xyz",
    )


def accounts(
    rows: int,
    *,
    overlap: float = 0.3,
    seed: int = 1,
    joined_between: tuple[datetime, datetime] | None = None,
) -> Truth:
    """`rows` accounts over the three units (a third each, near enough), `overlap` of the rows
    belonging to people in two units; with `joined_between`, each account joined its programme
    at a uniform time in it (drawn apart from the rest, so the other fields stay as they are)."""
    if not 0 <= overlap <= 1:
        raise ValueError("overlap is a share, 0..1")
    rng = random.Random(seed)
    shared_people = int(rows * overlap) // 2
    single_people = rows - 2 * shared_people
    truth = Truth()
    counters = dict.fromkeys(UNITS, 0)

    def open_account(unit: str, who: Person) -> Account:
        counters[unit] += 1
        number = {"mall": "M", "hotel": "H", "cinema": "C"}[unit] + f"{counters[unit]:09d}"
        points = rng.choice((0, 0, rng.randrange(1, 50_000)))
        tier = (
            rng.choice(MALL_TIERS)
            if unit == "mall"
            else rng.choice(HOTEL_TIERS)
            if unit == "hotel"
            else ""
        )
        joined = None
        if joined_between is not None:
            first, last = joined_between
            draw = random.Random(f"{seed}:{number}:joined")
            joined = first + timedelta(seconds=draw.uniform(0, (last - first).total_seconds()))
            joined = joined.replace(microsecond=0)
        return Account(unit, number, who, points, tier, joined)

    for key in range(shared_people + single_people):
        who = person(key, seed)
        units = rng.sample(UNITS, 2) if key < shared_people else [UNITS[key % len(UNITS)]]
        truth.accounts[who.key] = [open_account(unit, who) for unit in units]
    return truth


def _mall_row(a: Account) -> list[str]:
    p = a.person
    expiry = "" if not a.points else f"{2027 + a.person.key % 2}-12-31"
    return [
        a.number,
        p.phone,
        p.name,
        p.gender,
        p.birthday.isoformat(),
        str(a.points),
        expiry,
        a.tier,
        a.joined.astimezone(SHANGHAI).date().isoformat() if a.joined else "",
    ]


def _hotel_row(a: Account) -> dict[str, object]:
    p = a.person
    return {
        "member_no": a.number,
        "mobile": "+86 " + p.phone,
        "email": p.email.upper() if p.key % 5 == 0 else p.email,
        "name": p.name,
        "points": a.points,
        "tier": a.tier,
        "joined": a.joined.astimezone(SHANGHAI).isoformat() if a.joined else "",
    }


def _cinema_row(a: Account) -> list[str]:
    p = a.person
    joined = a.joined.astimezone(UTC).isoformat().replace("+00:00", "Z") if a.joined else ""
    return [a.number, p.phone, p.unionid, p.name, str(a.points), joined]


def lines(truth: Truth, unit: str) -> Iterator[bytes]:
    """The unit's file, a line at a time, encoded as the unit exports it."""
    encoding = ENCODINGS[unit]
    mine = sorted((a for a in truth.all() if a.unit == unit), key=lambda a: a.number)
    if unit == "hotel":
        for a in mine:
            yield (json.dumps(_hotel_row(a), ensure_ascii=False) + "\n").encode(encoding)
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(MALL_HEADER if unit == "mall" else CINEMA_HEADER)
    for a in mine:
        writer.writerow(_mall_row(a) if unit == "mall" else _cinema_row(a))
        if buffer.tell() > 1 << 16:
            yield buffer.getvalue().encode(encoding)
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode(encoding)


def write(truth: Truth, folder: Path) -> dict[str, Path]:
    """Each unit's file in `folder` (mall.csv, hotel.jsonl, cinema.csv)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for unit in UNITS:
        path = folder / f"{unit}.{'jsonl' if FORMATS[unit] == 'jsonl' else 'csv'}"
        with path.open("wb") as out:
            for chunk in lines(truth, unit):
                out.write(chunk)
        written[unit] = path
    return written
