"""CPU time of processes from /proc, for CPU seconds per operation of every server process.

A `Group` is a named set of root processes (a service, PostgreSQL's postmaster, NATS) and every
descendant of theirs. Its CPU time is what the kernel counts in `/proc/<pid>/stat`: user and
system time (fields 14 and 15) of every live process of the group, plus the children's time
(fields 16 and 17) its roots have waited for. A process that ends between two readings (a
PostgreSQL backend whose connection closed) moves its time from the first sum to its parent's
children's time, so the difference of two readings counts it once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


@dataclass(frozen=True)
class Stat:
    pid: int
    comm: str
    ppid: int
    own: float  # utime + stime, seconds
    children: float  # cutime + cstime (children waited for), seconds


def parse_stat(text: str) -> Stat:
    """One `/proc/<pid>/stat` line (the name in parentheses may hold spaces and parentheses)."""
    pid, rest = text.split(" (", 1)
    comm, after = rest.rsplit(") ", 1)
    fields = after.split()
    # after the name: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17)
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return Stat(
        pid=int(pid),
        comm=comm,
        ppid=int(fields[1]),
        own=(utime + stime) / TICKS,
        children=(cutime + cstime) / TICKS,
    )


def read_stat(pid: int) -> Stat | None:
    """A process's stat, or None once it has gone."""
    try:
        return parse_stat((PROC / str(pid) / "stat").read_text())
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None


def all_stats() -> dict[int, Stat]:
    found: dict[int, Stat] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (stat := read_stat(int(entry.name))) is not None:
            found[stat.pid] = stat
    return found


def descendants(roots: Iterable[int], stats: Mapping[int, Stat]) -> set[int]:
    """The roots (those alive) and every process below them."""
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    found: set[int] = set()
    todo = [pid for pid in roots if pid in stats]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


@dataclass(frozen=True)
class Group:
    """`roots` and their descendants; with `tree=False` the roots alone (a runner whose
    children are counted in groups of their own)."""

    name: str
    roots: tuple[int, ...]
    tree: bool = True

    def members(self, stats: Mapping[int, Stat]) -> set[int]:
        if self.tree:
            return descendants(self.roots, stats)
        return {pid for pid in self.roots if pid in stats}

    def cpu_seconds(self, stats: Mapping[int, Stat]) -> float:
        own = sum(stats[pid].own for pid in self.members(stats))
        if not self.tree:
            return own
        return own + sum(stats[pid].children for pid in self.roots if pid in stats)

    def processes(self, stats: Mapping[int, Stat]) -> int:
        return len(self.members(stats))


def snapshot(groups: Iterable[Group]) -> dict[str, float]:
    """Every group's CPU seconds so far, from one pass over /proc."""
    stats = all_stats()
    return {group.name: group.cpu_seconds(stats) for group in groups}


def cpu_ms_per_op(
    before: Mapping[str, float], after: Mapping[str, float], operations: int
) -> dict[str, float]:
    """Each group's CPU milliseconds per operation between two snapshots, and their `total`."""
    if operations <= 0:
        return {}
    found = {
        name: round((after[name] - before.get(name, 0.0)) * 1000.0 / operations, 3)
        for name in after
    }
    found["total"] = round(sum(found.values()), 3)
    return found


def pid_file(path: Path) -> int | None:
    """The pid on the first line of a pid file (PostgreSQL's postmaster.pid, NATS's)."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def listener(port: int) -> int | None:
    """The process listening on a local TCP port, if this user may see it."""
    import psutil  # type: ignore[import-untyped]

    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return None
    for connection in connections:
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port:
            return int(connection.pid) if connection.pid else None
    return None
