"""The C allocator of a long-running service process: resident memory that stays flat.

A request is parsed into buffers that live for one call, up to gRPC's 4 MB limit. glibc's
malloc serves a block above its mmap threshold (128 KiB) with its own mapping, returned to
the system when freed, but then raises the threshold to that block's size (up to 32 MiB): after
a few large requests, large buffers come from the heap, and a freed one lying between blocks
still in use is never given back; each thread's arena (up to 8 per core) does the same. Under
a long mixed load a service's resident memory then climbs with the largest requests it has met
(tiers from 100 to 411 MB in 23 minutes of fuzzing) while its Python heap stays the same.

A fixed threshold (setting it also stops the adjustment) and two arenas keep it flat, for no
measurable cost here. `MALLOC_MMAP_THRESHOLD_` / `MALLOC_ARENA_MAX` in the environment win.

The cyclic garbage collector: once a service has started, what it has loaded (modules,
contracts, tables, its root; about 200,000 objects) lives as long as the process. Each full
collection walked all of it again, and bulk work that keeps thousands of rows alive a while
(an import's chunks) sets off a full collection every few chunks: 0.3-0.4 s each on the 2-core
machine, over a second of every ten of an order import. `freeze_start_up_objects` moves them
out of the collector's reach once the service is up: full collections then walk only what came
after. A service stopping gives them back (`gc.unfreeze`: in a process that runs services one
after another, as tests do, a stopped one's cycles are collected again).
"""

from __future__ import annotations

import ctypes
import gc
import os

# mallopt(3) parameters (glibc's malloc.h)
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's initial value, kept
ARENA_MAX = 2

SETTINGS = (
    ("MALLOC_MMAP_THRESHOLD_", M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
    ("MALLOC_ARENA_MAX", M_ARENA_MAX, ARENA_MAX),
)


def bound_allocator() -> bool:
    """Apply the settings where the C library is glibc; False where it is not (nothing to do
    there, or another allocator with its own behaviour)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    applied = True
    for variable, parameter, value in SETTINGS:
        if variable not in os.environ:
            applied = mallopt(parameter, value) == 1 and applied
    return applied


def freeze_start_up_objects() -> int:
    """Collect once, then leave every object alive now out of later collections (see above);
    how many objects are frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
