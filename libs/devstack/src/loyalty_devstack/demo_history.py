"""The demo's generated history: the Huayue units' legacy members (legacy_files.py, with a known
overlap) and about two years of their past orders at the mall, the hotel and the cinema, so the
insights figures (RFM, cross-unit activity, cohorts, lifetime value) have something to say on
`make run`.

Each account (a person's membership of one unit) buys as the lifetime value models assume
customers do: it joined its unit's programme at a time drawn uniformly over the history (the
member files say when) and made its first order then, buys
again as a Poisson process at a rate of its own (Gamma across accounts, the unit's mean), and
stops at the end of a lifetime of its own (exponential, the unit's mean); each order's amount is
Gamma around an average spend of the account's own. Everything follows from the seed and the
history's end, the first day of the current month (UTC): within a month the same settings make
the same files byte for byte.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from google.protobuf.message import Message
from loyalty.identity.v1 import member_import_pb2, order_import_pb2
from loyalty_admin.imports.client import Imports, connected
from loyalty_admin.imports.kinds import MEMBERS, ORDERS, PART_BYTES, Kind
from loyalty_admin.imports.spec import request_id
from loyalty_kit.settings import Settings
from pydantic_settings import BaseSettings, SettingsConfigDict

from loyalty_devstack import legacy_files as lf
from loyalty_devstack.demo_caller import Part

ORDER_HEADER = ["member_no", "order_id", "amount", "occurred_at"]
ORDER_MAPPING = {
    "legacy_number": "member_no",
    "order_id": "order_id",
    "amount": "amount",
    "occurred_at": "occurred_at",
}


class HistorySettings(BaseSettings):
    """`LOYALTY_DEMO_HISTORY_ROWS` legacy accounts over the three units (0: no history),
    `LOYALTY_DEMO_HISTORY_SEED`, `LOYALTY_DEMO_HISTORY_DAYS` of orders before the current
    month, `LOYALTY_DEMO_HISTORY_OVERLAP` the share of accounts of people in two units."""

    model_config = SettingsConfigDict(env_prefix="LOYALTY_DEMO_HISTORY_", extra="ignore")

    rows: int = 6_000
    seed: int = 18
    days: int = 730
    overlap: float = 0.3


NO_HISTORY = HistorySettings(rows=0)  # the demo without its history (benchmarks, fault runs)


@dataclass(frozen=True)
class Behaviour:
    """How a unit's customers buy: mean days between orders, its spread across accounts
    (the Gamma shape of the rate), mean lifetime in days, mean spend per order (CNY)."""

    days_between: float
    rate_shape: float
    lifetime_days: float
    spend: float


BEHAVIOUR = {
    "mall": Behaviour(days_between=30, rate_shape=1.5, lifetime_days=540, spend=300),
    "hotel": Behaviour(days_between=120, rate_shape=1.0, lifetime_days=720, spend=900),
    "cinema": Behaviour(days_between=45, rate_shape=1.2, lifetime_days=360, spend=120),
}
POLL_SECONDS = 0.5
SPEND_P, SPEND_Q = 4.0, 4.0  # an order's amount, Gamma-Gamma (see account_orders)


def history_end(now: datetime) -> datetime:
    """The first moment of `now`'s month (UTC): the history stops before it."""
    now = now.astimezone(UTC)
    return datetime(now.year, now.month, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Order:
    account: str  # the unit's legacy number
    order_id: str
    amount: Decimal
    at: datetime


def legacy_accounts(history: HistorySettings, end: datetime) -> lf.Truth:
    """The history's legacy accounts, each joined in `[end - days, end - 30 days)`."""
    return lf.accounts(
        history.rows,
        overlap=history.overlap,
        seed=history.seed,
        joined_between=(end - timedelta(days=history.days), end - timedelta(days=30)),
    )


def account_orders(account: lf.Account, *, seed: int, end: datetime, days: int) -> Iterator[Order]:
    """One account's orders in `[end - days, end)`, from its own seeded generator."""
    rng = random.Random(f"{seed}:{account.number}")
    how = BEHAVIOUR[account.unit]
    start = end - timedelta(days=days)
    rate = rng.gammavariate(how.rate_shape, 1 / (how.days_between * how.rate_shape))
    # Gamma-Gamma's story: the account's spend rate nu is Gamma(q, rate v), an order's amount
    # Gamma(p, rate nu); its mean over accounts p v / (q - 1) is the unit's mean spend.
    nu = rng.gammavariate(SPEND_Q, 1 / (how.spend * (SPEND_Q - 1) / SPEND_P))
    at = account.joined or start + timedelta(seconds=rng.uniform(0, (days - 30) * 86_400))
    gone = min(end, at + timedelta(days=rng.expovariate(1 / how.lifetime_days)))
    n = 0
    while at < gone:
        amount = rng.gammavariate(SPEND_P, 1 / nu)
        n += 1
        yield Order(
            account.number,
            f"{account.number}-{n:04d}",
            Decimal(f"{max(amount, 1.0):.2f}"),
            at.replace(microsecond=0),
        )
        at += timedelta(days=rng.expovariate(rate))


def orders(truth: lf.Truth, unit: str, *, seed: int, end: datetime, days: int) -> list[Order]:
    """Every order of the unit's accounts, by account then time."""
    mine = sorted((a for a in truth.all() if a.unit == unit), key=lambda a: a.number)
    return [o for a in mine for o in account_orders(a, seed=seed, end=end, days=days)]


def order_file(found: list[Order]) -> bytes:
    """The unit's order export: CSV in UTF-8, member_no, order_id, amount, occurred_at."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(ORDER_HEADER)
    for o in found:
        writer.writerow([o.account, o.order_id, str(o.amount), o.at.isoformat()])
    return buffer.getvalue().encode("utf-8")


def member_file(truth: lf.Truth, unit: str) -> bytes:
    return b"".join(lf.lines(truth, unit))


def member_spec(unit: str) -> member_import_pb2.MemberImportSpec:
    """The unit's member import as an operator's mapping file says it (docs/member-import.md)."""
    return member_import_pb2.MemberImportSpec(
        unit=unit,
        format=(
            member_import_pb2.IMPORT_FORMAT_JSON_LINES
            if lf.FORMATS[unit] == "jsonl"
            else member_import_pb2.IMPORT_FORMAT_CSV
        ),
        encoding=lf.ENCODINGS[unit],
        mapping=member_import_pb2.ColumnMapping(**dict[str, Any](lf.MAPPINGS[unit])),
        tier_mapping=lf.TIER_MAPPINGS[unit],
        file_name=f"demo-{unit}.{'jsonl' if lf.FORMATS[unit] == 'jsonl' else 'csv'}",
    )


def order_spec(unit: str) -> order_import_pb2.OrderImportSpec:
    """The unit's past orders, as qualifying activity only (the default mode)."""
    return order_import_pb2.OrderImportSpec(
        unit=unit,
        format=member_import_pb2.IMPORT_FORMAT_CSV,
        mapping=order_import_pb2.OrderColumnMapping(**ORDER_MAPPING),
        mode=order_import_pb2.ORDER_IMPORT_MODE_ACTIVITY_ONLY,
        file_name=f"demo-{unit}-orders.csv",
    )


async def _parts(content: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(content), PART_BYTES):
        yield content[start : start + PART_BYTES]


async def _import(imports: Imports, kind: Kind, spec: Message, content: bytes) -> tuple[Any, bool]:
    """Upload the file as `loyalty-admin imports create` does (its request id: the file's
    SHA-256 and the spec, so the same file again is the same import) and wait for it to end;
    the import and whether this call made it."""
    sha256 = hashlib.sha256(content).hexdigest()
    asked = datetime.now(UTC)
    created = await imports.create(kind, spec, request_id(kind, sha256, spec), _parts(content))
    # An import made before this call (the same request id answers it) was created before it
    # was asked for; the suite's services share this machine's clock.
    made = created.create_time.ToDatetime(tzinfo=UTC) >= asked
    found = created
    while found.state == member_import_pb2.MemberImport.STATE_RUNNING:
        await asyncio.sleep(POLL_SECONDS)
        found = await imports.get(kind, created.name)
    if found.state != member_import_pb2.MemberImport.STATE_SUCCEEDED:
        state = member_import_pb2.MemberImport.State.Name(found.state)
        raise RuntimeError(f"demo: {found.name} ended {state}: {found.error.message}")
    return found, made


async def load(settings: Settings, history: HistorySettings | None = None) -> list[Part]:
    """Import each unit's legacy members, then each unit's past orders, the way an operator
    would; nothing when `rows` is 0."""
    history = history or HistorySettings()
    if history.rows <= 0:
        return []
    end = history_end(datetime.now(UTC))
    accounts = legacy_accounts(history, end)
    loaded_members = loaded_orders = False
    order_count = 0
    async with connected(settings) as imports:
        for unit in lf.UNITS:
            _, made = await _import(
                imports, MEMBERS, member_spec(unit), member_file(accounts, unit)
            )
            loaded_members |= made
        for unit in lf.UNITS:
            content = order_file(
                orders(accounts, unit, seed=history.seed, end=end, days=history.days)
            )
            found, made = await _import(imports, ORDERS, order_spec(unit), content)
            loaded_orders |= made
            order_count += found.progress.imported + found.progress.duplicates
    return [
        Part(f"{accounts.rows():,} legacy members of {accounts.people:,} people", loaded_members),
        Part(f"{order_count:,} past orders", loaded_orders),
    ]
