"""Idempotency of mutating RPCs by `request_id` (AIP-155).

In the transaction of the change, `claim` inserts (scope, request_id) with a fingerprint of the
request. A concurrent duplicate blocks on the primary key until the first transaction ends: if it
committed, the duplicate reads the stored response; if it rolled back, the duplicate proceeds as
the first. `store` saves the response in the same transaction, so a retry after any failure
either finds the complete first answer or nothing at all.

The same request_id with a different request is refused: INVALID_ARGUMENT, REQUEST_ID_REUSED.
A retry answered with the stored response is a replay for the audit log (`audit.replayed`): it
writes no entry, the first call's stands.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
from google.protobuf.message import Message
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_kit import audit, faults
from loyalty_kit.db import database_unavailable, driver_connection
from loyalty_kit.errors import FieldViolation, InvalidArgument
from loyalty_kit.logs import get_logger

if TYPE_CHECKING:
    from loyalty_kit.uow import UnitOfWork

M = TypeVar("M", bound=Message)
log = get_logger("loyalty.idempotency")

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")


def validate_request_id(request_id: str, field: str = "request_id") -> None:
    if not request_id:
        raise InvalidArgument.of(
            [FieldViolation(field, "required: a unique id per operation, reused on retries")]
        )
    if not REQUEST_ID_PATTERN.match(request_id):
        raise InvalidArgument.of(
            [FieldViolation(field, "1-128 characters: letters, digits, '.', '_', ':', '-'")]
        )


def fingerprint(
    request: Message, key: bytes | None = None, ignore: tuple[str, ...] = ("request_id",)
) -> str:
    """A stable hash of the request without the fields that may differ between retries.

    Keyed (HMAC) when the request holds personal data, so the stored hash of a phone number
    cannot be reversed by trying every phone number."""
    copy = type(request)()
    copy.CopyFrom(request)
    for name in ignore:
        if name in copy.DESCRIPTOR.fields_by_name:
            copy.ClearField(name)
    body = copy.SerializeToString(deterministic=True)
    if key is not None:
        return hmac.new(key, body, hashlib.sha256).hexdigest()
    return hashlib.sha256(body).hexdigest()


def request_id_reused(request_id: str) -> InvalidArgument:
    """The refusal of a request_id already used for a different request (for services that
    keep their own idempotency record, like a saga spanning several transactions)."""
    return InvalidArgument(
        "request_id was already used for a different request",
        reason="REQUEST_ID_REUSED",
        metadata={"request_id": request_id},
        field_violations=[FieldViolation("request_id", "already used for a different request")],
    )


class IdempotencyKeys:
    def __init__(self, session: AsyncSession, fingerprint_key: bytes | None = None) -> None:
        self.session = session
        self.fingerprint_key = fingerprint_key

    async def claim(
        self, scope: str, request_id: str, request: Message, response_type: type[M]
    ) -> M | None:
        """None if this call is the first with the id (go on); else the first call's response."""
        validate_request_id(request_id)
        print_ = fingerprint(request, self.fingerprint_key)
        conn = await driver_connection(self.session)
        # A concurrent duplicate blocks on the key until the first transaction ends.
        inserted = await conn.fetchval(
            "INSERT INTO kit_idempotency_keys (scope, request_id, fingerprint) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING RETURNING true",
            scope,
            request_id,
            print_,
        )
        if inserted:
            return None
        row = await conn.fetchrow(
            "SELECT fingerprint, response FROM kit_idempotency_keys "
            "WHERE scope = $1 AND request_id = $2",
            scope,
            request_id,
        )
        assert row is not None
        if row["fingerprint"] != print_:
            raise request_id_reused(request_id)
        response = response_type()
        if row["response"] is not None:
            response.ParseFromString(row["response"])
        audit.replayed()
        return response

    async def recall(
        self, scope: str, request_id: str, request: Message, response_type: type[M]
    ) -> M | None:
        """The answer remembered for this request_id, if any (no claim, no lock)."""
        validate_request_id(request_id)
        conn = await driver_connection(self.session)
        row = await conn.fetchrow(
            "SELECT fingerprint, response FROM kit_idempotency_keys "
            "WHERE scope = $1 AND request_id = $2 AND response IS NOT NULL",
            scope,
            request_id,
        )
        if row is None:
            return None
        if row["fingerprint"] != fingerprint(request, self.fingerprint_key):
            raise request_id_reused(request_id)
        response = response_type()
        response.ParseFromString(row["response"])
        audit.replayed()
        return response

    async def settled(self, scope: str, request_id: str, response_type: type[M]) -> M | None:
        """The answer a request_id got, or None if it was never taken (or was refused), without
        taking anything. A claim whose transaction is still in flight is invisible to a plain
        read, so a probe insert waits for it to end; the caller's transaction must then roll
        back (never commit), which removes the probe."""
        validate_request_id(request_id)
        conn = await driver_connection(self.session)
        probed = await conn.fetchval(
            "INSERT INTO kit_idempotency_keys (scope, request_id, fingerprint) "
            "VALUES ($1, $2, '') ON CONFLICT DO NOTHING RETURNING true",
            scope,
            request_id,
        )
        if probed:
            return None
        kept = await conn.fetchval(
            "SELECT response FROM kit_idempotency_keys WHERE scope = $1 AND request_id = $2",
            scope,
            request_id,
        )
        if kept is None:
            return None
        response = response_type()
        response.ParseFromString(kept)
        return response

    async def remember(self, scope: str, request_id: str, request: Message, response: M) -> M:
        """Keep `response` as this request_id's answer; if another was kept first, that one."""
        conn = await driver_connection(self.session)
        inserted = await conn.fetchval(
            "INSERT INTO kit_idempotency_keys (scope, request_id, fingerprint, response) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true",
            scope,
            request_id,
            fingerprint(request, self.fingerprint_key),
            response.SerializeToString(deterministic=True),
        )
        if inserted:
            return response
        first = await self.recall(scope, request_id, request, type(response))
        return first if first is not None else response

    async def store(self, scope: str, request_id: str, response: Message) -> None:
        conn = await driver_connection(self.session)
        await conn.execute(
            "UPDATE kit_idempotency_keys SET response = $3 WHERE scope = $1 AND request_id = $2",
            scope,
            request_id,
            response.SerializeToString(deterministic=True),
        )


