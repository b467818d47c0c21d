"""Members' code secrets in PostgreSQL, sealed with each member's data key (so erasing the
member, which deletes the key first, shreds the secret too), and the codes already resolved.

Every read of a secret joins the member's wrapped data key: one statement, and a member whose
key is gone (merged, erased) has no secret to read.

Wrong guesses (a handle's, a client's) are rows of `member_code_wrong_guesses`: each row a
wrong guess, its kind (`handle` or `client`), the keyed hash of the value and its time, counted
through the table's primary key (kind, hash, time), shared by every replica, and deleted once
they count for nothing (`forget_wrong_guesses`, the job `member-code-guesses`). Neither the
handle nor the client is stored, only their keyed hashes.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from loyalty_kit.db import driver_connection
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_identity.adapters.crypto import Keyring, seal, sealed_as, unseal
from loyalty_identity.domain.member_code import CodeLookup, MemberCodeSecret

_SECRET = """
SELECT c.member_id, c.handle, c.secret_sealed, k.key_id, k.wrapped_key
FROM member_codes c JOIN member_keys k ON k.member_id = c.member_id
WHERE {where}
"""
_BY_MEMBER = _SECRET.format(where="c.member_id = $1")
_BY_HANDLE = _SECRET.format(where="c.handle = $1")
_ADD = (
    "INSERT INTO member_codes (member_id, handle, secret_sealed, created_at) "
    "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING handle"
)


def _wrong_of(kind: str, value_hash: str, since: str, until: str) -> str:
    """The times of a kind's wrong guesses of one hash in (since, until], the latest first: a
    range of the table's primary key."""
    return (
        "SELECT guessed_at FROM member_code_wrong_guesses "
        f"WHERE kind = '{kind}' AND value_hash = {value_hash} "
        f"AND guessed_at > {since} AND guessed_at <= {until} "
        "ORDER BY guessed_at DESC LIMIT 500"
    )


_WRONG = f"""
SELECT ARRAY({_wrong_of("handle", "$1", "$3", "$4")}) AS handle,
       ARRAY({_wrong_of("client", "$2", "$3", "$4")}) AS client
"""
# A scan's one read: the handle's and the client's wrong guesses, and the handle's secret (if
# any) locked for the transaction, so the scans of one handle take turns.
_LOOKUP = f"""
SELECT ARRAY({_wrong_of("handle", "$2", "$4", "$5")}) AS handle_wrong,
       ARRAY({_wrong_of("client", "$3", "$4", "$5")}) AS client_wrong,
       s.member_id, s.handle, s.secret_sealed, s.key_id, s.wrapped_key
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
    SELECT c.member_id, c.handle, c.secret_sealed, k.key_id, k.wrapped_key
    FROM member_codes c JOIN member_keys k ON k.member_id = c.member_id
    WHERE c.handle = $1 FOR UPDATE OF c
) AS s ON true
"""
# The use claimed unless the handle's wrong guesses (read now, once the handle is held: none
# committed before is missed) reached the limit; those guesses either way.
_CLAIM_UNLESS_LOCKED = f"""
WITH wrong AS ({_wrong_of("handle", "$4", "$5", "$7")}),
used AS (
    INSERT INTO member_code_uses (handle, step, used_at)
    SELECT $1, $2, $3 WHERE (SELECT count(*) FROM wrong) < $6
    ON CONFLICT DO NOTHING RETURNING step
)
SELECT (SELECT step FROM used) AS step, ARRAY(SELECT guessed_at FROM wrong) AS wrong
"""
_ADD_WRONG = (
    "INSERT INTO member_code_wrong_guesses (kind, value_hash, guessed_at, guess_id) "
    "SELECT kind, value_hash, $3, $4 FROM unnest($1::text[], $2::bytea[]) AS g(kind, value_hash)"
)
_FORGET_WRONG = "DELETE FROM member_code_wrong_guesses WHERE guessed_at < $1"


def _context(member_id: str) -> str:
    return sealed_as(member_id, "member_code_secret")


