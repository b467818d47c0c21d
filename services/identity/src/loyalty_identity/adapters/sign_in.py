"""Sign-in challenges, member sessions and refresh tokens in PostgreSQL, on the unit of work's
transaction. The phone of a challenge is found by its blind index and kept sealed; the client's
address, codes and refresh tokens only by their keyed hashes."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_identity.adapters.crypto import Keyring
from loyalty_identity.adapters.tables import (
    member_refresh_tokens,
    member_sessions,
    members,
    sign_in_challenges,
)
from loyalty_identity.domain.identities import ChannelIdentity
from loyalty_identity.domain.sign_in import Challenge, ChallengeState, RefreshToken

KEEP_CHALLENGES = timedelta(days=1)  # longer than any limit's window


@dataclass(frozen=True)
class StoredChallenge:
    challenge: Challenge
    phone: str  # opened


class SignInStore:
    def __init__(self, session: AsyncSession, keyring: Keyring) -> None:
        self.session = session
        self.keyring = keyring

    # --- challenges ---------------------------------------------------------------------------
    def _address_index(self, address: str) -> bytes:
        """A client's address as the limits count it: a keyed hash, never the address."""
        return hmac.digest(self.keyring.derived_key("sign-in-address"), address.encode(), "sha256")

    async def hold_phone(self, phone: ChannelIdentity) -> None:
        """Serialise the sends to one phone until the transaction ends (two at once cannot
        both pass the limits)."""
        index = self.keyring.blind_index(phone)
        await self.session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 8))"),
            {"key": "sign-in:" + index.hex()},
        )

    async def sent_to_phone(self, phone: ChannelIdentity, since: datetime) -> list[datetime]:
        c = sign_in_challenges.c
        rows = await self.session.execute(
            select(c.created_at)
            .where(c.phone_index == self.keyring.blind_index(phone), c.created_at > since)
            .order_by(c.created_at.desc())
            .limit(100)
        )
        return [r[0] for r in rows]

    async def sent_from_address(self, address: str, since: datetime) -> list[datetime]:
        c = sign_in_challenges.c
        rows = await self.session.execute(
            select(c.created_at)
            .where(c.address_index == self._address_index(address), c.created_at > since)
            .order_by(c.created_at.desc())
            .limit(100)
        )
        return [r[0] for r in rows]

    async def add_challenge(
        self, challenge: Challenge, phone: ChannelIdentity, address: str
    ) -> None:
        key_id, sealed = self.keyring.seal_short_lived(phone.value, challenge.challenge_id)
        await self.session.execute(
            insert(sign_in_challenges).values(
                challenge_id=challenge.challenge_id,
                phone_index=self.keyring.blind_index(phone),
                address_index=self._address_index(address),
                key_id=key_id,
                phone_sealed=sealed,
                code_hash=challenge.code_hash,
                attempts=challenge.attempts,
                state=challenge.state.value,
                created_at=challenge.created_at,
                expires_at=challenge.expires_at,
            )
        )

    async def forget_old_challenges(self, now: datetime, limit: int = 500) -> None:
        c = sign_in_challenges.c
        old = (
            select(c.challenge_id).where(c.created_at < now - KEEP_CHALLENGES).limit(limit)
        ).scalar_subquery()
        await self.session.execute(sign_in_challenges.delete().where(c.challenge_id.in_(old)))

    async def challenge(self, challenge_id: str) -> StoredChallenge | None:
        """A challenge, locked for this transaction (two checks of one code take turns)."""
        c = sign_in_challenges.c
        row = (
            await self.session.execute(
                select(sign_in_challenges).where(c.challenge_id == challenge_id).with_for_update()
            )
        ).first()
        if row is None:
            return None
        phone = self.keyring.open_short_lived(row.key_id, row.phone_sealed, str(row.challenge_id))
        return StoredChallenge(
            Challenge(
                str(row.challenge_id),
                row.code_hash,
                row.created_at,
                row.expires_at,
                row.attempts,
                ChallengeState(row.state),
            ),
            phone,
        )

    async def save_challenge(self, challenge: Challenge) -> None:
        c = sign_in_challenges.c
        await self.session.execute(
            update(sign_in_challenges)
            .where(c.challenge_id == challenge.challenge_id)
            .values(attempts=challenge.attempts, state=challenge.state.value)
        )

    # --- sessions -----------------------------------------------------------------------------
    async def add_session(
        self, member_id: str, session_id: str, method: str, now: datetime
    ) -> None:
        await self.session.execute(
            insert(member_sessions).values(
                member_id=member_id, session_id=session_id, method=method, created_at=now
            )
        )

    async def add_refresh_token(
        self, digest: bytes, session_id: str, member_id: str, now: datetime, expires: datetime
    ) -> None:
        await self.session.execute(
            insert(member_refresh_tokens).values(
                token_hash=digest,
                session_id=session_id,
                member_id=member_id,
                issued_at=now,
                expires_at=expires,
            )
        )

    async def refresh_token(self, digest: bytes) -> RefreshToken | None:
        """A refresh token with its session's revocation, both locked for this transaction."""
        t, s = member_refresh_tokens.c, member_sessions.c
        row = (
            await self.session.execute(
                select(t.session_id, t.member_id, t.expires_at, t.used_at, s.revoked_at)
                .join(member_sessions, s.session_id == t.session_id)
                .where(t.token_hash == digest)
                .with_for_update()
            )
        ).first()
        if row is None:
            return None
        return RefreshToken(str(row[0]), str(row[1]), row[2], row[3], row[4])

    async def use_refresh_token(self, digest: bytes, now: datetime) -> None:
        t = member_refresh_tokens.c
        await self.session.execute(
            update(member_refresh_tokens).where(t.token_hash == digest).values(used_at=now)
        )

    async def revoke_session(self, session_id: str, now: datetime, reason: str) -> bool:
        s = member_sessions.c
        done = await self.session.execute(
            update(member_sessions)
            .where(s.session_id == session_id, s.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
        )
        return bool(done.rowcount)  # type: ignore[attr-defined]

    async def revoke_member_sessions(self, member_id: str, now: datetime, reason: str) -> int:
        s = member_sessions.c
        done = await self.session.execute(
            update(member_sessions)
            .where(s.member_id == member_id, s.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
        )
        return int(done.rowcount)  # type: ignore[attr-defined]

    async def open_sessions(self, member_id: str) -> int:
        s = member_sessions.c
        found = await self.session.scalar(
            select(func.count()).where(s.member_id == member_id, s.revoked_at.is_(None))
        )
        return int(found or 0)

    async def token_standing(
        self, member_id: str, session_id: str
    ) -> tuple[str, bool, str | None] | None:
        """What a member's access token stands on: the member's state, whether its session is
        known and, if ended, why (None: no such member). One indexed read."""
        m, s = members.c, member_sessions.c
        if not session_id:
            state = await self.session.scalar(select(m.state).where(m.member_id == member_id))
            return None if state is None else (str(state), False, None)
        query = (
            select(m.state, s.session_id, s.revoked_at, s.revoked_reason)
            .select_from(members)
            .outerjoin(
                member_sessions,
                (s.member_id == m.member_id) & (s.session_id == session_id),
            )
            .where(m.member_id == member_id)
        )
        row = (await self.session.execute(query)).first()
        if row is None:
            return None
        revoked = None if row.revoked_at is None else str(row.revoked_reason)
        return str(row.state), row.session_id is not None, revoked
