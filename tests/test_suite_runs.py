"""`make run` as a user meets it: the runner starts the seven services on real infrastructure,
on an empty data folder every time, they answer, and Ctrl-C stops everything cleanly; a service
that fails at start stops the runner at once; a killed runner leaves nothing in the way of the
next run; every command line answers --help. Also each service's `migrate` command."""

from __future__ import annotations

import asyncio
import functools
import json
import multiprocessing
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
import psutil  # type: ignore[import-untyped]
import pytest
from alembic.script import ScriptDirectory
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from loyalty.benefits.v1 import benefits_service_pb2 as benefits_pb
from loyalty.benefits.v1 import benefits_service_pb2_grpc
from loyalty.engagement.v1 import engagement_service_pb2 as engagement_pb
from loyalty.engagement.v1 import engagement_service_pb2_grpc
from loyalty.gateway.v1 import gateway_service_pb2 as gateway_pb
from loyalty.gateway.v1 import gateway_service_pb2_grpc
from loyalty.identity.v1 import identity_service_pb2 as pb
from loyalty.identity.v1 import identity_service_pb2_grpc, member_pb2
from loyalty.insights.v1 import insights_service_pb2 as insights_pb
from loyalty.insights.v1 import insights_service_pb2_grpc
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.points.v1 import points_service_pb2_grpc
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_pb
from loyalty.tiers.v1 import tiers_service_pb2_grpc
from loyalty_devstack import demo, demo_history, legacy_files
from loyalty_devstack.demo_history import HistorySettings
from loyalty_devstack.embedded import (
    EmbeddedNats,
    Infrastructure,
    free_port,
    nats_server_binary,
    port_open,
)
from loyalty_kit import migrations
from loyalty_kit.auth import development_keys
from loyalty_kit.caller import Caller
from loyalty_kit.settings import Settings

SERVICES = ("identity", "points", "tiers", "benefits", "insights", "engagement")
HISTORY = HistorySettings(rows=300)


def history_line() -> str:
    """What the demo says of its generated history of HISTORY.rows accounts."""
    end = demo_history.history_end(datetime.now(UTC))
    truth = demo_history.legacy_accounts(HISTORY, end)
    orders = sum(
        len(demo_history.orders(truth, unit, seed=HISTORY.seed, end=end, days=HISTORY.days))
        for unit in legacy_files.UNITS
    )
    return f"{truth.rows():,} legacy members of {truth.people:,} people, {orders:,} past orders"


ALL_EXITED_CLEANLY = (
    "exit codes: identity 0, points 0, tiers 0, benefits 0, insights 0, engagement 0, gateway 0"
)
BIN = Path(sys.executable).parent


@pytest.fixture
def suite_env(infra: Infrastructure, run_id: str) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
    env.update(
        {
            f"LOYALTY_{name.upper()}_PORT": str(free_port())
            for name in (*SERVICES, "gateway_grpc", "gateway_http")
        }
    )
    env["LOYALTY_DEV_NATS_PORT"] = str(free_port())
    env["LOYALTY_METRICS_PORT"] = "0"  # not the defaults, which a running suite may hold
    # Databases and streams of this test alone: "from scratch" holds for a shared server too,
    # where an earlier test's databases would otherwise still be there (under the run's id, so
    # the run's clean-up drops them).
    own = secrets.token_hex(3)
    env["LOYALTY_DATABASE_PREFIX"] = f"{run_id}_suite{own}_"
    env["LOYALTY_EVENT_NAMESPACE"] = f"{run_id}suite{own}"
    env["LOYALTY_SHUTDOWN_GRACE_SECONDS"] = "2"
    # As deployed: no caller headers trusted, so the demo loader and the services' calls to
    # each other must carry tokens across the processes.
    env["LOYALTY_AUTH_TRUST_HEADERS"] = "false"
    env["LOYALTY_DEMO_HISTORY_ROWS"] = str(HISTORY.rows)  # a small generated history
    if os.environ.get("LOYALTY_DATABASE_URL"):
        # CI's second pass: the runner must use the servers the environment names.
        env["LOYALTY_DATABASE_URL"] = infra.database_url
        env["LOYALTY_NATS_URL"] = infra.nats_url
    # Not under pytest's own temporary folder: a concurrent pytest session narrows that to its
    # owner, and the embedded PostgreSQL runs as another user when the tests run as root.
    with tempfile.TemporaryDirectory(prefix="loyalty-suite-", ignore_cleanup_errors=True) as root:
        env["LOYALTY_DATA_DIR"] = str(Path(root) / "data")
        yield env


