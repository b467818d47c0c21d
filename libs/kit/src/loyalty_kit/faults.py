"""A fault hook for the reliability scenarios (`loyalty-dev reliability`): off unless its
environment variable is set, which only that harness does.

`LOYALTY_FAULT_KILL_AFTER_COMMIT=<Method>:<N>`: the process kills itself (SIGKILL: no cleanup,
as `kill -9`) right after the transaction of the Nth call of `<Method>` (e.g. `EarnPoints`)
made through `run_idempotent` has committed, before the answer goes out. It is the one moment
a kill from outside cannot aim at: the change is on the ledger, the caller has no answer, and
its retry with the same request_id must get the first answer, not a second change.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass

KILL_AFTER_COMMIT = "LOYALTY_FAULT_KILL_AFTER_COMMIT"


@dataclass
class KillAfterCommit:
    method: str
    nth: int
    seen: int = 0

    @classmethod
    def parse(cls, value: str) -> KillAfterCommit:
        """`EarnPoints:30`; ValueError for anything else."""
        method, _, nth = value.partition(":")
        if not method or not nth.isdigit() or int(nth) < 1:
            raise ValueError(f"{KILL_AFTER_COMMIT} must be <Method>:<N> (N >= 1), not {value!r}")
        return cls(method, int(nth))

    def due(self, scope: str) -> bool:
        """Count a commit of the request scope `<service>/<Method>:<client>`; True at the Nth
        of the method."""
        method = scope.partition("/")[2].partition(":")[0]
        if method != self.method:
            return False
        self.seen += 1
        return self.seen == self.nth


_armed: KillAfterCommit | None = None
_read = False


def _hook() -> KillAfterCommit | None:
    global _armed, _read
    if not _read:
        value = os.environ.get(KILL_AFTER_COMMIT, "")
        _armed = KillAfterCommit.parse(value) if value else None
        _read = True
    return _armed


def after_commit(scope: str) -> None:
    """Called by `run_idempotent` between its commit and its answer."""
    hook = _hook()
    if hook is not None and hook.due(scope):
        print(
            f"fault: killed after committing {hook.method} #{hook.nth} ({KILL_AFTER_COMMIT})",
            file=sys.stderr,
            flush=True,
        )
        os.kill(os.getpid(), signal.SIGKILL)
