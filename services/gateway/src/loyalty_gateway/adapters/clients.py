"""Business-unit API clients: each bound to one unit and a set of scopes, with a secret stored
only as an Argon2 hash, and its own rate limit. The token endpoint trades a client's id and
secret for a short-lived bearer token (see loyalty_kit.auth)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from loyalty_kit.caller import Caller
from loyalty_kit.db import driver_connection
from loyalty_kit.errors import NotFound, Unauthenticated, Violations
from loyalty_kit.resources import unit_of
from sqlalchemy.ext.asyncio import AsyncSession

# Scopes a client may hold; services check them (and the client's unit) on every call.
SCOPES = {
    "earn": "earn points for purchases at the client's unit",
    "redeem": "spend points, coupons and benefits at the client's unit",
    "profile:read": "read members' profiles (masked)",
    "personal_data:read": "read members' personal data unmasked",
    "points:adjust": "adjust balances by hand (service desk)",
    "membership": "sell paid memberships of the client's unit",
    "members:register": "register members and link their identities (an enrolment desk)",
    "members:import": "import the client's unit's legacy members from a file; read its imports",
    "profile:write": "change members' profiles and consents (the member app)",
    "members:manage": "merge, unmerge, suspend, reactivate, erase and tag members; list segments",
    "coupons:issue": "issue coupons of the client's unit (or group-wide ones) to members",
    "insights:read": "read the client's unit's figures (liability, members across units)",
    "insights:group": "read the group's figures and every unit's (the group's loyalty team)",
    "engagement:read": "read the unit's journeys, their entries and the messages sent",
    "engagement:write": "create, change, pause and resume the unit's journeys",
    "segments:write": "create, change and delete the unit's dynamic segments (all: insights:group)",
    "member_codes:read": "show members their member code (会员码) (the member app's backend)",
    "members:sign_in": "sign members in by SMS code or WeChat, refresh and end their sessions "
    "(the member app's backend)",
    "messages:send": "send transactional messages (sign-in codes) to a phone",
    "admin": "everything, for every unit (group operators)",
}
DEFAULT_RATE = 100  # requests per second
_hasher = PasswordHasher()


@dataclass(frozen=True)
class ApiClient:
    client_id: str
    unit: str
    scopes: tuple[str, ...]
    description: str
    rate_per_second: int
    created_at: datetime
    rotated_at: datetime | None
    revoked_at: datetime | None

    def caller(self) -> Caller:
        return Caller(unit=self.unit, client_id=self.client_id, scopes=frozenset(self.scopes))


def new_secret() -> str:
    return "lsk_" + secrets.token_urlsafe(32)


def check(unit: str, scopes: list[str], rate: int) -> tuple[str, list[str]]:
    problems = Violations()
    try:
        unit = unit_of(unit)
    except Exception:
        problems.add("unit", "a business unit code such as 'hotel' (or 'group')")
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        problems.add("scopes", f"one or more of {', '.join(sorted(SCOPES))}")
    if not 1 <= rate <= 100_000:
        problems.add("rate_per_second", "1 to 100000")
    problems.raise_if_any()
    return unit, sorted(set(scopes))


class ClientStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(
        self, unit: str, scopes: list[str], description: str = "", rate: int = DEFAULT_RATE
    ) -> tuple[ApiClient, str]:
        """A new client and its secret (shown once: only its hash is kept)."""
        unit, scopes = check(unit, scopes, rate)
        client_id = f"{unit}-{secrets.token_hex(4)}"
        secret = new_secret()
        conn = await driver_connection(self.session)
        await conn.execute(
            "INSERT INTO api_clients (client_id, unit, scopes, secret_hash, description, "
            "rate_per_second) VALUES ($1, $2, $3, $4, $5, $6)",
            client_id,
            unit,
            scopes,
            _hasher.hash(secret),
            description,
            rate,
        )
        return await self.get(client_id), secret

    async def get(self, client_id: str) -> ApiClient:
        conn = await driver_connection(self.session)
        row = await conn.fetchrow(
            "SELECT client_id, unit, scopes, description, rate_per_second, created_at, "
            "rotated_at, revoked_at FROM api_clients WHERE client_id = $1",
            client_id,
        )
        if row is None:
            raise NotFound(f"no API client {client_id}", reason="CLIENT_NOT_FOUND")
        return ApiClient(
            row["client_id"],
            row["unit"],
            tuple(row["scopes"]),
            row["description"],
            row["rate_per_second"],
            row["created_at"],
            row["rotated_at"],
            row["revoked_at"],
        )

    async def list(self) -> list[ApiClient]:
        conn = await driver_connection(self.session)
        ids = await conn.fetch("SELECT client_id FROM api_clients ORDER BY created_at")
        return [await self.get(r["client_id"]) for r in ids]

    async def rotate(self, client_id: str) -> str:
        """A new secret; the old one stops working at once (tokens already issued run out)."""
        await self.get(client_id)
        secret = new_secret()
        conn = await driver_connection(self.session)
        await conn.execute(
            "UPDATE api_clients SET secret_hash = $2, rotated_at = now() WHERE client_id = $1",
            client_id,
            _hasher.hash(secret),
        )
        return secret

    async def revoke(self, client_id: str) -> None:
        await self.get(client_id)
        conn = await driver_connection(self.session)
        await conn.execute(
            "UPDATE api_clients SET revoked_at = coalesce(revoked_at, now()) WHERE client_id = $1",
            client_id,
        )

    async def authenticate(self, client_id: str, secret: str) -> ApiClient:
        """The client, if the secret is its current one and it is not revoked."""
        conn = await driver_connection(self.session)
        row = await conn.fetchrow(
            "SELECT secret_hash, revoked_at FROM api_clients WHERE client_id = $1", client_id
        )
        refused = Unauthenticated("unknown client or wrong secret", reason="INVALID_CLIENT")
        if row is None:
            _hasher.hash(secret)  # the same work as a wrong secret: ids cannot be probed by time
            raise refused
        try:
            _hasher.verify(row["secret_hash"], secret)
        except VerificationError:
            raise refused from None
        if row["revoked_at"] is not None:
            raise Unauthenticated("this client was revoked", reason="CLIENT_REVOKED")
        return await self.get(client_id)
