"""The Huayue (华悦集团) demo programme of shared/DOMAIN.md, loaded through the services' own
public RPCs (never their tables), so it doubles as a smoke test of a running suite.

Each service contributes a loader when its contract exists; a loader must be idempotent
(request ids derived from the demo data), so loading twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from loyalty_kit.settings import Settings

Loader = Callable[[Settings], Awaitable[str]]

# (service, loader) in dependency order; filled as the services' contracts land.
LOADERS: list[tuple[str, Loader]] = []


async def load(settings: Settings) -> str:
    if not LOADERS:
        return "nothing to load yet (no service exposes its programme rules)"
    done = [f"{service}: {await loader(settings)}" for service, loader in LOADERS]
    return "; ".join(done)
