"""`LOYALTY_WORKERS=2` as an operator meets it: `python -m loyalty_<name>` starts two worker
processes on the same ports (gRPC, and the gateway's HTTP), new connections reach both, SIGTERM
stops them all with exit code 0, and a worker that dies stops the others with exit code 1."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import psutil  # type: ignore[import-untyped]
import pytest
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import identity_service_pb2_grpc, member_pb2
from loyalty_devstack.embedded import Infrastructure, free_port

WAIT_SECONDS = 120  # a bound on a slow, shared machine; nothing waits for it to pass
CONNECTIONS = 32  # new connections: all on one of two workers has odds of 2**-31


class Workers:
    """A service run with LOYALTY_WORKERS=2; its JSON log lines read as they come."""

    def __init__(self, service: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"loyalty_{service}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[dict[str, Any]] = []
        self.text: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            with self._changed:
                self.text.append(raw)
                if raw.startswith("{"):
                    self.lines.append(json.loads(raw))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, what: str, found: Callable[[list[dict[str, Any]]], bool]) -> None:
        with self._changed:
            ok = self._changed.wait_for(
                lambda: found(self.lines) or self.process.poll() is not None, WAIT_SECONDS
            )
            assert ok and found(self.lines), f"no {what}:\n{''.join(self.text)}"

    def events(self, event: str) -> list[dict[str, Any]]:
        with self._changed:
            return [line for line in self.lines if line.get("event") == event]

    def started_pids(self) -> dict[int, int]:
        """worker index -> pid, from the workers' `service started` lines."""
        self.wait_for("two started workers", lambda _: len(self.events("service started")) == 2)
        return {line["worker"]: line["pid"] for line in self.events("service started")}

    def workers_answering(self, event: str) -> set[int]:
        return {line["worker"] for line in self.events(event) if "worker" in line}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def env(infra: Infrastructure, run_id: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    own = secrets.token_hex(3)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
    environment.update(
        LOYALTY_WORKERS="2",
        LOYALTY_DATABASE_URL=infra.database_url,
        LOYALTY_NATS_URL=infra.nats_url,
        LOYALTY_DATABASE_PREFIX=f"{run_id}_workers{own}_",
        LOYALTY_EVENT_NAMESPACE=f"{run_id}workers{own}",
        LOYALTY_DATA_DIR=str(tmp_path / "data"),
        LOYALTY_IDENTITY_DEV_KEYS="true",
        LOYALTY_AUTH_DEV_KEYS="true",
        LOYALTY_LOG_FORMAT="json",
        LOYALTY_METRICS_PORT="0",
        LOYALTY_SHUTDOWN_GRACE_SECONDS="1",
        LOYALTY_IDENTITY_PORT=str(free_port()),
        LOYALTY_GATEWAY_GRPC_PORT=str(free_port()),
        LOYALTY_GATEWAY_HTTP_PORT=str(free_port()),
        PYTHONUNBUFFERED="1",
    )
    yield environment


@pytest.fixture
def started(env: dict[str, str]) -> Iterator[Callable[[str], Workers]]:
    running: list[Workers] = []

    def start(service: str) -> Workers:
        workers = Workers(service, env)
        running.append(workers)
        return workers

    yield start
    for workers in running:
        workers.stop()


def _resolve_on_a_new_connection(target: str) -> None:
    # A channel of its own subchannels: a new TCP connection, which the kernel hands to
    # one of the workers' listeners.
    with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        stub = identity_service_pb2_grpc.IdentityServiceStub(channel)
        phone = "15" + str(uuid.uuid4().int)[:9]
        request = identity_pb.ResolveMemberRequest(
            identity=member_pb2.Identity(type="phone", value=phone)
        )
        with pytest.raises(grpc.RpcError) as error:
            stub.ResolveMember(request, timeout=30, wait_for_ready=True)
        # An answer from the service (an anonymous caller: refused), not from the transport.
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


def _gone(pids: list[int]) -> bool:
    return not any(psutil.pid_exists(pid) for pid in pids)


def test_two_workers_share_the_grpc_port_and_sigterm_stops_them_all_cleanly(
    env: dict[str, str], started: Callable[[str], Workers]
) -> None:
    identity = started("identity")
    pids = identity.started_pids()
    assert sorted(pids) == [0, 1] and len(set(pids.values())) == 2
    assert all(psutil.Process(pid).ppid() == identity.process.pid for pid in pids.values())
    metrics = {line["worker"]: line["metrics_port"] for line in identity.events("service started")}
    assert metrics[0] is not None and metrics[1] is None  # worker 0 serves /metrics

    for _ in range(CONNECTIONS):
        _resolve_on_a_new_connection(f"127.0.0.1:{env['LOYALTY_IDENTITY_PORT']}")
    identity.wait_for(
        "rpc lines of both workers", lambda _: identity.workers_answering("rpc") == {0, 1}
    )

    identity.process.send_signal(signal.SIGTERM)
    assert identity.process.wait(WAIT_SECONDS) == 0, "".join(identity.text)
    assert _gone(list(pids.values()))
    assert len(identity.events("service stopped")) == 2
    assert identity.events("workers stopped")[0]["exit_code"] == 0


def test_a_worker_that_dies_stops_the_others_and_the_service_exits_1(
    started: Callable[[str], Workers],
) -> None:
    identity = started("identity")
    pids = identity.started_pids()
    os.kill(pids[1], signal.SIGKILL)
    assert identity.process.wait(WAIT_SECONDS) == 1, "".join(identity.text)
    assert _gone(list(pids.values()))
    died = identity.events("worker exited; stopping the others")
    assert [(line["worker"], line["exit_code"]) for line in died] == [(1, -signal.SIGKILL)]


def test_the_gateways_http_port_is_shared_by_its_two_workers(
    env: dict[str, str], started: Callable[[str], Workers]
) -> None:
    gateway = started("gateway")
    gateway.started_pids()
    url = f"http://127.0.0.1:{env['LOYALTY_GATEWAY_HTTP_PORT']}/v1/no-such-path-{uuid.uuid4()}"
    for _ in range(CONNECTIONS):
        with httpx.Client() as client:  # a new connection each time
            assert client.get(url).status_code == 404
    gateway.wait_for(
        "access lines of both workers",
        lambda _: gateway.workers_answering("http") == {0, 1},
    )
    gateway.process.send_signal(signal.SIGTERM)
    assert gateway.process.wait(WAIT_SECONDS) == 0, "".join(gateway.text)
