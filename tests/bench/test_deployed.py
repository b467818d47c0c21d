"""`bench --deployed`: CPU time read from /proc per process group, the results' shape, and the
deployed scenarios at a tiny size (the suite as processes, the load from another process)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from bench import proc, report
from bench.registry import Measurement, Scenario, plan
from bench.scenarios.deployed import workers_of
from tests.bench.runs import bench_results, bench_run

# A deployed run at its tiniest.
TINY = ("--seconds", "1", "--warmup", "0.5", "--concurrency", "4")
TICK = 1 / proc.TICKS


def _stat(pid: int, ppid: int, own_ticks: int, children_ticks: int = 0, comm: str = "x") -> str:
    fields = ["S", str(ppid), *["0"] * 9, str(own_ticks), "0", str(children_ticks), "0"]
    return f"{pid} ({comm}) " + " ".join([*fields, *["0"] * 30])


def test_a_stat_line_gives_user_and_system_time_of_the_process_and_its_waited_children() -> None:
    line = "4242 (python -m (x) y) S 7 " + " ".join(["0"] * 9 + ["30", "12", "5", "3"] + ["0"] * 30)
    stat = proc.parse_stat(line)
    assert (stat.pid, stat.comm, stat.ppid) == (4242, "python -m (x) y", 7)
    assert stat.own == pytest.approx(42 * TICK)
    assert stat.children == pytest.approx(8 * TICK)


def test_a_group_counts_its_tree_and_a_child_that_ended_once() -> None:
    def stats(*lines: str) -> dict[int, proc.Stat]:
        return {s.pid: s for s in map(proc.parse_stat, lines)}

    group = proc.Group("postgres", (10,))
    before = stats(_stat(10, 1, 100), _stat(11, 10, 50), _stat(12, 11, 20), _stat(99, 1, 500))
    # 11 ended (its 60 ticks now in 10's children's time), 13 started, 99 is not ours
    after = stats(_stat(10, 1, 110, 60), _stat(12, 1, 25), _stat(13, 10, 7), _stat(99, 1, 900))
    assert group.processes(before) == 3
    assert group.cpu_seconds(before) == pytest.approx(170 * TICK)
    # 12 was re-parented away from the tree when 11 ended: its time leaves the group with it
    assert group.cpu_seconds(after) == pytest.approx((110 + 60 + 7) * TICK)
    runner = proc.Group("runner", (10,), tree=False)
    assert runner.cpu_seconds(after) == pytest.approx(110 * TICK)


def test_a_busy_child_shows_its_cpu_in_its_group() -> None:
    work = (
        "import sys; sum(i * i for i in range(3_000_000)); "
        "print('done', flush=True); sys.stdin.read()"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", work], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        group = proc.Group("child", (child.pid,))
        assert child.stdout.readline() == "done\n"  # its work done: it waits on its stdin
        used = proc.snapshot([group])["child"]
        assert used > 0
        per_op = proc.cpu_ms_per_op({"child": 0.0}, {"child": used}, 10)
        assert per_op["child"] == pytest.approx(used * 100, abs=0.01)
        assert per_op["total"] == per_op["child"]
    finally:
        child.stdin.close()
        child.wait(10)
    assert proc.read_stat(child.pid) is None


def test_cpu_per_operation_is_reported_against_the_ceiling() -> None:
    def cpu(total: float) -> dict[str, object]:
        return {
            "server_cpu_ms_per_op": {"gateway": total / 2, "postgres": total / 2, "total": total}
        }

    raw = Scenario("raw-x", lambda ctx: None, None, "")  # type: ignore[arg-type,return-value]
    deployed = Scenario("x", lambda ctx: None, "raw-x", "")  # type: ignore[arg-type,return-value]
    ceiling = report.record(
        raw,
        Measurement(100, 1.0, 16, "ops", extra=cpu(2.0), p50_ms=1.0, p99_ms=2.0),
        ceiling=None,
        run_id="r",
    )
    line = report.record(
        deployed,
        Measurement(50, 1.0, 16, "ops", extra=cpu(8.0), p50_ms=3.0, p99_ms=9.0),
        ceiling=ceiling,
        run_id="r",
    )
    assert (ceiling["p50_ms"], ceiling["p99_ms"], ceiling["server_cpu_ms_per_op"]) == (
        1.0,
        2.0,
        2.0,
    )
    assert line["ratio"] == 0.5 and line["cpu_ratio"] == 4.0
    table = report.cpu_table([ceiling, line])
    assert "gateway" in table and "postgres" in table and "4.00" in table


def test_the_deployed_scenarios_run_only_when_named() -> None:
    from bench.harness import DEPLOYED, discover

    discover()
    everything = [s.name for s in plan(None)]
    assert not any(name.startswith(("deployed-", "raw-deployed-")) for name in everything)
    named = [s.name for s in plan(list(DEPLOYED))]
    assert named == [
        "raw-deployed-resolve",
        "deployed-resolve",
        "raw-deployed-earn",
        "deployed-earn",
        "raw-deployed-record-purchase",
        "deployed-record-purchase",
        "deployed-member-overview",
        "raw-deployed-entitlements",
        "deployed-entitlements",
        "deployed-coupon-issuance",
    ]


@pytest.mark.slow
def test_the_deployed_bench_runs_at_a_tiny_size() -> None:
    scenarios = ["deployed-earn"]
    if shutil.which("wrk"):
        scenarios.append("deployed-record-purchase")
    results, printed = bench_run(
        ["--only", *scenarios, "--members", "50", *TINY],
        env={**os.environ, "LOYALTY_AUTH_TRUST_HEADERS": "true"},
    )
    assert set(results) == {*scenarios, *(f"raw-{name}" for name in scenarios)}
    for name in scenarios:
        line = results[name]
        assert line["count"] > 0 and line["ratio"] is not None and line["p99_ms"] > 0
        cpu = line["extra"]["server_cpu_ms_per_op"]
        # every service of the suite and the servers beneath, each read from /proc
        for group in ("identity", "points", "tiers", "benefits", "gateway", "postgres", "nats"):
            assert group in cpu
        assert cpu["points"] > 0 and cpu["postgres"] > 0
        assert cpu["total"] == pytest.approx(
            sum(v for k, v in cpu.items() if k != "total"), abs=0.01
        )
        assert line["server_cpu_ms_per_op"] == cpu["total"] and line["cpu_ratio"] > 0
        # Measured (CPU time comes in clock ticks of 10 ms: a tiny run's load may show none).
        assert line["extra"]["load_cpu_ms_per_op"] >= 0
        raw = results[f"raw-{name}"]["extra"]["server_cpu_ms_per_op"]
        assert raw["postgres"] > 0 and raw["total"] > 0
    if "deployed-record-purchase" in results:
        cpu = results["deployed-record-purchase"]["extra"]["server_cpu_ms_per_op"]
        assert cpu["gateway"] > 0 and cpu["identity"] > 0
        raw = results["raw-deployed-record-purchase"]["extra"]["server_cpu_ms_per_op"]
        assert {"raw-front", "raw-identity", "raw-points", "raw-reads"} <= set(raw)
    assert "server CPU ms per operation" in printed


@pytest.mark.slow
def test_the_deployed_reads_and_coupon_issuance_run_at_a_tiny_size() -> None:
    scenarios = ["deployed-entitlements", "deployed-coupon-issuance"]
    if shutil.which("wrk"):
        scenarios.append("deployed-member-overview")
    results = bench_results(
        ["--only", *scenarios, "--members", "50", *TINY],
        env={**os.environ, "LOYALTY_AUTH_TRUST_HEADERS": "true"},
    )
    assert set(results) == {*scenarios, "raw-deployed-entitlements"}
    # the service each one drives, and the servers beneath
    driven = {
        "deployed-entitlements": ("benefits",),
        "deployed-coupon-issuance": ("benefits",),
        "deployed-member-overview": ("gateway", "identity", "points", "tiers", "benefits"),
    }
    for name in scenarios:
        line = results[name]
        assert line["count"] > 0 and line["p99_ms"] > 0
        cpu = line["extra"]["server_cpu_ms_per_op"]
        for group in ("identity", "points", "tiers", "benefits", "gateway", "postgres", "nats"):
            assert group in cpu
        assert all(cpu[group] > 0 for group in driven[name]) and cpu["postgres"] > 0
        assert cpu["total"] == pytest.approx(
            sum(v for k, v in cpu.items() if k != "total"), abs=0.01
        )
        assert line["server_cpu_ms_per_op"] == cpu["total"]
    # a ceiling where one is written; the others run without one (ratio None)
    assert results["deployed-entitlements"]["ceiling"] == "raw-deployed-entitlements"
    assert results["deployed-entitlements"]["cpu_ratio"] > 0
    raw = results["raw-deployed-entitlements"]["extra"]["server_cpu_ms_per_op"]
    assert raw["raw-benefits"] > 0 and "benefits" not in raw
    assert results["deployed-coupon-issuance"]["ratio"] is None


def test_the_deployed_suite_runs_the_workers_the_environment_asks_for() -> None:
    assert set(workers_of({}).values()) == {1}
    every = workers_of({"LOYALTY_WORKERS": "2", "BENCH_WORKERS": "identity=3, gateway=1"})
    assert every["identity"] == 3 and every["gateway"] == 1 and every["points"] == 2
    for wrong in ("identity", "nobody=2", "identity=0", "identity=two"):
        with pytest.raises(ValueError, match="BENCH_WORKERS"):
            workers_of({"BENCH_WORKERS": wrong})