class Runner:
    """`loyalty-dev run` as a subprocess; its output read as it comes (so a chatty suite never
    fills the pipe), kept whole for the assertions."""

    def __init__(self, env: dict[str, str]) -> None:
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [str(BIN / "loyalty-dev"), "run"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_up(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while "loyalty suite is up" not in self.output:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self._reader.join(5)
                raise AssertionError(f"the suite did not come up:\n{self.output}")
            time.sleep(0.2)

    def finish(self, timeout: float = 120) -> int:
        """Its exit code, once it has stopped (and said everything)."""
        try:
            code = self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        self._reader.join(10)
        return code

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.finish()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()


def _ports(env: dict[str, str]) -> dict[str, int]:
    return {
        name: int(env[f"LOYALTY_{name.upper()}_PORT"])
        for name in (*SERVICES, "gateway_grpc", "gateway_http")
    }


def _settings(env: dict[str, str]) -> Settings:
    ports = _ports(env)
    return Settings(
        data_dir=Path(env["LOYALTY_DATA_DIR"]),
        identity_port=ports["identity"],
        points_port=ports["points"],
        tiers_port=ports["tiers"],
        benefits_port=ports["benefits"],
        insights_port=ports["insights"],
        engagement_port=ports["engagement"],
        gateway_grpc_port=ports["gateway_grpc"],
    )


def _folder_processes(data_dir: Path) -> list[str]:
    """Embedded servers (postgres, nats-server) still running on a data folder."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        command = " ".join(process.info["cmdline"] or ())
        if process.info["name"] in ("postgres", "nats-server") and str(data_dir) in command:
            found.append(f"{process.pid} {command}")
    return found


async def _serving(port: int) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=2
        )
        return int(response.status)


def _token(data_dir: Path, caller: Caller) -> tuple[tuple[str, str], ...]:
    """A bearer token signed with the folder's development key (as the gateway would issue)."""
    signing, _ = development_keys(data_dir)
    token, _ = signing.issue(caller, 120)
    return (("authorization", f"Bearer {token}"),)


async def _resolve_demo_member(port: int, data_dir: Path) -> str:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = identity_service_pb2_grpc.IdentityServiceStub(channel)
        found = await stub.ResolveMember(
            pb.ResolveMemberRequest(
                identity=member_pb2.Identity(type="phone", value="+86 138 0013 8000")
            ),
            metadata=_token(data_dir, Caller(unit="mall", client_id="suite-test")),
            timeout=5,
        )
    return str(found.member.profile.full_name)  # masked: this caller may not read personal data


async def _demo_state(settings: Settings) -> dict[str, object]:
    """What the demo made, read with one token (the folder's development key, unit group,
    admin) from every service: each one verifies it, as trust in headers is off."""
    metadata = _token(
        settings.data_dir, Caller(unit="group", client_id="suite-test", scopes=frozenset({"admin"}))
    )

    def at(port: int) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(f"127.0.0.1:{port}")

    async with at(settings.identity_port) as ch:
        identity = identity_service_pb2_grpc.IdentityServiceStub(ch)
        member = (
            await identity.ResolveMember(
                pb.ResolveMemberRequest(
                    identity=member_pb2.Identity(type="phone", value="13800138000")
                ),
                metadata=metadata,
                timeout=5,
            )
        ).member
        members = await identity.ListMembers(
            pb.ListMembersRequest(view=pb.MEMBER_VIEW_FULL), metadata=metadata, timeout=5
        )
    async with at(settings.points_port) as ch:
        programme = await points_service_pb2_grpc.PointsServiceStub(ch).GetProgramme(
            points_pb.GetProgrammeRequest(), metadata=metadata, timeout=5
        )
    async with at(settings.tiers_port) as ch:
        ladder = await tiers_service_pb2_grpc.TiersServiceStub(ch).GetLadder(
            tiers_pb.GetLadderRequest(), metadata=metadata, timeout=5
        )
    async with at(settings.benefits_port) as ch:
        catalogue = await benefits_service_pb2_grpc.BenefitsServiceStub(ch).GetCatalogue(
            benefits_pb.GetCatalogueRequest(), metadata=metadata, timeout=5
        )
    async with at(settings.insights_port) as ch:
        # Answers (its figures follow the demo's events a moment later: not compared).
        await insights_service_pb2_grpc.InsightsServiceStub(ch).GetPointsLiability(
            insights_pb.GetPointsLiabilityRequest(
                start_time=Timestamp(seconds=0), end_time=Timestamp(seconds=4_000_000_000)
            ),
            metadata=metadata,
            timeout=5,
        )
    async with at(settings.engagement_port) as ch:
        # The demo's journeys: win-back, expiring points, hotel -> cinema, and upgrade ->
        # welcome gift, a tier each.
        journeys = await engagement_service_pb2_grpc.EngagementServiceStub(ch).ListJourneys(
            engagement_pb.ListJourneysRequest(), metadata=metadata, timeout=5
        )
    async with at(settings.gateway_grpc_port) as ch:
        overview = await gateway_service_pb2_grpc.GatewayServiceStub(ch).GetMemberOverview(
            gateway_pb.GetMemberOverviewRequest(member=member.name, unit="mall"),
            metadata=metadata,
            timeout=10,
        )
    return {
        "members": sorted(
            (m.member_id, tuple(m.tags), m.update_time.ToJsonString()) for m in members.members
        ),
        "programme": programme.programme.version,
        "ladder": (ladder.ladder.version, [t.code for t in ladder.ladder.tiers]),
        "catalogue": (catalogue.catalogue.version, len(catalogue.catalogue.rewards)),
        "overview": overview.member.member_id == member.member_id,
        "journeys": sorted(
            (j.display_name, j.state == engagement_pb.JOURNEY_STATE_ACTIVE)
            for j in journeys.journeys
        ),
    }


def _exports(env_file: Path) -> dict[str, str]:
    """The settings an `export LOYALTY_...=` file sets."""
    return {
        key: shlex.split(value)[0]
        for key, _, value in (
            line.removeprefix("export ").partition("=")
            for line in env_file.read_text().splitlines()
            if line.startswith("export LOYALTY_")
        )
    }


@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_a_first_run_on_an_empty_data_folder_comes_up_every_time(
    attempt: int, suite_env: dict[str, str]
) -> None:
    data_dir = Path(suite_env["LOYALTY_DATA_DIR"])
    assert not data_dir.exists()
    runner = Runner(suite_env)
    try:
        runner.wait_up()
        # The Huayue demo, loaded through the public RPCs, said in one line.
        assert (
            "demo: loaded Huayue (4 members, points programme v1, ladder v1, catalogue v1 with "
            "3 rewards stocked, 8 journeys, 1 challenge, "
            f"{history_line()})\n" in runner.output
        ), runner.output
        ports = _ports(suite_env)
        assert asyncio.run(_resolve_demo_member(ports["identity"], data_dir)) == "王*"
        for name, port in ports.items():
            if name != "gateway_http":
                assert asyncio.run(_serving(port)) == health_pb2.HealthCheckResponse.SERVING

        http = f"http://127.0.0.1:{ports['gateway_http']}"
        response = httpx.get(f"{http}/healthz", timeout=5)
        assert response.status_code == 200, response.text
        assert response.json()["services"] == {name: "SERVING" for name in SERVICES}
        # The development API client the runner made: a token, then the HTTP API.
        made = json.loads((data_dir / "demo-api-client.json").read_text())
        token = httpx.post(
            f"{http}/v1/token", auth=(made["client_id"], made["client_secret"]), timeout=5
        ).json()["access_token"]
        ladder = httpx.get(
            f"{http}/v1/ladder", headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
        assert ladder.status_code == 200, ladder.text
        assert [t["code"] for t in ladder.json()["ladder"]["tiers"]][2] == "gold"
        # The development console operator: printed with the console's URL, and it signs in.
        login = json.loads((data_dir / "console-login").read_text())
        assert (data_dir / "console-login").stat().st_mode & 0o077 == 0
        assert f"{http}/console/   sign in as dev-admin / {login['password']}" in runner.output
        with httpx.Client(base_url=http, timeout=5) as browser:
            form = browser.get("/console/login").text
            csrf = re.search(r'name="csrf" value="([^"]+)"', form)
            assert csrf, form
            signed = browser.post(
                "/console/login",
                data={"csrf": csrf.group(1), **login},
                headers={"Origin": http},
            )
            assert signed.status_code == 303, signed.text
            assert "dev-admin" in browser.get("/console/").text

        # One token, signed with the folder's key, verified by all seven services.
        settings = _settings(suite_env)
        state = asyncio.run(_demo_state(settings))
        assert state["programme"] == 1
        assert state["ladder"] == (1, ["basic", "silver", "gold", "platinum", "diamond"])
        assert state["catalogue"] == (1, 3)
        assert state["overview"] is True
        assert state["journeys"] == sorted(
            (name, True)
            for name in (
                "Win-back: 90 days without a purchase",
                "Points expiring within 30 days",
                "First hotel stay: a cinema ticket",
                *(f"Welcome gift: {tier}" for tier in ("silver", "gold", "platinum", "diamond")),
                "Birthday gift: silver and up",
            )
        )
        assert len(state["members"]) > 4  # type: ignore[arg-type]  # and the imported ones
        # The demo loader again: it finds everything and changes nothing.
        assert asyncio.run(demo.load(settings, HISTORY)) == (
            "demo: found the programme in place, nothing loaded"
        )
        assert asyncio.run(_demo_state(settings)) == state

        # The command lines take the suite's settings from <data folder>/env.
        assert f". {data_dir}/env" in runner.output
        cli_env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
        cli_env.update(_exports(data_dir / "env"))
        listed = subprocess.run(
            [str(BIN / "loyalty-gateway"), "clients", "list"],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listed.returncode == 0, listed.stderr
        assert made["client_id"] in listed.stdout
        operators = subprocess.run(
            [str(BIN / "loyalty-gateway"), "operators", "list"],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert operators.returncode == 0, operators.stderr
        assert operators.stdout.startswith("dev-admin\tgroup_admin\tgroup\tactive\t")
        code = runner.interrupt()
    finally:
        runner.kill()
    text = runner.output
    assert code == 0, text
    assert ALL_EXITED_CLEANLY in text, text
    for port in _ports(suite_env).values():
        assert not port_open("127.0.0.1", port)
    assert not (data_dir / "env").exists()  # its settings went with the suite
    assert _folder_processes(data_dir) == []
    # Nothing personal or secret in what the suite printed.
    assert "password" not in text.lower()


def test_a_service_failing_at_start_stops_the_runner_at_once_naming_it(
    suite_env: dict[str, str],
) -> None:
    suite_env["LOYALTY_BENEFITS_BIRTHDAY_INTERVAL_SECONDS"] = "not-a-number"  # benefits only
    runner = Runner(suite_env)
    code = runner.finish(timeout=120)
    took = time.monotonic() - runner.started
    text = runner.output
    assert code == 1, text
    assert "could not start the suite: benefits exited during start (exit code 1)" in text, text
    said = text[text.index("could not start the suite: benefits exited") :]
    assert "birthday_interval_seconds" in said  # its last lines, with the reason
    assert "did not become SERVING" not in text
    assert took < 55, f"{took:.0f}s: the runner waited for its 60 s start timeout"
    # The others are stopped: cleanly (0), or by the signal itself (-15) when it reached one
    # still importing, before its handler was in place (seen on a loaded CI run).
    codes = dict(item.split() for item in text.split("exit codes: ")[-1].split(")")[0].split(", "))
    assert codes.pop("benefits") == "1", text
    assert set(codes) == {"identity", "points", "tiers", "insights", "engagement", "gateway"}, text
    assert set(codes.values()) <= {"0", "-15"}, text
    for port in _ports(suite_env).values():
        assert not port_open("127.0.0.1", port)


def test_a_port_held_by_another_program_is_named_with_its_setting(
    suite_env: dict[str, str],
) -> None:
    port = int(suite_env["LOYALTY_POINTS_PORT"])
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        runner = Runner(suite_env)
        code = runner.finish(timeout=60)
    text = runner.output
    assert code == 1, text
    assert f"port {port} is taken by " in text, text
    assert f"(pid {os.getpid()}" in text, text  # this test's own process holds it
    assert "set LOYALTY_POINTS_PORT to a free port" in text, text


def test_after_the_runner_is_killed_the_next_run_on_its_folder_starts_cleanly(
    suite_env: dict[str, str],
) -> None:
    data_dir = Path(suite_env["LOYALTY_DATA_DIR"])
    embedded = "LOYALTY_DATABASE_URL" not in suite_env
    ports = list(_ports(suite_env).values())
    first = Runner(suite_env)
    try:
        first.wait_up()
        first.process.send_signal(signal.SIGKILL)
        first.finish()
        # The services die with their runner ...
        deadline = time.monotonic() + 60
        while any(port_open("127.0.0.1", port) for port in ports):
            assert time.monotonic() < deadline, "services outlived their runner"
            time.sleep(0.5)
    finally:
        first.kill()
    # ... while its embedded servers are left running, for the next run to deal with.
    if embedded:
        assert len(_folder_processes(data_dir)) >= 2
    second = Runner(suite_env)
    try:
        second.wait_up()
        if embedded:
            assert "postgres: took over the server a stopped run left running" in second.output
            assert "nats: stopped the server a stopped run left running" in second.output
        # The demo is there already: nothing is loaded twice.
        assert "demo: found the programme in place, nothing loaded\n" in second.output
        assert asyncio.run(_resolve_demo_member(_ports(suite_env)["identity"], data_dir)) == "王*"
        code = second.interrupt()
    finally:
        second.kill()
    text = second.output
    assert code == 0, text
    assert ALL_EXITED_CLEANLY in text, text
    assert _folder_processes(data_dir) == []


def test_a_nats_server_left_without_a_pid_file_is_found_by_its_folder_and_stopped(
    tmp_path: Path,
) -> None:
    """What a runner before pid files left behind: a nats-server holding the folder's store
    and its port; the next start stops it and starts its own."""
    store, port = (tmp_path / "nats").resolve(), free_port()
    store.mkdir()
    orphan = subprocess.Popen(
        [nats_server_binary(), "--jetstream", "--store_dir", str(store), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    nats = EmbeddedNats(store, port)
    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port):
            assert time.monotonic() < deadline and orphan.poll() is None
            time.sleep(0.1)
        nats.start()
        assert nats.stopped_stale == orphan.pid
        assert orphan.wait(10) is not None
        assert port_open("127.0.0.1", port)  # its own server now
        assert int((store / "nats-server.pid").read_text()) != orphan.pid
    finally:
        nats.stop()
        if orphan.poll() is None:
            orphan.kill()
    assert not (store / "nats-server.pid").exists()


def _answer(command: Callable[[], int | None]) -> int:
    """A command line's exit code, whether it returns or exits."""
    try:
        return command() or 0
    except SystemExit as exit:
        return int(exit.code or 0)


def test_every_command_line_answers_help_without_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from loyalty_benefits.app import SPEC as BENEFITS
    from loyalty_devstack import cli
    from loyalty_engagement.app import SPEC as ENGAGEMENT
    from loyalty_gateway.app import SPEC as GATEWAY
    from loyalty_identity.app import SPEC as IDENTITY
    from loyalty_insights.app import SPEC as INSIGHTS
    from loyalty_kit import server
    from loyalty_points.app import SPEC as POINTS
    from loyalty_tiers.app import SPEC as TIERS

    for key in [k for k in os.environ if k.startswith("LOYALTY_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    helps: list[tuple[str, Callable[[], int | None]]] = [
        *(
            (f"loyalty-{spec.name} --help", functools.partial(server.main, spec, ["--help"]))
            for spec in (IDENTITY, POINTS, TIERS, BENEFITS, INSIGHTS, ENGAGEMENT, GATEWAY)
        ),
        (
            "loyalty-identity rotate-keys --help",
            functools.partial(server.main, IDENTITY, ["rotate-keys", "--help"]),
        ),
        (
            "loyalty-gateway clients --help",
            functools.partial(server.main, GATEWAY, ["clients", "--help"]),
        ),
        (
            "loyalty-gateway clients create --help",
            functools.partial(server.main, GATEWAY, ["clients", "create", "--help"]),
        ),
        (
            "loyalty-gateway operators create --help",
            functools.partial(server.main, GATEWAY, ["operators", "create", "--help"]),
        ),
        ("loyalty-dev --help", functools.partial(cli.main, ["--help"])),
        ("loyalty-dev reliability --help", functools.partial(cli.main, ["reliability", "--help"])),
    ]
    for name, command in helps:
        assert _answer(command) == 0, name
        out = capsys.readouterr().out
        assert "usage:" in out, (name, out)
    # A command that does need the database says what to set, instead of a traceback.
    assert _answer(functools.partial(server.main, GATEWAY, ["clients", "list"])) == 2
    said = capsys.readouterr().err
    assert "LOYALTY_DATABASE_URL is not set" in said and ". .loyalty/env" in said
    # And as a user meets it: the installed command, in an empty environment.
    bare = subprocess.run(
        [str(BIN / "loyalty-gateway"), "clients", "--help"],
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bare.returncode == 0 and "usage:" in bare.stdout, bare.stderr


ROUNDS = 10  # folders raced for, one after the other: a narrow race shows within a few


def _make_keys(root: Path, start: Any, answers: Any) -> None:
    from loyalty_identity.adapters.crypto import development_keys_file

    for round in range(ROUNDS):
        folder = root / f"data{round}"
        start.wait()
        try:
            answers.put((round, development_keys(folder)[1], development_keys_file(folder)[1]))
        except BaseException as error:
            answers.put((round, repr(error), ""))


def test_every_process_of_a_folder_gets_the_same_development_keys(tmp_path: Path) -> None:
    """Eight processes making a folder's keys at the same moment: none fails, all hold the
    same keys."""
    forking = multiprocessing.get_context("fork")
    start, answers = forking.Barrier(8), forking.Queue()
    racing = [forking.Process(target=_make_keys, args=(tmp_path, start, answers)) for _ in range(8)]
    for process in racing:
        process.start()
    got = [answers.get(timeout=60) for _ in range(8 * ROUNDS)]
    for process in racing:
        process.join(30)
    assert [process.exitcode for process in racing] == [0] * 8
    for round in range(ROUNDS):
        held = {(auth, identity) for r, auth, identity in got if r == round}
        assert len(held) == 1 and next(iter(held))[0].startswith("dev-"), held
        folder = tmp_path / f"data{round}"
        assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
            "auth-keys.json",
            "identity-keys.json",
        ]


def test_migrate_command_is_safe_to_run_from_several_replicas(
    infra: Infrastructure, run_id: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
    env.update(
        LOYALTY_DATABASE_URL=infra.database_url,
        LOYALTY_DATABASE_PREFIX=f"{run_id}_cli_",
        LOYALTY_LOG_FORMAT="console",
    )
    replicas = [
        subprocess.Popen(
            [str(BIN / "loyalty-points"), "migrate"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=60)[0] for p in replicas]
    assert [p.returncode for p in replicas] == [0, 0, 0], outputs
    config = migrations.alembic_config("loyalty_points:migrations")
    head = ScriptDirectory.from_config(config).get_current_head()
    assert all(f"database {run_id}_cli_points at {head}" in out for out in outputs), outputs
