"""A service process gives back the memory of its large requests (glibc's malloc, see
loyalty_kit.memory): run in a fresh process, as `loyalty-<service>` runs."""

from __future__ import annotations

import gc
import os
import platform
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path
from typing import Any

import pytest
from loyalty_kit.server import ServiceSpec, start_service
from loyalty_kit.settings import Settings

# A command of a service's command line, run through the kit's `main` as a service is: after
# one large request (8 MiB), 64 request buffers of 1 MiB, every other one then freed while
# its neighbours are still in use. Prints how much of the 32 MiB freed stays resident.
PROBE = textwrap.dedent(
    """
    from loyalty_kit.server import ServiceSpec, main

    def resident_mb():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024

    async def probe(_context):
        first = b"x" * (8 * 2**20)
        del first
        before = resident_mb()
        buffers = [b"x" * 2**20 for _ in range(64)]
        del buffers[::2]
        print("retained_mb", resident_mb() - before - 32)

    main(
        ServiceSpec("probe", (), lambda _server, _context: None, commands={"probe": probe}),
        ["probe"],
    )
    """
)

glibc = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="the allocator settings are glibc's",
)


def retained_mb(extra_env: dict[str, str] | None = None) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    # A command's engine connects on first use: this one never does.
    env["LOYALTY_DATABASE_URL"] = "postgresql://postgres@127.0.0.1:9/unused"
    env.update(extra_env or {})
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("retained_mb")]
    return float(line.split()[1])


@glibc
def test_freed_request_buffers_go_back_to_the_system() -> None:
    # Without the kit's settings glibc keeps all 32 MiB (its mmap threshold rose to 8 MiB).
    assert retained_mb() < 8


@glibc
def test_the_environment_still_decides_when_it_sets_the_allocator() -> None:
    assert retained_mb({"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20)}) > 24


class _Node:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


async def test_a_started_service_keeps_its_start_up_objects_out_of_collections(
    tmp_path: Path,
) -> None:
    spec: ServiceSpec[Any, []] = ServiceSpec(
        "probe", (), lambda _server, _root: None, uses_database=False, publishes_events=False
    )
    settings = Settings(data_dir=tmp_path, nats_url="", metrics_port=0)
    before = _Node()
    kept = weakref.ref(before)
    running = await start_service(spec, settings, port=0)
    try:
        # Frozen at the start: full collections no longer walk it, nor free its cycle.
        assert gc.get_freeze_count() > 0
        assert not any(o is before for o in gc.get_objects(generation=2))
        del before
        gc.collect()
        assert kept() is not None
    finally:
        await running.stop()
    gc.collect()  # a stopped service gives them back
    assert kept() is None
