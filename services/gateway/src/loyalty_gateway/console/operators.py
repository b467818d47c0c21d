"""Operators and their console sessions, in the gateway's database (migration 0004).

Passwords are argon2id hashes (`argon2.PasswordHasher`, as API clients' secrets); an unknown
login costs the same work as a wrong password, so timing does not tell which logins exist.
A session's cookie holds 32 random bytes; only their sha256 is stored. The lock-out and the
timeouts are pure functions (`after_failure`, `session_open`), so they are tested without a
database.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from loyalty_kit.db import driver_connection
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_gateway.console.roles import role_of, unit_for

MIN_PASSWORD = 12
LOGIN_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_.@")
_hasher = PasswordHasher()
_DUMMY = _hasher.hash("not a password of anyone's")


@dataclass(frozen=True)
class Operator:
    operator_id: str
    login: str
    role: str
    unit: str
    disabled: bool = False
    locked_until: datetime | None = None


@dataclass(frozen=True)
class Policy:
    max_failures: int = 5
    lockout: timedelta = timedelta(minutes=15)
    idle: timedelta = timedelta(minutes=30)
    absolute: timedelta = timedelta(hours=12)


Outcome = Literal["signed_in", "wrong", "locked"]


@dataclass(frozen=True)
class SignIn:
    outcome: Outcome
    operator: Operator | None = None  # only when signed in
    operator_id: str = ""  # the refused operator's, when the login is one (for the audit log)
    unit: str = ""
    locked_now: bool = False  # this failure locked the account


@dataclass(frozen=True)
class Session:
    operator: Operator
    csrf_token: str
    created_at: datetime
    expires_at: datetime


def after_failure(failed: int, now: datetime, policy: Policy) -> tuple[int, datetime | None]:
    """Failures in a row after one more wrong password, and until when the operator is locked
    (the count starts again once it locks)."""
    failed += 1
    if failed >= policy.max_failures:
        return 0, now + policy.lockout
    return failed, None


def session_open(
    last_seen_at: datetime,
    expires_at: datetime,
    ended_at: datetime | None,
    now: datetime,
    policy: Policy,
) -> bool:
    """Whether a session still holds: not signed out, not idle too long, not past its end."""
    return ended_at is None and now < expires_at and now - last_seen_at < policy.idle


def session_hash(cookie: str) -> bytes:
    return hashlib.sha256(cookie.encode()).digest()


def new_password() -> str:
    return secrets.token_urlsafe(15)  # 20 characters


def check_login(login: str) -> str:
    login = login.strip().lower()
    if not 3 <= len(login) <= 64 or not set(login) <= LOGIN_CHARS:
        raise ValueError("a login is 3 to 64 of a-z, 0-9, '-', '_', '.' and '@'")
    return login


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD or len(password) > 1024:
        raise ValueError(f"a password is at least {MIN_PASSWORD} characters")
    return password


def _operator(row: Any) -> Operator:
    return Operator(
        str(row["operator_id"]),
        row["login"],
        row["role"],
        row["unit"],
        row["disabled_at"] is not None,
        row["locked_until"],
    )


_COLUMNS = "operator_id, login, role, unit, disabled_at, locked_until"


class OperatorStore:
    def __init__(self, session: AsyncSession, policy: Policy | None = None) -> None:
        self.session = session
        self.policy = policy or Policy()

    async def create(
        self, login: str, role: str, unit: str | None = None, password: str | None = None
    ) -> tuple[Operator, str]:
        """A new operator and its password (given, or made here and shown once)."""
        login = check_login(login)
        role_of(role)
        unit = unit_for(role, unit)
        password = check_password(password) if password else new_password()
        conn = await driver_connection(self.session)
        if await conn.fetchval("SELECT 1 FROM operators WHERE login = $1", login):
            raise ValueError(f"an operator {login} exists already")
        await conn.execute(
            "INSERT INTO operators (operator_id, login, role, unit, password_hash) "
            "VALUES ($1, $2, $3, $4, $5)",
            uuid.uuid4(),
            login,
            role,
            unit,
            _hasher.hash(password),
        )
        return await self.get(login), password

    async def find(self, login: str) -> Operator | None:
        conn = await driver_connection(self.session)
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM operators WHERE login = $1", login.strip().lower()
        )
        return None if row is None else _operator(row)

    async def get(self, login: str) -> Operator:
        found = await self.find(login)
        if found is None:
            raise LookupError(f"no operator {login}")
        return found

    async def list(self) -> list[Operator]:
        conn = await driver_connection(self.session)
        rows = await conn.fetch(f"SELECT {_COLUMNS} FROM operators ORDER BY created_at, login")
        return [_operator(r) for r in rows]

    async def disable(self, login: str) -> Operator:
        """No more sign-ins; its open sessions end now."""
        found = await self.get(login)
        conn = await driver_connection(self.session)
        await conn.execute(
            "UPDATE operators SET disabled_at = coalesce(disabled_at, now()) "
            "WHERE operator_id = $1",
            uuid.UUID(found.operator_id),
        )
        await self._end_all(found.operator_id)
        return await self.get(login)

    async def reset_password(self, login: str, password: str | None = None) -> str:
        """A new password (given or made); the lock-out lifts and open sessions end."""
        found = await self.get(login)
        password = check_password(password) if password else new_password()
        conn = await driver_connection(self.session)
        await conn.execute(
            "UPDATE operators SET password_hash = $2, password_changed_at = now(), "
            "failed_attempts = 0, locked_until = NULL WHERE operator_id = $1",
            uuid.UUID(found.operator_id),
            _hasher.hash(password),
        )
        await self._end_all(found.operator_id)
        return password

    async def sign_in(self, login: str, password: str, now: datetime) -> SignIn:
        """The outcome of a sign-in; the caller commits (a failure is counted too)."""
        conn = await driver_connection(self.session)
        row = await conn.fetchrow(
            "SELECT operator_id, login, role, unit, disabled_at, locked_until, password_hash, "
            "failed_attempts FROM operators WHERE login = $1 FOR UPDATE",
            login.strip().lower()[:200],
        )
        if row is None or row["disabled_at"] is not None:
            _verify(_DUMMY, password)  # the same work as a wrong password
            return SignIn("wrong")
        if row["locked_until"] is not None and row["locked_until"] > now:
            _verify(_DUMMY, password)  # as long as any other answer
            return SignIn("locked", None, str(row["operator_id"]), row["unit"])
        if not _verify(row["password_hash"], password):
            failed, locked = after_failure(row["failed_attempts"], now, self.policy)
            await conn.execute(
                "UPDATE operators SET failed_attempts = $2, locked_until = $3 "
                "WHERE operator_id = $1",
                row["operator_id"],
                failed,
                locked,
            )
            return SignIn(
                "locked" if locked else "wrong",
                None,
                str(row["operator_id"]),
                row["unit"],
                locked_now=locked is not None,
            )
        rehash = _hasher.check_needs_rehash(row["password_hash"])
        await conn.execute(
            "UPDATE operators SET failed_attempts = 0, locked_until = NULL, "
            "password_hash = coalesce($2, password_hash) WHERE operator_id = $1",
            row["operator_id"],
            _hasher.hash(password) if rehash else None,
        )
        return SignIn("signed_in", _operator(row))

    async def open_session(self, operator: Operator, now: datetime) -> tuple[str, Session]:
        """A new session: the cookie's value (shown to the browser only) and the session."""
        cookie = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        expires = now + self.policy.absolute
        conn = await driver_connection(self.session)
        await conn.execute(
            "INSERT INTO console_sessions (session_hash, operator_id, csrf_token, created_at, "
            "last_seen_at, expires_at) VALUES ($1, $2, $3, $4, $4, $5)",
            session_hash(cookie),
            uuid.UUID(operator.operator_id),
            csrf,
            now,
            expires,
        )
        return cookie, Session(operator, csrf, now, expires)

    async def session_of(self, cookie: str, now: datetime) -> Session | None:
        """The open session of a cookie (its last use moved to now), or None."""
        conn = await driver_connection(self.session)
        row = await conn.fetchrow(
            "SELECT s.csrf_token, s.created_at, s.last_seen_at, s.expires_at, s.ended_at, "
            "o.operator_id, o.login, o.role, o.unit, o.disabled_at, o.locked_until "
            "FROM console_sessions s JOIN operators o USING (operator_id) "
            "WHERE s.session_hash = $1",
            session_hash(cookie),
        )
        if row is None or row["disabled_at"] is not None:
            return None
        if not session_open(
            row["last_seen_at"], row["expires_at"], row["ended_at"], now, self.policy
        ):
            return None
        await conn.execute(
            "UPDATE console_sessions SET last_seen_at = $2 WHERE session_hash = $1",
            session_hash(cookie),
            now,
        )
        return Session(_operator(row), row["csrf_token"], row["created_at"], row["expires_at"])

    async def end_session(self, cookie: str, now: datetime) -> None:
        conn = await driver_connection(self.session)
        await conn.execute(
            "UPDATE console_sessions SET ended_at = coalesce(ended_at, $2) WHERE session_hash = $1",
            session_hash(cookie),
            now,
        )

    async def _end_all(self, operator_id: str) -> None:
        conn = await driver_connection(self.session)
        await conn.execute(
            "UPDATE console_sessions SET ended_at = now() "
            "WHERE operator_id = $1 AND ended_at IS NULL",
            uuid.UUID(operator_id),
        )


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False
