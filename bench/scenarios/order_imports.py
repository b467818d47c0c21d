"""The identity side of bringing past orders in: `--import-rows` orders (default 200,000) of
20,000 members, uploaded with CreateOrderImport and followed to the end. The goal downstream is
50,000 orders a second into tiers' activity: identity's part (reading, resolving each order's
member, claiming its order ID, the report and one LegacyOrdersImported per chunk) must not be
the bottleneck.

- `order-import`: the identity service (start_service, migrations on, NATS relay running);
  its members bulk-loaded (each with a `legacy:mall` number, a tenth of the orders by phone),
  the file uploaded and followed to SUCCEEDED, then checked: every order imported. `extra`
  holds the reader's own rate over the same file (the parse alone, in this process) and the
  service's rows/s as its progress reports it. No ceiling: its number is compared with the
  50,000 orders/s goal.
"""

from __future__ import annotations

import asyncio
import io
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import grpc
from loyalty.identity.v1 import order_import_pb2 as pb
from loyalty.identity.v1 import order_import_pb2_grpc
from loyalty.identity.v1.member_import_pb2 import MemberImport
from loyalty_identity.adapters.crypto import Keyring, new_key_text
from loyalty_identity.app import SPEC
from loyalty_identity.domain.identities import ChannelIdentity
from loyalty_identity.domain.order_file import OrderFileReader
from loyalty_identity.domain.order_import import OrderColumnMapping, OrderImportSpec, ParsedOrder
from loyalty_kit.db import asyncpg_params
from loyalty_kit.server import start_service
from sqlalchemy.engine import make_url

from bench.context import BenchContext
from bench.members import IDENTITY_COLUMNS, KEY_COLUMNS, MEMBER_COLUMNS
from bench.registry import Measurement, scenario
from bench.scenarios.identity import _environment as environment
from bench.scenarios.imports import CpuSplit

DEFAULT_ORDERS = 200_000
MEMBERS = 20_000
PART = 1 << 20
ADMIN = (
    ("x-loyalty-unit", "group"),
    ("x-loyalty-client", "bench"),
    ("x-loyalty-scopes", "admin"),
)
HEADER = "card_no,mobile,order_no,amount,paid_at\n"


def _progress(text: str) -> None:
    print(f"bench: order imports: {text}", file=sys.stderr, flush=True)


def _phone(member: int) -> str:
    return f"139{member:08d}"


def orders_file(count: int) -> bytes:
    """`count` orders of `MEMBERS` members: nine in ten by legacy number, one by phone."""
    out = io.StringIO()
    out.write(HEADER)
    for i in range(count):
        member = i % MEMBERS
        who = f"M{member:07d}," if i % 10 else f",{_phone(member)}"
        day = 1 + i % 28
        out.write(f"{who},ORD{i:09d},{(i % 5000) + 0.5:.2f},2025-{1 + i % 12:02d}-{day:02d}\n")
    return out.getvalue().encode()


async def _load_members(url: str, keyring: Keyring) -> None:
    """The members an earlier member import would have made: ids, keys, two identities each
    (sealed values are not read by an order import: placeholders)."""
    now = datetime.now(UTC)
    members, keys, identities = [], [], []
    for n in range(MEMBERS):
        member_id = str(uuid.uuid4())
        members.append((member_id, "active", None, "mall", "CHANNEL_IMPORT", "", now, now))
        keys.append((member_id, "bench1", b"\0" * 60))
        for identity in (
            ChannelIdentity("legacy:mall", f"M{n:07d}"),
            ChannelIdentity("phone", f"+86{_phone(n)}"),
        ):
            identities.append(
                (member_id, identity.type, keyring.blind_index(identity), b"\0" * 40, now)
            )
    conn = await asyncpg.connect(**asyncpg_params(make_url(url)))
    try:
        async with conn.transaction():
            await conn.copy_records_to_table("members", records=members, columns=MEMBER_COLUMNS)
            await conn.copy_records_to_table("member_keys", records=keys, columns=KEY_COLUMNS)
            await conn.copy_records_to_table(
                "identities", records=identities, columns=IDENTITY_COLUMNS
            )
    finally:
        await conn.close()


def _reader_rate(content: bytes) -> float:
    spec = OrderImportSpec(
        unit="mall",
        mapping=OrderColumnMapping(
            legacy_number="card_no",
            phone="mobile",
            order_id="order_no",
            amount="amount",
            occurred_at="paid_at",
        ),
    )
    reader = OrderFileReader(spec, now=datetime.now(UTC))
    started = time.perf_counter()
    parsed = sum(
        isinstance(r, ParsedOrder)
        for r in reader.rows(content[i : i + PART] for i in range(0, len(content), PART))
    )
    seconds = time.perf_counter() - started
    assert parsed == content.count(b"\n") - 1, parsed
    return parsed / seconds


@scenario("order-import")
async def order_import(ctx: BenchContext) -> Measurement:
    """One file of past orders through the identity service's CreateOrderImport, followed to
    the end; orders/s from the upload's start to the import's end."""
    count = ctx.import_rows or DEFAULT_ORDERS
    content = orders_file(count)
    reader_rate = _reader_rate(content)
    _progress(f"{count:,} orders ({len(content) / 1e6:.1f} MB); reader alone {reader_rate:,.0f}/s")
    master, index = f"bench1:{new_key_text()}", new_key_text()
    keyring = Keyring.parse(master, index)
    settings = ctx.settings(database_prefix=f"{ctx.run_id}_ord_")
    with environment({"LOYALTY_IDENTITY_KEYS": master, "LOYALTY_IDENTITY_BLIND_INDEX_KEY": index}):
        server = await start_service(SPEC, settings, port=0)
    try:
        await server.wait_until_serving()
        await _load_members(str(settings.service_database_url("identity")), keyring)
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = order_import_pb2_grpc.OrderImportServiceStub(channel)
            spec = pb.OrderImportSpec(
                unit="mall",
                mapping=pb.OrderColumnMapping(
                    legacy_number="card_no",
                    phone="mobile",
                    order_id="order_no",
                    amount="amount",
                    occurred_at="paid_at",
                ),
                file_name="orders.csv",
            )

            async def requests() -> Any:
                yield pb.CreateOrderImportRequest(request_id=f"bench-{ctx.run_id}", spec=spec)
                for start in range(0, len(content), PART):
                    yield pb.CreateOrderImportRequest(content=content[start : start + PART])

            cpu = CpuSplit()
            started = time.perf_counter()
            made = await stub.CreateOrderImport(requests(), metadata=ADMIN)
            name = made.order_import.name
            while True:
                found = (
                    await stub.GetOrderImport(pb.GetOrderImportRequest(name=name), metadata=ADMIN)
                ).order_import
                if found.state != MemberImport.STATE_RUNNING:
                    break
                await asyncio.sleep(0.2)
            seconds = time.perf_counter() - started
    finally:
        await server.stop()
    if found.state != MemberImport.STATE_SUCCEEDED or found.progress.imported != count:
        raise AssertionError(f"{MemberImport.State.Name(found.state)}: {found.progress}")
    return Measurement(
        count=count,
        seconds=seconds,
        concurrency=1,
        unit="orders",
        extra={
            "members": MEMBERS,
            "file_mb": round(len(content) / 1e6, 1),
            "reader_orders_per_s": round(reader_rate),
            "service_rows_per_s": found.progress.rows_per_second,
            "goal_orders_per_s": 50_000,
            **cpu.spent(),
        },
    )
