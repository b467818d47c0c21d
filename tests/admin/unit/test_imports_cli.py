"""`loyalty-admin imports`, offline and against a stand-in identity service (a real gRPC server in
this process that plays the import's part): the spec file reads as the contract's message with
short enum names and the options over it; the same file and spec are the same request; the
upload streams the spec first and then the file in parts of at most 1 MiB; the progress bar
follows to the end and the exit status says how it ended; Ctrl-C stops following and says how
to follow or cancel the import that goes on."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf import json_format
from loyalty.identity.v1 import member_import_pb2 as pb
from loyalty.identity.v1 import member_import_pb2_grpc, order_import_pb2_grpc
from loyalty.identity.v1 import order_import_pb2 as order_pb
from loyalty_admin.cli import main
from loyalty_admin.imports import parser, progress
from loyalty_admin.imports.kinds import KINDS, MEMBERS, ORDERS, UnknownName, kind_of
from loyalty_admin.imports.spec import SpecError, build_spec, load_spec_file, request_id
from loyalty_devstack import legacy_files
from rich.console import Console

ADMIN = Path(sys.executable).with_name("loyalty-admin")
MIB = 1024 * 1024

MALL_SPEC = """\
unit: mall
encoding: gb18030
mapping:
  legacy_number: 卡号
  phone: 手机号
  points_balance: 积分
  tier: 等级
