"""Operators and console sessions in the gateway's database (migration 0004): argon2 hashes,
the lock-out counted in the row, sessions kept by their hash only, and disabling or a new
password ending the operator's sessions."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from loyalty_gateway.console.operators import OperatorStore, Policy
from loyalty_kit.db import driver_connection
from loyalty_kit.server import RunningService

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


async def test_lock_out_sessions_and_disabling(gateway_service: RunningService) -> None:
    uow = gateway_service.context.uow
    login = f"op-{uuid.uuid4().hex[:12]}"
    policy = Policy(max_failures=3, lockout=timedelta(minutes=15))
    async with uow() as u:
        made, password = await OperatorStore(u.session, policy).create(login, "customer_service")
        await u.commit()
    assert len(password) >= 12 and made.unit == "group"

    async def sign_in(secret: str, at: datetime) -> str:
        async with uow() as u:
            outcome = await OperatorStore(u.session, policy).sign_in(login, secret, at)
            await u.commit()
        return outcome.outcome

    assert [await sign_in("wrong one!!!", NOW) for _ in range(3)] == ["wrong", "wrong", "locked"]
    assert await sign_in(password, NOW + timedelta(minutes=14)) == "locked"
    assert await sign_in(password, NOW + timedelta(minutes=16)) == "signed_in"
    assert await sign_in(password, NOW) == "signed_in"  # the count starts again

    async with uow() as u:
        store = OperatorStore(u.session, policy)
        cookie, session = await store.open_session(made, NOW)
        await u.commit()
        conn = await driver_connection(u.session)
        stored = await conn.fetchrow(
            "SELECT session_hash, csrf_token FROM console_sessions WHERE operator_id = $1",
            uuid.UUID(made.operator_id),
        )
        hashed = await conn.fetchval("SELECT password_hash FROM operators WHERE login = $1", login)
    assert stored is not None
    assert stored["session_hash"] == hashlib.sha256(cookie.encode()).digest()
    assert hashed.startswith("$argon2id$") and password not in hashed
    async with uow() as u:
        found = await OperatorStore(u.session, policy).session_of(cookie, NOW)
        assert found is not None and found.csrf_token == session.csrf_token
        assert await OperatorStore(u.session, policy).session_of(cookie, NOW + policy.idle) is None
        new = await OperatorStore(u.session, policy).reset_password(login)
        assert await OperatorStore(u.session, policy).session_of(cookie, NOW) is None
        await u.commit()
    assert await sign_in(password, NOW) == "wrong"
    assert await sign_in(new, NOW) == "signed_in"
    async with uow() as u:
        store = OperatorStore(u.session, policy)
        cookie, _ = await store.open_session(made, NOW)
        assert (await store.disable(login)).disabled
        assert await store.session_of(cookie, NOW) is None
        await u.commit()
    assert await sign_in(new, NOW) == "wrong"
    async with uow() as u:
        with pytest.raises(ValueError):
            await OperatorStore(u.session).create(login, "analyst")
        with pytest.raises(ValueError):
            await OperatorStore(u.session).create(f"x{login}", "unit_manager")
