"""Members' erasure requests in PostgreSQL, on the unit of work's transaction. The confirmation
code is kept only by its keyed hash; the rows hold no personal data and stay after the erasure
(what was asked, when, and when it was done)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_identity.adapters.tables import erasure_requests
from loyalty_identity.domain.erasure import ErasureRequest, ErasureState

OPEN = (ErasureState.REQUESTED.value, ErasureState.CONFIRMED.value)


def _request(row: Any) -> ErasureRequest:
    return ErasureRequest(
        erasure_id=str(row.erasure_id),
        member_id=str(row.member_id),
        state=ErasureState(row.state),
        code_hash=row.code_hash,
        requested_at=row.requested_at,
        erase_after=row.erase_after,
        code_expires_at=row.code_expires_at,
        attempts=row.attempts,
        last_attempt=row.last_attempt,
        confirmed_at=row.confirmed_at,
        cancelled_at=row.cancelled_at,
        cancel_reason=row.cancel_reason,
        done_at=row.done_at,
    )


def _values(request: ErasureRequest) -> dict[str, Any]:
    return {
        "state": request.state.value,
        "attempts": request.attempts,
        "last_attempt": request.last_attempt,
        "confirmed_at": request.confirmed_at,
        "cancelled_at": request.cancelled_at,
        "cancel_reason": request.cancel_reason,
        "done_at": request.done_at,
    }


class ErasureStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def latest(self, member_id: str, *, lock: bool = False) -> ErasureRequest | None:
        """The member's latest request (locked for this transaction when asked)."""
        c = erasure_requests.c
        query = (
            select(erasure_requests)
            .where(c.member_id == member_id)
            .order_by(c.requested_at.desc(), c.erasure_id)
            .limit(1)
        )
        if lock:
            query = query.with_for_update()
        row = (await self.session.execute(query)).first()
        return None if row is None else _request(row)

    async def add(self, request: ErasureRequest) -> None:
        await self.session.execute(
            insert(erasure_requests).values(
                member_id=request.member_id,
                erasure_id=request.erasure_id,
                code_hash=request.code_hash,
                requested_at=request.requested_at,
                erase_after=request.erase_after,
                code_expires_at=request.code_expires_at,
                **_values(request),
            )
        )

    async def save(self, request: ErasureRequest) -> None:
        c = erasure_requests.c
        await self.session.execute(
            update(erasure_requests)
            .where(c.member_id == request.member_id, c.erasure_id == request.erasure_id)
            .values(**_values(request))
        )

    async def due(self, now: datetime, limit: int) -> list[str]:
        """Members whose confirmed request's cooling-off has passed, the longest due first."""
        c = erasure_requests.c
        rows = await self.session.execute(
            select(c.member_id)
            .where(c.state == ErasureState.CONFIRMED.value, c.erase_after <= now)
            .order_by(c.erase_after)
            .limit(limit)
        )
        return [str(r[0]) for r in rows]

    async def end_open(self, member_id: str, now: datetime) -> None:
        """The member is erased: its open request (if any) is done."""
        c = erasure_requests.c
        await self.session.execute(
            update(erasure_requests)
            .where(c.member_id == member_id, c.state.in_(OPEN))
            .values(state=ErasureState.DONE.value, done_at=now)
        )