def request_scope(service: str, method: str) -> str:
    """Where a request_id is unique: one method, one API client (two clients may well pick
    the same ids)."""
    from loyalty_kit.caller import current_caller

    return f"{service}/{method}:{current_caller().client_id}"


async def run_idempotent(
    uow_factory: Callable[[], UnitOfWork],
    scope: str,
    request: Message,
    response_type: type[M],
    work: Callable[[Any], Awaitable[M]],
    *,
    attempts: int = 3,
) -> M:
    """The whole life of a mutating RPC: claim its request_id, do the work, store the answer,
    commit, all in one transaction. A conflict with a concurrent transaction (a unique key
    taken meanwhile, a serialization failure) re-runs it from the start, where it will see
    what the other transaction committed."""
    request_id = getattr(request, "request_id")  # noqa: B009 (every mutating request has one)
    for attempt in range(1, attempts + 1):
        try:
            async with uow_factory() as uow:
                first = await uow.idempotency.claim(scope, request_id, request, response_type)
                if first is not None:
                    return first
                response = await work(uow)
                await uow.idempotency.store(scope, request_id, response)
                await uow.commit()
            faults.after_commit(scope)  # off unless the reliability harness arms it
            return response
        except (DBAPIError, asyncpg.PostgresError) as error:
            if attempt == attempts or not is_transient_conflict(error):
                raise
    raise AssertionError("unreachable")


async def run_remembered(
    uow_factory: Callable[[], UnitOfWork],
    scope: str,
    request: Message,
    response_type: type[M],
    work: Callable[[], Awaitable[M]],
) -> M:
    """For a flow of calls to services that are each idempotent by their own request ids (a
    composite flow): the first answer is kept and given to every retry, but no transaction is
    held while the flow runs. Duplicates running at once each run the flow (the services
    beneath take it once) and all answer with the answer kept first.

    The services having done the work, an answer that cannot be kept (this service's own
    database unavailable) is still given: a retry runs the flow again, and the services
    beneath answer it with what they took the first time. Likewise a first answer that cannot
    be looked up does not stop the flow."""
    request_id = getattr(request, "request_id")  # noqa: B009 (every mutating request has one)
    try:
        # One statement each way, in autocommit: no BEGIN and COMMIT round trips around it.
        async with _autocommit(uow_factory()) as uow:
            first = await uow.idempotency.recall(scope, request_id, request, response_type)
    except Exception as error:
        if not database_unavailable(error):
            raise
        log.warning("answers cannot be looked up: database unavailable", scope=scope)
        first = None
    if first is not None:
        return first
    response = await work()
    try:
        # An audited call's entry goes in with the answer, in one transaction; otherwise the
        # answer is one insert, atomic on its own (and a read of the first one kept, if any).
        uow = uow_factory()
        async with uow if audit.pending() is not None else _autocommit(uow):
            kept = await uow.idempotency.remember(scope, request_id, request, response)
            await uow.commit()
    except Exception as error:
        if not database_unavailable(error):
            raise
        log.warning("answer given but not kept: database unavailable", scope=scope)
        return response
    return kept


def _autocommit(uow: UnitOfWork) -> UnitOfWork:
    """A unit of work whose statements each commit on their own (`UnitOfWork.read_only`)."""
    uow.read_only = True
    return uow


def is_transient_conflict(error: DBAPIError | asyncpg.PostgresError) -> bool:
    """Unique violation, serialization failure or deadlock: worth running again. Raised through
    SQLAlchemy, or straight from asyncpg for SQL run on the driver connection."""
    code: str | None
    if isinstance(error, asyncpg.PostgresError):
        code = error.sqlstate
    else:
        code = getattr(error.orig, "sqlstate", None) or getattr(
            getattr(error.orig, "__cause__", None), "sqlstate", None
        )
    return code in {"23505", "40001", "40P01"}
