"""Development secrets kept in the data folder, made once however many processes ask at once.

`make run` starts five processes on one data folder and each may be the first to need a
development key. The first one writes the file whole under a lock (a unique temporary file,
then `os.link`, which never replaces an existing file); every other process waits for the lock
and reads what the first one wrote, so all of them hold the same key.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock = path.with_name(f".{path.name}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def create_once(path: Path, make: Callable[[], str]) -> str:
    """The text of `path`, written from `make()` (mode 0600) by whichever process comes first."""
    if path.exists():
        return path.read_text()  # only ever linked in whole, never seen half-written
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        if not path.exists():
            temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "w") as out:
                    out.write(make())
                    out.flush()
                    os.fsync(out.fileno())
                # Made meanwhile without the lock (an older process)? Theirs stands.
                with contextlib.suppress(FileExistsError):
                    os.link(temporary, path)
            finally:
                temporary.unlink(missing_ok=True)
    return path.read_text()