class MemberCodeStore:
    def __init__(self, session: AsyncSession, keyring: Keyring) -> None:
        self.session = session
        self.keyring = keyring

    async def _conn(self) -> Any:
        return await driver_connection(self.session)

    def _opened(self, row: Any) -> MemberCodeSecret:
        member_id = str(row["member_id"])
        data_key = self.keyring.unwrap(member_id, row["key_id"], row["wrapped_key"])
        secret = unseal(data_key, row["secret_sealed"], _context(member_id))
        return MemberCodeSecret(member_id, row["handle"], secret)

    async def of_member(self, member_id: str) -> MemberCodeSecret | None:
        row = await (await self._conn()).fetchrow(_BY_MEMBER, member_id)
        return self._opened(row) if row is not None else None

    async def by_handle(self, handle: str) -> MemberCodeSecret | None:
        row = await (await self._conn()).fetchrow(_BY_HANDLE, handle)
        return self._opened(row) if row is not None else None

    async def add(self, secret: MemberCodeSecret, now: datetime) -> bool:
        """Store a member's secret, sealed; False when the member has one already or the handle
        is taken (nothing stored)."""
        conn = await self._conn()
        row = await conn.fetchrow(
            "SELECT key_id, wrapped_key FROM member_keys WHERE member_id = $1", secret.member_id
        )
        if row is None:
            raise LookupError(f"member {secret.member_id} has no data key")
        data_key = self.keyring.unwrap(secret.member_id, row["key_id"], row["wrapped_key"])
        sealed = seal(data_key, secret.secret, _context(secret.member_id))
        stored = await conn.fetchval(_ADD, secret.member_id, secret.handle, sealed, now)
        return stored is not None

    async def forget(self, member_id: str) -> None:
        """The member's secret deleted, and the uses of its handle."""
        await (await self._conn()).execute(
            "WITH gone AS (DELETE FROM member_codes WHERE member_id = $1 RETURNING handle) "
            "DELETE FROM member_code_uses WHERE handle IN (SELECT handle FROM gone)",
            member_id,
        )

    async def claim(
        self,
        handle: str,
        step: int,
        now: datetime,
        wrong_within: tuple[datetime, datetime],
        most_wrong: int,
    ) -> tuple[bool, list[datetime]]:
        """The code of `handle` for `step` used now, unless it was already or the handle saw
        `most_wrong` wrong guesses within (since, until]: whether it was, and those guesses."""
        row = await (await self._conn()).fetchrow(
            _CLAIM_UNLESS_LOCKED,
            handle,
            step,
            now,
            self._hash("handle", handle),
            wrong_within[0],
            most_wrong,
            wrong_within[1],
        )
        return row["step"] is not None, list(row["wrong"])

    async def prune(self, before_step: int) -> int:
        """Forget uses of steps before `before_step` (no such code resolves any more)."""
        done = await (await self._conn()).execute(
            "DELETE FROM member_code_uses WHERE step < $1", before_step
        )
        return int(done.rsplit(" ", 1)[-1])

    # --- wrong guesses ------------------------------------------------------------------------
    def _hash(self, kind: str, value: str) -> bytes:
        """The keyed hash a handle or a client is counted by (the value is never stored)."""
        key = self.keyring.derived_key("member-code-wrong")
        return hmac.digest(key, f"{kind}\x00{value}".encode(), "sha256")

    async def lookup(
        self, handle: str, client: str, since: datetime, until: datetime
    ) -> CodeLookup:
        """What a scan reads, in one statement: the handle's secret, held until the transaction
        ends (the scans of one handle take turns), and the handle's and the client's wrong
        guesses of (since, until]. The handle's may miss guesses committed while this scan waited
        for its turn: `claim` and `wrong_guesses` read them again once it is held."""
        row = await (await self._conn()).fetchrow(
            _LOOKUP,
            handle,
            self._hash("handle", handle),
            self._hash("client", client),
            since,
            until,
        )
        secret = self._opened(row) if row["member_id"] is not None else None
        return CodeLookup(secret, list(row["handle_wrong"]), list(row["client_wrong"]))

    async def wrong_guesses(
        self, handle: str, client: str, since: datetime, until: datetime
    ) -> tuple[list[datetime], list[datetime]]:
        """When the handle's and the client's wrong guesses of (since, until] were made."""
        row = await (await self._conn()).fetchrow(
            _WRONG, self._hash("handle", handle), self._hash("client", client), since, until
        )
        return list(row["handle"]), list(row["client"])

    async def add_wrong_guess(self, handles: Sequence[str], client: str, now: datetime) -> None:
        """A wrong guess now: counted for the client and for each handle named."""
        counted = [("client", client), *(("handle", h) for h in dict.fromkeys(handles))]
        await (await self._conn()).execute(
            _ADD_WRONG,
            [kind for kind, _ in counted],
            [self._hash(kind, value) for kind, value in counted],
            now,
            str(uuid.uuid4()),
        )

    async def forget_wrong_guesses(self, before: datetime) -> int:
        """Delete the wrong guesses made before `before` (they count for nothing any more)."""
        done = await (await self._conn()).execute(_FORGET_WRONG, before)
        return int(done.rsplit(" ", 1)[-1])
