"""`loyalty-admin imports` against a running suite of its own (databases `<run>_imp_<service>`):
the Huayue examples of docs/examples/import import cleanly, each followed by its progress bar to
the end; running the same command again is the same import; the hotel's later export leaves a
merge candidate that the operator resolves; the report lists rows by outcome (as CSV too); a
file that is mostly bad fails with exit status 1; past orders (`--of orders`) of the imported
members become their activity in the tiers service, and the same command again is the same
import. (Generated files with a known overlap are
uploaded over HTTP in tests/gateway/test_imports_http.py.)"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from loyalty.tiers.v1 import tiers_service_pb2, tiers_service_pb2_grpc
from loyalty_devstack.demo import HUAYUE
from loyalty_devstack.testing import metadata_for
from loyalty_kit.caller import Caller

from tests.admin.conftest import Result, Suite

pytestmark = pytest.mark.asyncio(loop_scope="session")

SUITE_TAG = "imp"
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples" / "import"
NAME = re.compile(r"^(memberImports/[^:\s]+): (\w+)$", re.MULTILINE)
ORDER_IMPORT = re.compile(r"^(orderImports/[^:\s]+): (\w+)$", re.MULTILINE)
TIERS_ADMIN = Caller(unit="group", client_id="admin-tests", scopes=frozenset({"admin"}))


def _import_of(result: Result) -> tuple[str, str]:
    """The import's name and state from the summary a create prints."""
    found = NAME.search(result.out)
    assert found is not None, result.out + result.err
    return found.group(1), found.group(2)


def _counts(result: Result) -> dict[str, int]:
    line = next(line for line in result.out.splitlines() if line.startswith("  created "))
    counts = {}
    for part in line.strip().split(", "):
        label, _, number = part.rpartition(" ")
        counts[label] = int(number.replace(",", ""))
    return counts


async def _example(suite: Suite, unit: str, file: str) -> Result:
    spec = EXAMPLES / f"{unit}.yaml"
    return await suite.process(
        "imports", "create", "--file", str(EXAMPLES / file), "--mapping", str(spec)
    )


async def test_the_huayue_examples_import_cleanly_and_a_rerun_is_the_same_import(
    suite: Suite,
) -> None:
    applied = await suite.admin("programme", "apply", str(HUAYUE))
    assert applied.code == 0, applied.err
    expected = {
        ("mall", "mall.csv"): {"created": 6, "linked": 0},
        ("hotel", "hotel.jsonl"): {"created": 2, "linked": 2},
        ("cinema", "cinema.csv"): {"created": 2, "linked": 2},
    }
    names = {}
    for (unit, file), counts in expected.items():
        done = await _example(suite, unit, file)
        assert done.code == 0, done.err
        name, state = _import_of(done)
        assert state == "SUCCEEDED"
        names[unit] = name
        # The bar, to its end: the upload's and the import's.
        assert f"uploading {file}" in done.err and f"importing {file}" in done.err
        assert "100%" in done.err and "SUCCEEDED" in done.err
        found = _counts(done)
        assert {k: found[k] for k in counts} == counts, done.out
        assert found["rejected"] == 0 and found["merge candidates"] == 0, done.out
        assert "error:" not in done.out

    again = await _example(suite, "mall", "mall.csv")
    assert again.code == 0, again.err
    assert _import_of(again) == (names["mall"], "SUCCEEDED")  # the same import, answered again

    listed = await suite.admin("imports", "list", "--unit", "hotel")
    assert listed.code == 0, listed.err
    assert listed.out.startswith(f"{names['hotel']}\tSUCCEEDED\thotel\thotel.jsonl\t4 rows\t100%")
    got = await suite.admin("imports", "get", names["cinema"])
    assert got.code == 0 and got.out.startswith(f"{names['cinema']}: SUCCEEDED\n"), got.out
    assert "unit cinema, file cinema.csv (349 bytes" in got.out


