"""Who the demo loader calls as: the group's admin."""

from __future__ import annotations

from loyalty_kit.auth import ServiceCredentials
from loyalty_kit.caller import Caller
from loyalty_kit.settings import Settings

DEMO_CALLER = Caller(unit="group", client_id="demo-loader", scopes=frozenset({"admin"}))


def demo_metadata(settings: Settings) -> tuple[tuple[str, str], ...]:
    """How the loader calls: a bearer token signed with the development key (so it works
    whether or not the services trust caller headers), or the headers without one."""
    return ServiceCredentials.from_settings("demo-loader", settings.data_dir).metadata(DEMO_CALLER)