tier_mapping: {金卡: gold}
auto_merge: phone-and-name
"""


def _spec(tmp_path: Path, text: str = MALL_SPEC, name: str = "mall.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _no_zone() -> str:
    raise AssertionError("no date to end: the time zone is not needed")


def test_the_parser_knows_every_kind() -> None:
    assert list(KINDS) == parser.KIND_KEYS


def test_the_spec_file_is_the_contract_message_with_short_enum_names(tmp_path: Path) -> None:
    data = load_spec_file(_spec(tmp_path))
    spec = build_spec(MEMBERS, data, {}, file=Path("exports/mall.csv"), time_zone=_no_zone)
    assert isinstance(spec, pb.MemberImportSpec)
    assert spec.unit == "mall" and spec.encoding == "gb18030"
    assert spec.mapping.legacy_number == "卡号" and spec.mapping.points_balance == "积分"
    assert dict(spec.tier_mapping) == {"金卡": "gold"}
    assert spec.auto_merge == pb.AUTO_MERGE_RULE_PHONE_AND_NAME
    assert spec.format == pb.IMPORT_FORMAT_CSV  # from the file's extension
    assert spec.file_name == "mall.csv"  # the name only, no folder


def test_options_override_the_file_and_a_date_ends_with_its_day(tmp_path: Path) -> None:
    data = load_spec_file(_spec(tmp_path))
    spec = build_spec(
        MEMBERS,
        data,
        {
            "unit": "hotel",
            "format": "jsonl",
            "tier_mapping": {"白金卡": "platinum"},
            "tier_grant_ends_at": "2027-12-31",
            "keep_file": True,
        },
        file=Path("members.txt"),
        time_zone=lambda: "Asia/Shanghai",
    )
    assert spec.unit == "hotel" and spec.format == pb.IMPORT_FORMAT_JSON_LINES and spec.keep_file
    assert dict(spec.tier_mapping) == {"金卡": "gold", "白金卡": "platinum"}
    # Grants end exclusive: the first moment of 2028 in Shanghai.
    assert spec.tier_grant_ends_at.ToJsonString() == "2027-12-31T16:00:00Z"
    timed = build_spec(
        MEMBERS,
        {**data, "tier_grant_ends_at": "2028-01-01T00:00:00Z"},
        {},
        file=Path("m.csv"),
        time_zone=_no_zone,
    )
    assert timed.tier_grant_ends_at.ToJsonString() == "2028-01-01T00:00:00Z"
    unmerged = build_spec(
        MEMBERS, data, {"auto_merge": "none"}, file=Path("m.csv"), time_zone=_no_zone
    )
    assert unmerged.auto_merge == pb.AUTO_MERGE_RULE_UNSPECIFIED


@pytest.mark.parametrize(
    ("text", "options", "expected"),
    [
        ("unit: mall\nmaping: {legacy_number: a}\n", {}, 'no field named "maping"'),
        ("unit: mall\nformat: xml\n", {}, "format: 'xml' is not one of csv, json-lines"),
        ("unit: mall\n", {"mode": "replay"}, "--mode is not an option of members imports"),
        ("- unit\n", {}, "a mapping of the spec's fields"),
        ("unit: [mall\n", {}, "not YAML or JSON"),
    ],
)
def test_a_spec_that_does_not_fit_the_contract_is_refused_with_why(
    tmp_path: Path, text: str, options: dict[str, Any], expected: str
) -> None:
    with pytest.raises(SpecError, match=expected.replace("[", r"\[").replace("(", r"\(")):
        build_spec(
            MEMBERS,
            load_spec_file(_spec(tmp_path, text)),
            options,
            file=Path("m.csv"),
            time_zone=_no_zone,
        )


def test_an_order_spec_reads_its_own_fields(tmp_path: Path) -> None:
    text = "unit: mall\nmode: replay\nmapping: {legacy_number: 卡号, order_id: 单号}\n"
    spec = build_spec(
        ORDERS,
        load_spec_file(_spec(tmp_path, text)),
        {},
        file=Path("orders.jsonl"),
        time_zone=_no_zone,
    )
    assert spec.mode == ORDERS.messages.ORDER_IMPORT_MODE_REPLAY
    assert spec.format == pb.IMPORT_FORMAT_JSON_LINES
    assert spec.mapping.order_id == "单号"


def test_the_same_file_and_spec_are_the_same_request(tmp_path: Path) -> None:
    data = load_spec_file(_spec(tmp_path))
    spec = build_spec(MEMBERS, data, {}, file=Path("mall.csv"), time_zone=_no_zone)
    again = build_spec(MEMBERS, data, {}, file=Path("mall.csv"), time_zone=_no_zone)
    other = build_spec(MEMBERS, data, {"unit": "hotel"}, file=Path("mall.csv"), time_zone=_no_zone)
    first = request_id(MEMBERS, "ab" * 32, spec)
    assert first == request_id(MEMBERS, "ab" * 32, again)
    assert first != request_id(MEMBERS, "cd" * 32, spec)  # another file
    assert first != request_id(MEMBERS, "ab" * 32, other)  # another spec
    assert first != request_id(ORDERS, "ab" * 32, spec)  # another kind
    assert len(first) <= 128


def test_names_say_their_kind() -> None:
    assert kind_of("memberImports/abc") == (MEMBERS, "memberImports/abc")
    assert kind_of("orderImports/abc") == (ORDERS, "orderImports/abc")
    assert kind_of("abc") == (MEMBERS, "memberImports/abc")
    for wrong in ("members/abc", "memberImports/", "memberImports/a/b", ""):
        with pytest.raises(UnknownName):
            kind_of(wrong)
    assert MEMBERS.outcome_names() == [
        "created",
        "linked",
        "unchanged",
        "merge-candidate",
        "merged",
        "rejected",
    ]
    assert MEMBERS.outcome_number("rejected") == pb.IMPORT_ROW_OUTCOME_REJECTED


# -- against a stand-in identity service ---------------------------------------------------------


@dataclass
class StandIn(member_import_pb2_grpc.MemberImportServiceServicer):
    """Plays the service's part of an import: stores what the upload sends, then reports
    progress a tenth of the file a poll, ending as `ends` says (never, when empty)."""

    ends: str = "SUCCEEDED"
    first: pb.CreateMemberImportRequest | None = None
    parts: list[int] = field(default_factory=list)
    received: bytearray = field(default_factory=bytearray)
    polls: int = 0

    async def CreateMemberImport(self, request_iterator: Any, context: Any) -> Any:
        async for message in request_iterator:
            if self.first is None:
                self.first = message
                continue
            self.parts.append(len(message.content))
            self.received += message.content
        return pb.CreateMemberImportResponse(member_import=self._import())

    async def GetMemberImport(self, request: Any, context: Any) -> Any:
        assert request.name == "memberImports/m1"
        self.polls += 1
        return pb.GetMemberImportResponse(member_import=self._import())

    def _import(self) -> pb.MemberImport:
        assert self.first is not None
        size = len(self.received)
        tenth = min(self.polls, 10)
        state = pb.MemberImport.STATE_RUNNING
        if tenth == 10 and self.ends:
            state = pb.MemberImport.State.Value(f"STATE_{self.ends}")
        rows = 1000 * tenth
        found = pb.MemberImport(
            name="memberImports/m1",
            spec=self.first.spec,
            state=state,
            file_bytes=size,
            file_sha256="ab" * 32,
            progress=pb.MemberImportProgress(
                bytes_read=size * tenth // 10,
                rows_read=rows,
                created=rows // 2,
                linked=rows // 4,
                candidates=tenth,
                rejected=rows // 4 - tenth,
                percent=10.0 * tenth,
                rows_per_second=5000,
                eta_seconds=10 - tenth,
            ),
        )
        if state == pb.MemberImport.STATE_FAILED:
            found.error.code = 3
            found.error.message = "more than 50% of the first 1,000 rows were rejected"
        return found


@pytest_asyncio.fixture(loop_scope="session")
async def stand_in() -> AsyncIterator[tuple[StandIn, str]]:
    servicer = StandIn()  # type: ignore[abstract]  # it plays only Create and Get
    server = grpc.aio.server()
    member_import_pb2_grpc.add_MemberImportServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


def _env(target: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
    env.update(
        LOYALTY_IDENTITY_TARGET=target,
        LOYALTY_ADMIN_TOKEN="a-token",  # the stand-in asks for none
        LOYALTY_DATA_DIR=str(tmp_path),
        COLUMNS="200",
    )
    return env


async def _create(
    target: str, tmp_path: Path, *extra: str, size: int = 2 * MIB + 5
) -> asyncio.subprocess.Process:
    export = tmp_path / "mall.csv"
    export.write_bytes(b"x" * size)
    return await asyncio.create_subprocess_exec(
        str(ADMIN),
        "imports",
        "create",
        "--file",
        str(export),
        "--mapping",
        str(_spec(tmp_path)),
        *extra,
        env=_env(target, tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.mark.parametrize(("ends", "status"), [("SUCCEEDED", 0), ("FAILED", 1), ("CANCELLED", 3)])
async def test_create_streams_the_file_and_follows_it_to_the_end(
    stand_in: tuple[StandIn, str], tmp_path: Path, ends: str, status: int
) -> None:
    servicer, target = stand_in
    servicer.ends = ends
    process = await _create(target, tmp_path)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == status, err.decode()
    # The spec first, with the request id, then the file in order in parts of 1 MiB.
    assert servicer.first is not None
    assert servicer.first.request_id.startswith("cli-") and not servicer.first.content
    assert servicer.first.spec.unit == "mall" and servicer.first.spec.file_name == "mall.csv"
    assert servicer.parts == [MIB, MIB, 5]
    assert bytes(servicer.received) == (tmp_path / "mall.csv").read_bytes()
    bar = err.decode()
    assert "uploading mall.csv" in bar and "importing mall.csv" in bar
    assert "100%" in bar and "10,000 rows" in bar and "merge candidates 10" in bar
    summary = out.decode()
    assert summary.startswith(f"memberImports/m1: {ends}\n")
    assert "10,000 rows read (100.0% of the file)" in summary
    assert "created 5,000, linked 2,500, unchanged 0, merge candidates 10" in summary
    assert "rejected rows: loyalty-admin imports rows memberImports/m1 --outcome rejected" in (
        summary
    )
    if ends == "FAILED":
        assert "error: more than 50% of the first 1,000 rows were rejected" in summary


async def test_no_wait_prints_the_import_and_how_to_follow_it(
    stand_in: tuple[StandIn, str], tmp_path: Path
) -> None:
    servicer, target = stand_in
    process = await _create(target, tmp_path, "--no-wait", size=10)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert servicer.polls == 0
    assert out.decode().startswith("memberImports/m1: RUNNING\n")
    assert "follow it: loyalty-admin imports follow memberImports/m1" in out.decode()


async def test_ctrl_c_stops_following_and_the_import_goes_on(
    stand_in: tuple[StandIn, str], tmp_path: Path
) -> None:
    servicer, target = stand_in
    servicer.ends = ""  # never ends
    process = await _create(target, tmp_path, size=100)
    assert process.stderr is not None
    line = await asyncio.wait_for(process.stderr.readline(), 60)
    while b"Ctrl-C stops following" not in line:
        line = await asyncio.wait_for(process.stderr.readline(), 60)
    while servicer.polls < 2:  # following
        await asyncio.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 130, err.decode()
    said = err.decode()
    assert "stopped following: memberImports/m1 goes on in the identity service" in said
    assert "follow it: loyalty-admin imports follow memberImports/m1" in said
    assert "cancel it: loyalty-admin imports cancel memberImports/m1" in said
    assert "Traceback" not in said


@dataclass
class OrderStandIn(order_import_pb2_grpc.OrderImportServiceServicer):
    """An order import's service, as far as `imports create --of orders` and `rows` go."""

    first: order_pb.CreateOrderImportRequest | None = None
    received: int = 0
    asked_outcome: int = -1

    async def CreateOrderImport(self, request_iterator: Any, context: Any) -> Any:
        async for message in request_iterator:
            if self.first is None:
                self.first = message
            self.received += len(message.content)
        return order_pb.CreateOrderImportResponse(order_import=self._import(ended=False))

    async def GetOrderImport(self, request: Any, context: Any) -> Any:
        return order_pb.GetOrderImportResponse(order_import=self._import(ended=True))

    async def ListOrderImportRows(self, request: Any, context: Any) -> Any:
        self.asked_outcome = request.outcome
        return order_pb.ListOrderImportRowsResponse(
            rows=[
                order_pb.OrderImportRow(
                    row_number=7,
                    outcome=order_pb.ORDER_ROW_OUTCOME_UNKNOWN_MEMBER,
                    reason="UNKNOWN_MEMBER",
                    detail="no member holds legacy:mall M****12",
                )
            ]
        )

    def _import(self, *, ended: bool) -> order_pb.OrderImport:
        assert self.first is not None
        return order_pb.OrderImport(
            name="orderImports/o1",
            spec=self.first.spec,
            state=pb.MemberImport.STATE_SUCCEEDED if ended else pb.MemberImport.STATE_RUNNING,
            file_bytes=self.received,
            progress=order_pb.OrderImportProgress(
                rows_read=100 if ended else 0,
                imported=90 if ended else 0,
                unknown_member=5 if ended else 0,
                duplicates=3 if ended else 0,
                rejected=2 if ended else 0,
                percent=100.0 if ended else 0.0,
            ),
        )