async def test_a_later_export_leaves_a_candidate_that_an_operator_resolves(suite: Suite) -> None:
    for unit, file in (("mall", "mall.csv"), ("hotel", "hotel.jsonl")):
        assert (await _example(suite, unit, file)).code == 0
    later = await _example(suite, "hotel", "hotel-update.jsonl")
    assert later.code == 0, later.err
    name, _ = _import_of(later)
    counts = _counts(later)
    assert (counts["unchanged"], counts["merge candidates"], counts["created"]) == (3, 1, 1)
    assert f"merge candidates: loyalty-admin imports candidates --import {name}" in later.out

    rows = await suite.admin("imports", "rows", name, "--outcome", "merge-candidate")
    assert rows.code == 0, rows.err
    (row,) = rows.out.splitlines()
    number, outcome, _member, reason, _detail, candidate = row.split("\t")
    assert (number, outcome, reason) == ("3", "merge-candidate", "MATCHES_TWO_MEMBERS")
    assert "13900000005" not in rows.out  # masked

    listed = await suite.admin("imports", "candidates", "--import", name, "--state", "open")
    assert listed.code == 0, listed.err
    assert listed.out.startswith(f"{candidate}\tOPEN\t{name} row 3\tunit hotel\n"), listed.out
    members = sorted(set(re.findall(r"-> members/(\S+)", listed.out)))
    assert len(members) == 2
    assert "13900000005" not in listed.out and "zhao.li" not in listed.out

    survivor = re.search(r"legacy:hotel \S+ -> members/(\S+)", listed.out)
    assert survivor is not None, listed.out
    decided = await suite.admin(
        "imports", "resolve", candidate, "--survivor", survivor.group(1), "--reason", "one guest"
    )
    assert decided.code == 0, decided.err
    assert decided.out.startswith(f"{candidate}\tRESOLVED\t"), decided.out
    assert f"joined members/{survivor.group(1)}" in decided.out
    # The same command again is the same decision, answered again.
    again = await suite.admin(
        "imports", "resolve", candidate, "--survivor", survivor.group(1), "--reason", "one guest"
    )
    assert again.code == 0 and again.out == decided.out, again.err
    still_open = await suite.admin("imports", "candidates", "--import", name, "--state", "open")
    assert still_open.out == ""

    report = await suite.admin("imports", "rows", name, "--csv")
    table = list(csv.DictReader(io.StringIO(report.out)))
    assert [r["row_number"] for r in table] == ["1", "2", "3", "4", "5"]
    # The candidate's row, resolved, is the member it joined.
    assert [r["outcome"] for r in table] == [
        "unchanged",
        "unchanged",
        "merged",
        "unchanged",
        "created",
    ]
    assert table[2]["member_id"] == survivor.group(1)


async def test_a_file_mostly_bad_fails_with_exit_status_1(suite: Suite, tmp_path: Path) -> None:
    bad = tmp_path / "cinema.csv"
    rows = ["user_id,phone,unionid,nickname,points,registered_at"]
    rows += [f"B{n:09d},12345,,x,-5," for n in range(40)]
    bad.write_text("\n".join(rows) + "\n", encoding="utf-8")
    failed = await suite.admin(
        "imports", "create", "--file", str(bad), "--mapping", str(EXAMPLES / "cinema.yaml")
    )
    assert failed.code == 1, failed.out + failed.err
    name, state = _import_of(failed)
    assert state == "FAILED"
    assert "error: " in failed.out
    rejected = await suite.admin("imports", "rows", name, "--outcome", "rejected")
    assert rejected.out.count("\trejected\t") >= 1


