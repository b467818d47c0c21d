"""The channels' store, on the unit of work's transaction: webhook endpoints, deliveries (the
outbox the delivery loop drains) and unsubscribe tokens (by hash)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_engagement.adapters.tables import (
    deliveries,
    transactional_messages,
    unsubscribe_tokens,
    webhook_endpoints,
)
from loyalty_engagement.adapters.tables import journeys as journeys_table

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"


@dataclass(frozen=True)
class StoredEndpoint:
    unit: str
    purpose: str
    url: str
    secret_sealed: bytes
    updated_at: datetime


@dataclass(frozen=True)
class StoredDelivery:
    message_id: str
    member_id: str
    unit: str
    purpose: str
    url: str
    payload: str
    state: str
    attempts: int
    last_error: str
    next_attempt_at: datetime
    created_at: datetime


@dataclass(frozen=True)
class StoredToken:
    message_id: str
    member_id: str
    purpose: str
    used_at: datetime | None


def _delivery(r: object) -> StoredDelivery:
    return StoredDelivery(*(getattr(r, c.name) for c in deliveries.c if c.name != "delivered_at"))


class ChannelStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- endpoints ------------------------------------------------------------------------------

    async def set_endpoint(self, endpoint: StoredEndpoint) -> None:
        statement = insert(webhook_endpoints).values(
            unit=endpoint.unit,
            purpose=endpoint.purpose,
            url=endpoint.url,
            secret_sealed=endpoint.secret_sealed,
            updated_at=endpoint.updated_at,
        )
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=[webhook_endpoints.c.unit, webhook_endpoints.c.purpose],
                set_={
                    "url": statement.excluded.url,
                    "secret_sealed": statement.excluded.secret_sealed,
                    "updated_at": statement.excluded.updated_at,
                },
            )
        )

    async def endpoint(self, units: tuple[str, ...], purpose: str) -> StoredEndpoint | None:
        """The first of `units` (the unit's own, then the group's) with an endpoint."""
        rows = (
            await self.session.execute(
                select(webhook_endpoints).where(
                    webhook_endpoints.c.unit.in_(units), webhook_endpoints.c.purpose == purpose
                )
            )
        ).all()
        found = {r.unit: StoredEndpoint(*r) for r in rows}
        return next((found[u] for u in units if u in found), None)

    async def journey_unit(self, journey_id: str) -> str:
        unit = await self.session.scalar(
            select(journeys_table.c.unit).where(journeys_table.c.journey_id == journey_id)
        )
        return str(unit or "")

    # --- deliveries -----------------------------------------------------------------------------

    async def queue(self, delivery: StoredDelivery) -> None:
        await self.session.execute(
            insert(deliveries)
            .values(
                message_id=delivery.message_id,
                member_id=delivery.member_id,
                unit=delivery.unit,
                purpose=delivery.purpose,
                url=delivery.url,
                payload=delivery.payload,
                state=delivery.state,
                attempts=delivery.attempts,
                last_error=delivery.last_error,
                next_attempt_at=delivery.next_attempt_at,
                created_at=delivery.created_at,
            )
            .on_conflict_do_nothing()
        )

    async def due(self, now: datetime, limit: int) -> list[StoredDelivery]:
        """Pending deliveries due now, locked for this transaction; rows another replica holds
        are skipped (it is sending them)."""
        rows = await self.session.execute(
            select(deliveries)
            .where(deliveries.c.state == PENDING, deliveries.c.next_attempt_at <= now)
            .order_by(deliveries.c.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [_delivery(r) for r in rows]

    async def record(
        self,
        message_id: str,
        state: str,
        attempts: int,
        error: str,
        next_attempt_at: datetime,
        delivered_at: datetime | None,
    ) -> None:
        """An attempt's outcome. Delivered, the payload (the text and the unsubscribe token in
        clear) is not kept: the message stays in `messages`, the token by its hash."""
        values: dict[str, object] = {
            "state": state,
            "attempts": attempts,
            "last_error": error,
            "next_attempt_at": next_attempt_at,
            "delivered_at": delivered_at,
        }
        if state == DELIVERED:
            values["payload"] = ""
        await self.session.execute(
            update(deliveries).where(deliveries.c.message_id == message_id).values(**values)
        )

    async def delivery(self, message_id: str, *, for_update: bool = False) -> StoredDelivery | None:
        query = select(deliveries).where(deliveries.c.message_id == message_id)
        if for_update:
            query = query.with_for_update()
        row = (await self.session.execute(query)).first()
        return _delivery(row) if row else None

    async def deliveries(
        self, state: str, unit: str | None, before: tuple[datetime, str] | None, limit: int
    ) -> list[StoredDelivery]:
        query = select(deliveries)
        if state:
            query = query.where(deliveries.c.state == state)
        if unit is not None:
            query = query.where(deliveries.c.unit == unit)
        if before is not None:
            query = query.where(
                or_(
                    deliveries.c.created_at < before[0],
                    and_(
                        deliveries.c.created_at == before[0],
                        deliveries.c.message_id < before[1],
                    ),
                )
            )
        rows = await self.session.execute(
            query.order_by(deliveries.c.created_at.desc(), deliveries.c.message_id.desc()).limit(
                limit
            )
        )
        return [_delivery(r) for r in rows]

    # --- unsubscribe tokens ---------------------------------------------------------------------

    async def add_token(
        self, token_hash: str, message_id: str, member_id: str, purpose: str, now: datetime
    ) -> None:
        await self.session.execute(
            insert(unsubscribe_tokens)
            .values(
                token_hash=token_hash,
                message_id=message_id,
                member_id=member_id,
                purpose=purpose,
                created_at=now,
            )
            .on_conflict_do_nothing()
        )

    async def token(self, token_hash: str) -> StoredToken | None:
        row = (
            await self.session.execute(
                select(
                    unsubscribe_tokens.c.message_id,
                    unsubscribe_tokens.c.member_id,
                    unsubscribe_tokens.c.purpose,
                    unsubscribe_tokens.c.used_at,
                )
                .where(unsubscribe_tokens.c.token_hash == token_hash)
                .with_for_update()
            )
        ).first()
        return StoredToken(*row) if row else None

    async def use_token(self, token_hash: str, now: datetime) -> None:
        await self.session.execute(
            update(unsubscribe_tokens)
            .where(unsubscribe_tokens.c.token_hash == token_hash)
            .values(used_at=now)
        )

    async def forget(self, member_id: str) -> None:
        """An erased member: the deliveries (their text) and tokens go."""
        await self.session.execute(delete(deliveries).where(deliveries.c.member_id == member_id))
        await self.session.execute(
            delete(unsubscribe_tokens).where(unsubscribe_tokens.c.member_id == member_id)
        )


@dataclass(frozen=True)
class StoredTransactional:
    message_id: str
    phone_hash: str
    kind: str
    unit: str
    sealed: bytes
    created_at: datetime
    expires_at: datetime


class TransactionalStore:
    """The development sink of transactional messages (sealed, by the phone's keyed hash)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def keep(self, message: StoredTransactional) -> None:
        await self.session.execute(
            insert(transactional_messages).values(
                message_id=message.message_id,
                phone_hash=message.phone_hash,
                kind=message.kind,
                unit=message.unit,
                sealed=message.sealed,
                created_at=message.created_at,
                expires_at=message.expires_at,
            )
        )

    async def forget_expired(self, now: datetime, limit: int = 500) -> None:
        """Expired messages go (a bounded batch per send: the table stays small)."""
        expired = (
            select(transactional_messages.c.message_id)
            .where(transactional_messages.c.expires_at <= now)
            .limit(limit)
        )
        await self.session.execute(
            delete(transactional_messages).where(transactional_messages.c.message_id.in_(expired))
        )

    async def of_phone(
        self, phone_hash: str, now: datetime, before: tuple[datetime, str] | None, limit: int
    ) -> list[StoredTransactional]:
        t = transactional_messages
        query = select(t).where(t.c.phone_hash == phone_hash, t.c.expires_at > now)
        if before is not None:
            query = query.where(
                or_(
                    t.c.created_at < before[0],
                    and_(t.c.created_at == before[0], t.c.message_id < before[1]),
                )
            )
        rows = await self.session.execute(
            query.order_by(t.c.created_at.desc(), t.c.message_id.desc()).limit(limit)
        )
        return [StoredTransactional(*r) for r in rows]