async def test_order_imports_are_the_same_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    servicer = OrderStandIn()  # type: ignore[abstract]  # it plays only Create, Get and rows
    server = grpc.aio.server()
    order_import_pb2_grpc.add_OrderImportServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    for key, value in _env(f"127.0.0.1:{port}", tmp_path).items():
        monkeypatch.setenv(key, value)
    orders = tmp_path / "orders.csv"
    orders.write_text("单号,卡号,金额,时间\nO1,M000000012,388.00,2025-06-01\n", encoding="utf-8")
    spec = _spec(
        tmp_path,
        "unit: mall\nmapping:\n  {legacy_number: 卡号, order_id: 单号,\n"
        "   amount: 金额, occurred_at: 时间}\n",
        "orders.yaml",
    )

    def run(*args: str) -> tuple[int, str]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            code = main(list(args))
        return code, out.getvalue()

    try:
        code, out = await asyncio.to_thread(
            run,
            "imports",
            "create",
            "--of",
            "orders",
            "--file",
            str(orders),
            "--mapping",
            str(spec),
            "--mode",
            "replay",
        )
        assert code == 0, out
        assert servicer.first is not None
        assert servicer.first.spec.mode == order_pb.ORDER_IMPORT_MODE_REPLAY
        assert servicer.first.spec.mapping.occurred_at == "时间"
        assert servicer.received == orders.stat().st_size
        assert out.startswith("orderImports/o1: SUCCEEDED\n")
        assert "imported 90, unknown member 5, duplicates 3, rejected 2" in out
        code, out = await asyncio.to_thread(
            run, "imports", "rows", "orderImports/o1", "--outcome", "unknown-member"
        )
        assert code == 0
        assert servicer.asked_outcome == order_pb.ORDER_ROW_OUTCOME_UNKNOWN_MEMBER
        assert out == "7\tunknown-member\t-\tUNKNOWN_MEMBER\tno member holds legacy:mall M****12\n"
    finally:
        await server.stop(0)