async def test_a_spec_the_service_refuses_is_explained(suite: Suite, tmp_path: Path) -> None:
    spec = tmp_path / "cinema.yaml"
    spec.write_text("unit: cinema\nmapping: {phone: phone}\n", encoding="utf-8")
    refused = await suite.admin(
        "imports", "create", "--file", str(EXAMPLES / "cinema.csv"), "--mapping", str(spec)
    )
    assert refused.code == 1
    assert (
        "error: INVALID_ARGUMENT: spec.mapping.legacy_number: required: the column of the "
        "legacy number\n"
    ) in refused.err
    assert refused.out == ""


async def _qualifying_spend(suite: Suite, member: str, expected: Decimal) -> Decimal:
    """The member's qualifying spend in the tiers service's window, once it is `expected`
    (the chunk's event takes a moment to arrive)."""
    spend = Decimal(-1)
    async with grpc.aio.insecure_channel(suite.services["tiers"].target) as channel:
        tiers = tiers_service_pb2_grpc.TiersServiceStub(channel)
        for _ in range(200):
            found = await tiers.GetMemberTier(
                tiers_service_pb2.GetMemberTierRequest(member=f"members/{member}"),
                metadata=metadata_for(TIERS_ADMIN),
            )
            spend = sum(
                (
                    Decimal(p.current)
                    for p in found.progress
                    if p.metric == tiers_service_pb2.METRIC_QUALIFYING_SPEND
                ),
                Decimal(0),
            )
            if spend == expected:
                break
            await asyncio.sleep(0.05)
    return spend


async def test_past_orders_become_tiers_activity_and_a_rerun_is_the_same_import(
    suite: Suite, tmp_path: Path
) -> None:
    applied = await suite.admin("programme", "apply", str(HUAYUE))
    assert applied.code == 0, applied.err
    members = await _example(suite, "mall", "mall.csv")
    assert members.code == 0, members.err
    name, _ = _import_of(members)
    table = list(
        csv.DictReader(io.StringIO((await suite.admin("imports", "rows", name, "--csv")).out))
    )
    card_holder = next(r["member_id"] for r in table if r["row_number"] == "1")  # M000000001

    day = (datetime.now(UTC) - timedelta(days=30)).date().isoformat()
    orders = tmp_path / "orders.csv"
    orders.write_text(
        "单号,卡号,金额,时间\n"
        f"CLI-1,M000000001,1000.00,{day}\n"
        f"CLI-2,M000000001,200.50,{day}\n"
        f"CLI-3,M000009999,10.00,{day}\n",  # nobody's number
        encoding="utf-8",
    )
    mapping = tmp_path / "orders.yaml"
    mapping.write_text(
        "unit: mall\nmapping:\n  {legacy_number: 卡号, order_id: 单号,\n"
        "   amount: 金额, occurred_at: 时间}\n",
        encoding="utf-8",
    )
    command = ("imports", "create", "--of", "orders", "--file", str(orders))
    done = await suite.process(*command, "--mapping", str(mapping))
    assert done.code == 0, done.out + done.err
    found = ORDER_IMPORT.search(done.out)
    assert found is not None and found.group(2) == "SUCCEEDED", done.out + done.err
    assert "imported 2, unknown member 1, duplicates 0, rejected 0" in done.out
    assert "100%" in done.err
    assert await _qualifying_spend(suite, card_holder, Decimal("1200.50")) == Decimal("1200.50")

    again = await suite.process(*command, "--mapping", str(mapping))
    assert again.code == 0, again.err
    repeated = ORDER_IMPORT.search(again.out)
    assert repeated is not None and repeated.groups() == found.groups()  # answered again
    unknown = await suite.admin("imports", "rows", found.group(1), "--outcome", "unknown-member")
    assert unknown.code == 0, unknown.err
    assert unknown.out.startswith("3\tunknown-member\t-\tUNKNOWN_MEMBER\t"), unknown.out
    assert "M000009999" not in unknown.out  # masked
    await asyncio.sleep(0.5)  # nothing counted twice
    assert await _qualifying_spend(suite, card_holder, Decimal("1200.50")) == Decimal("1200.50")
