"""The checkout log (`checkouts`, in the gateway's database): one row per API client's
checkout request, the attempt running it, its state and its first answer.

States: `running` (an attempt takes its parts; its owner renews `updated_at`, the lease),
`undoing` (given up, its parts to be given back), `open` (nothing held: the next call with the
same request_id starts a new attempt), `completed` (the answer kept for every retry) and
`refunded` (its order refunded). Rows are never deleted. The log is one repository over a unit
of work's session: what the saga writes between its calls, never held open across them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from loyalty.gateway.v1 import gateway_service_pb2 as pb
from loyalty_kit.db import driver_connection
from loyalty_kit.resources import member_name
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass
class Attempt:
    """One attempt at a checkout, as the log keeps it (the request without the identity used
    to find the member)."""

    checkout_id: str
    client_id: str
    unit: str
    order_id: str
    member_id: str
    attempt: int
    request: pb.RedeemAtCheckoutRequest

    def step_id(self, step: str, undo: bool = False) -> str:
        """The request id of one step of this attempt (or of giving it back)."""
        return f"co.{self.checkout_id}.{self.attempt}:{step}{'-undo' if undo else ''}"

    @property
    def member(self) -> str:
        return member_name(self.member_id)


@dataclass(frozen=True)
class Logged:
    """A checkout already in the log, locked until the transaction ends."""

    checkout_id: str
    fingerprint: str
    state: str
    attempt: int
    response: bytes | None

    def answer(self) -> pb.RedeemAtCheckoutResponse:
        answered = pb.RedeemAtCheckoutResponse()
        answered.ParseFromString(self.response or b"")
        return answered


class CheckoutLog:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _conn(self) -> Any:
        return await driver_connection(self.session)

    async def start(
        self,
        scope: str,
        request_id: str,
        fingerprint: str,
        client_id: str,
        unit: str,
        order_id: str,
        member_id: str,
        stored: pb.RedeemAtCheckoutRequest,
    ) -> tuple[str, int] | None:
        """A new checkout, its first attempt running: (checkout id, attempt); None when the
        request_id has one already."""
        conn = await self._conn()
        found = await conn.fetchrow(
            "INSERT INTO checkouts (checkout_id, scope, request_id, fingerprint, client_id, "
            "unit, order_id, member_id, request, state) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'running') "
            "ON CONFLICT (scope, request_id) DO NOTHING RETURNING checkout_id, attempt",
            uuid.uuid4(),
            scope,
            request_id,
            fingerprint,
            client_id,
            unit,
            order_id,
            member_id,
            stored.SerializeToString(deterministic=True),
        )
        return None if found is None else (str(found["checkout_id"]), int(found["attempt"]))

    async def locked(self, scope: str, request_id: str) -> Logged:
        """The checkout of this request_id, locked until the transaction ends."""
        conn = await self._conn()
        found = await conn.fetchrow(
            "SELECT checkout_id, fingerprint, state, attempt, response "
            "FROM checkouts WHERE scope = $1 AND request_id = $2 FOR UPDATE",
            scope,
            request_id,
        )
        assert found is not None  # rows are never deleted
        return Logged(
            str(found["checkout_id"]),
            found["fingerprint"],
            found["state"],
            int(found["attempt"]),
            found["response"],
        )

    async def next_attempt(self, checkout_id: str) -> tuple[str, int]:
        """A new attempt of an open checkout, running: (checkout id, attempt)."""
        conn = await self._conn()
        found = await conn.fetchrow(
            "UPDATE checkouts SET attempt = attempt + 1, state = 'running', "
            "updated_at = now() WHERE checkout_id = $1 RETURNING checkout_id, attempt",
            uuid.UUID(checkout_id),
        )
        return str(found["checkout_id"]), int(found["attempt"])

    async def move(
        self, attempt: Attempt, state: str, response: pb.RedeemAtCheckoutResponse | None
    ) -> bool:
        """Move the attempt to `state`; to `completed` only while it still runs."""
        conn = await self._conn()
        moved = await conn.fetchval(
            "UPDATE checkouts SET state = $2, response = $3, updated_at = now() "
            "WHERE checkout_id = $1 AND attempt = $4 "
            "AND (state = 'running' OR $2 <> 'completed') RETURNING true",
            uuid.UUID(attempt.checkout_id),
            state,
            response.SerializeToString(deterministic=True) if response else None,
            attempt.attempt,
        )
        return bool(moved)

    async def renew(self, attempt: Attempt) -> bool:
        """Renew the attempt's lease; False if it no longer runs (taken over)."""
        conn = await self._conn()
        renewed = await conn.fetchval(
            "UPDATE checkouts SET updated_at = now() "
            "WHERE checkout_id = $1 AND attempt = $2 AND state = 'running' RETURNING true",
            uuid.UUID(attempt.checkout_id),
            attempt.attempt,
        )
        return bool(renewed)

    async def claim_unsettled(
        self, undoing_after: float, running_after: float, limit: int
    ) -> list[Attempt]:
        """Attempts given up (`undoing`) longer than `undoing_after` seconds ago, or whose lease
        (`running`) ran out `running_after` seconds ago, now `undoing` and claimed by this
        transaction (another replica's claim is skipped)."""
        conn = await self._conn()
        rows = await conn.fetch(
            "UPDATE checkouts SET state = 'undoing', updated_at = now() "
            "WHERE checkout_id IN (SELECT checkout_id FROM checkouts "
            "  WHERE (state = 'undoing' AND updated_at < now() - make_interval(secs => $1)) "
            "  OR (state = 'running' AND updated_at < now() - make_interval(secs => $2)) "
            "  ORDER BY updated_at LIMIT $3 FOR UPDATE SKIP LOCKED) "
            "RETURNING checkout_id, client_id, unit, order_id, member_id, attempt, request",
            undoing_after,
            running_after,
            limit,
        )
        return [_attempt(row) for row in rows]

    async def completed_for_order(
        self, unit: str, order_id: str, member_id: str
    ) -> list[tuple[str, pb.RedeemAtCheckoutResponse]]:
        """The order's completed checkouts and their answers, locked until the transaction
        ends."""
        conn = await self._conn()
        rows = await conn.fetch(
            "SELECT checkout_id, response FROM checkouts WHERE unit = $1 AND order_id = $2 "
            "AND member_id = $3 AND state = 'completed' ORDER BY created_at FOR UPDATE",
            unit,
            order_id,
            member_id,
        )
        found = []
        for row in rows:
            answer = pb.RedeemAtCheckoutResponse()
            answer.ParseFromString(row["response"])
            found.append((str(row["checkout_id"]), answer))
        return found

    async def mark_refunded(self, checkout_id: str) -> None:
        conn = await self._conn()
        await conn.execute(
            "UPDATE checkouts SET state = 'refunded', updated_at = now() WHERE checkout_id = $1",
            uuid.UUID(checkout_id),
        )


def _attempt(row: Any) -> Attempt:
    request = pb.RedeemAtCheckoutRequest()
    request.ParseFromString(row["request"])
    return Attempt(
        checkout_id=str(row["checkout_id"]),
        client_id=row["client_id"],
        unit=row["unit"],
        order_id=row["order_id"],
        member_id=row["member_id"],
        attempt=int(row["attempt"]),
        request=request,
    )
