"""The identity service's composition root: everything its servicer, consumers and commands use,
built once per process from the kit's context. Tests hand in their own clock or keyring
(`runner.start(SPEC, settings, clock=clock)`)."""

from __future__ import annotations

from dataclasses import dataclass

from loyalty_kit.clock import Clock, utc_now
from loyalty_kit.server import ServiceContext

from loyalty_identity.adapters.crypto import Keyring
from loyalty_identity.adapters.identity_types import IdentityTypeCache
from loyalty_identity.service_layer.uow import IdentityUnitOfWork
from loyalty_identity.settings import keyring_for


@dataclass(frozen=True)
class Identity:
    context: ServiceContext
    clock: Clock
    keyring: Keyring  # the keys that seal members' personal data and index their identities
    types: IdentityTypeCache  # identity types, read on every call, kept a few seconds

    def uow(self, *, read_only: bool = False) -> IdentityUnitOfWork:
        return IdentityUnitOfWork(
            self.context.database,
            self.context.settings.event_namespace,
            self.keyring,
            self.types,
            read_only=read_only,
        )


def bootstrap(
    context: ServiceContext, *, clock: Clock = utc_now, keyring: Keyring | None = None
) -> Identity:
    return Identity(context, clock, keyring or keyring_for(context.settings), IdentityTypeCache())
