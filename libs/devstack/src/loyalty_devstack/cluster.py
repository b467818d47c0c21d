"""A NATS JetStream cluster on loopback: three nats-server processes (embedded.EmbeddedNats),
each with its own store folder, client port and route port, routed to one another under one
cluster name. For tests of what a node lost does to the services (tests/reliability/cluster).

`start` returns once JetStream has a meta leader and every node is a peer of it: a probe stream
with one replica per node is created and deleted, which only succeeds then. `url` names every
node, comma-separated, as LOYALTY_NATS_URL takes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from pathlib import Path

import nats
from nats.js.api import StorageType, StreamConfig

from loyalty_devstack.embedded import ClusterRoutes, EmbeddedNats, free_port


class NatsCluster:
    def __init__(self, data_dir: Path, *, size: int = 3, name: str = "loyalty") -> None:
        self.data_dir = data_dir.resolve()
        self.name = name
        route_ports = tuple(free_port() for _ in range(size))
        self.nodes: dict[str, EmbeddedNats] = {
            f"n{index + 1}": EmbeddedNats(
                self.data_dir / f"n{index + 1}",
                server_name=f"n{index + 1}",
                routes=ClusterRoutes(name, port, route_ports),
            )
            for index, port in enumerate(route_ports)
        }

    @property
    def url(self) -> str:
        return ",".join(node.url for node in self.nodes.values())

    @property
    def size(self) -> int:
        return len(self.nodes)

    async def start(self, timeout: float = 30.0) -> str:
        """Start every node; wait until JetStream can place a stream on all of them."""
        try:
            for node in self.nodes.values():
                await asyncio.to_thread(node.start)
            await self.wait_until_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self.url

    async def wait_until_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                await self._probe()
                return
            except Exception as error:  # no meta leader yet, a peer not joined, ...
                last = error
                await asyncio.sleep(0.25)
        logs = ", ".join(str(node.data_dir / "nats-server.log") for node in self.nodes.values())
        raise RuntimeError(f"the NATS cluster was not ready in {timeout}s ({last!r}); see {logs}")

    async def _probe(self) -> None:
        servers = [node.url for node in self.nodes.values() if node.running]
        client = await nats.connect(servers, allow_reconnect=False, connect_timeout=2)
        try:
            js = client.jetstream(timeout=2)
            name = f"PROBE_{secrets.token_hex(4).upper()}"
            await js.add_stream(
                StreamConfig(
                    name=name,
                    subjects=[f"probe.{name}"],
                    storage=StorageType.MEMORY,
                    num_replicas=self.size,
                )
            )
            await js.delete_stream(name)
        finally:
            with contextlib.suppress(Exception):
                await client.close()

    def kill(self, server_name: str) -> None:
        """SIGKILL of one node (its name as the cluster reports it, e.g. a stream's leader)."""
        self.nodes[server_name].kill()

    async def restart(self, server_name: str) -> None:
        """Start a killed node again, on its ports and store: it rejoins and catches up."""
        await asyncio.to_thread(self.nodes[server_name].start)

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()