@pytest.mark.parametrize("unit", legacy_files.UNITS)
def test_the_example_mapping_files_read_the_shapes_the_units_export(unit: str) -> None:
    """docs/examples/import: each unit's mapping file is the generated files' mapping, and its
    example file is in the unit's format and encoding."""
    examples = Path(__file__).resolve().parents[3] / "docs" / "examples" / "import"
    file = examples / ("hotel.jsonl" if unit == "hotel" else f"{unit}.csv")
    spec = build_spec(
        MEMBERS, load_spec_file(examples / f"{unit}.yaml"), {}, file=file, time_zone=_no_zone
    )
    plain = json_format.MessageToDict(spec, preserving_proto_field_name=True)
    assert plain["unit"] == unit
    assert plain["mapping"] == legacy_files.MAPPINGS[unit]
    assert plain.get("tier_mapping", {}) == legacy_files.TIER_MAPPINGS[unit]
    assert spec.encoding in ("", legacy_files.ENCODINGS[unit])
    jsonl = legacy_files.FORMATS[unit] == "jsonl"
    assert plain["format"] == ("IMPORT_FORMAT_JSON_LINES" if jsonl else "IMPORT_FORMAT_CSV")
    text = file.read_bytes().decode(legacy_files.ENCODINGS[unit])
    if unit == "mall":
        assert text.startswith(",".join(legacy_files.MALL_HEADER))
    elif unit == "cinema":
        assert text.startswith(",".join(legacy_files.CINEMA_HEADER))
    else:
        assert list(json.loads(text.splitlines()[0])) == legacy_files.HOTEL_KEYS


async def test_following_rides_out_a_service_that_does_not_answer_for_a_while() -> None:
    answers: list[Any] = [
        grpc.aio.AioRpcError(
            grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "restarting"
        ),
        grpc.aio.AioRpcError(
            grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "restarting"
        ),
        pb.MemberImport(name="memberImports/m1", state=pb.MemberImport.STATE_SUCCEEDED),
    ]

    async def get() -> Any:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    running = pb.MemberImport(name="memberImports/m1", state=pb.MemberImport.STATE_RUNNING)
    bar = progress.progress_bar(Console(file=io.StringIO()))
    ended = await progress.follow(
        MEMBERS, "memberImports/m1", get, bar, poll_seconds=0, first=running
    )
    assert progress.state_of(ended) == "SUCCEEDED" and answers == []

    refused = grpc.aio.AioRpcError(
        grpc.StatusCode.PERMISSION_DENIED, grpc.aio.Metadata(), grpc.aio.Metadata(), "no"
    )

    async def denied() -> Any:
        raise refused

    with pytest.raises(grpc.aio.AioRpcError):
        await progress.follow(
            MEMBERS, "memberImports/m1", denied, bar, poll_seconds=0, first=running
        )
