"""Who the demo loader calls as (the group's admin), and what each of its loaders answers."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from loyalty_kit.auth import ServiceCredentials
from loyalty_kit.caller import Caller
from loyalty_kit.settings import Settings

DEMO_CALLER = Caller(unit="group", client_id="demo-loader", scopes=frozenset({"admin"}))


def demo_metadata(settings: Settings) -> tuple[tuple[str, str], ...]:
    """How the loader calls: a bearer token signed with the development key (so it works
    whether or not the services trust caller headers), or the headers without one."""
    return ServiceCredentials.from_settings("demo-loader", settings.data_dir).metadata(DEMO_CALLER)


@dataclass(frozen=True)
class Part:
    """One part of the demo: what it is (`4 members`, `ladder v1`) and whether this load wrote
    it (False: found in place)."""

    what: str
    loaded: bool


def not_there(error: grpc.aio.AioRpcError) -> bool:
    """A read answered "nothing yet" (no programme, ladder or catalogue; no such member)."""
    return bool(error.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND))
