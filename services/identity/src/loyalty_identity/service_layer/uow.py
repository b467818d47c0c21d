"""The identity service's unit of work: the kit's (session, outbox, idempotency) plus members,
member imports, order imports and sign-ins; on commit, the events the members recorded (and those
recorded on the unit of work itself, a chunk's MembersImported or LegacyOrdersImported) go to
the outbox, in the same transaction."""

from __future__ import annotations

from typing import Self

from loyalty_kit.uow import UnitOfWork
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from loyalty_identity.adapters.crypto import Keyring
from loyalty_identity.adapters.erasures import ErasureStore
from loyalty_identity.adapters.events import to_message
from loyalty_identity.adapters.identity_types import IdentityTypeCache
from loyalty_identity.adapters.imports import ImportStore
from loyalty_identity.adapters.member_codes import MemberCodeStore
from loyalty_identity.adapters.order_imports import OrderImportStore
from loyalty_identity.adapters.repository import MemberRepository
from loyalty_identity.adapters.sign_in import SignInStore
from loyalty_identity.domain.events import Event


class IdentityUnitOfWork(UnitOfWork):
    members: MemberRepository
    imports: ImportStore
    order_imports: OrderImportStore
    member_codes: MemberCodeStore
    sign_in: SignInStore  # sign-in challenges, member sessions and refresh tokens
    erasures: ErasureStore  # members' own erasure requests

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        namespace: str,
        keyring: Keyring,
        types: IdentityTypeCache | None = None,
        *,
        read_only: bool = False,
    ) -> None:
        super().__init__(sessions, namespace, read_only=read_only)
        self.keyring = keyring
        self.types = types or IdentityTypeCache(ttl=0)
        self.fingerprint_key = keyring.index_key

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.members = MemberRepository(self.session, self.keyring, self.types)
        self.imports = ImportStore(self.session, self.keyring, self.types)
        self.order_imports = OrderImportStore(self.session, self.keyring)
        self.member_codes = MemberCodeStore(self.session, self.keyring)
        self.sign_in = SignInStore(self.session, self.keyring)
        self.erasures = ErasureStore(self.session)
        self._recorded: list[Event] = []
        return self

    def record(self, event: Event) -> None:
        """An event that is no member's own (a chunk's MembersImported)."""
        self._recorded.append(event)

    def collect_new_events(self) -> list[Event]:
        found: list[Event] = []
        for member in self.members.seen:
            found.extend(member.events)
            member.events.clear()
        found += self._recorded  # after the members' own (a merge before the rows it joined)
        self._recorded = []
        return found

    async def write_events(self) -> None:
        await self.outbox.add_all([to_message(event) for event in self.collect_new_events()])
