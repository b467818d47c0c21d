"""The member page's one cookie: its state sealed (AES-256-GCM) under a key only the gateway
holds, so page scripts cannot read it (HttpOnly), other sites cannot send it (SameSite=Strict),
and nobody can read or change what is in it (the member's tokens, the sign-in challenge, the
CSRF token).

The key is derived (HKDF-SHA256) from the gateway's token signing key, which every replica
holds; without one (trusted headers in development) a key made at start, so cookies last as
long as the process. The cookie's name is its associated data: a value sealed for another
cookie does not open as this one.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from loyalty_kit.auth import SigningKey
from starlette.responses import Response

NONCE = 12
INFO = b"loyalty-me-cookie-v1"
MAX_COOKIE = 3800  # a browser keeps 4096 bytes of a cookie, its name included


def key_from(signing: SigningKey | None) -> bytes:
    """The cookie key: derived from the signing key, or a new random one without it."""
    if signing is None:
        return os.urandom(32)
    raw = signing.key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO).derive(raw)


@dataclass(frozen=True)
class Tokens:
    """A member's tokens, as identity's MemberSignInService answered them."""

    access: str
    access_expires: float  # Unix seconds
    refresh: str
    refresh_expires: float
    session: str  # "memberSessions/{id}"


@dataclass(frozen=True)
class State:
    """What the cookie holds: always a CSRF token; while signing in, the challenge and the
    phone as typed; once signed in, the member and the tokens."""

    csrf: str
    member: str = ""  # "members/{id}"
    tokens: Tokens | None = None
    challenge: str = ""
    phone: str = ""
    challenge_expires: float = 0.0

    @staticmethod
    def fresh() -> State:
        return State(csrf=secrets.token_urlsafe(32))

    def signed_in(self, member: str, tokens: Tokens) -> State:
        """After a sign-in: a new CSRF token, the challenge forgotten."""
        return State(csrf=secrets.token_urlsafe(32), member=member, tokens=tokens)

    def with_tokens(self, tokens: Tokens) -> State:
        return replace(self, tokens=tokens)

    def waiting_for(self, challenge: str, phone: str, expires: float) -> State:
        return replace(self, challenge=challenge, phone=phone, challenge_expires=expires)


@dataclass(frozen=True)
class Cookie:
    """The cookie's name and attributes (`__Host-` and Secure unless development serves plain
    http) and its sealing."""

    key: bytes
    secure: bool

    @property
    def name(self) -> str:
        return "__Host-loyalty_me" if self.secure else "loyalty_me"

    @property
    def path(self) -> str:
        return "/" if self.secure else "/me"

    def seal(self, state: State) -> str:
        data = asdict(state)
        plain = json.dumps(data, separators=(",", ":")).encode()
        nonce = os.urandom(NONCE)
        sealed = AESGCM(self.key).encrypt(nonce, plain, self.name.encode())
        return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, value: str | None) -> State | None:
        """The state in a cookie's value, or None for a missing, altered or foreign one."""
        if not value or len(value) > MAX_COOKIE:
            return None
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            plain = AESGCM(self.key).decrypt(raw[:NONCE], raw[NONCE:], self.name.encode())
            data = json.loads(plain)
            tokens = data.pop("tokens")
            return State(**data, tokens=Tokens(**tokens) if tokens else None)
        except (InvalidTag, ValueError, TypeError, KeyError, binascii.Error):
            return None

    def set(self, response: Response, state: State, now: datetime) -> None:
        """Writes the state; it lasts as long as the refresh token (a session cookie before)."""
        max_age = None
        if state.tokens is not None:
            max_age = max(0, int(state.tokens.refresh_expires - now.timestamp()))
        response.set_cookie(
            self.name,
            self.seal(state),
            max_age=max_age,
            path=self.path,
            secure=self.secure,
            httponly=True,
            samesite="strict",
        )

    def clear(self, response: Response) -> None:
        response.delete_cookie(
            self.name, path=self.path, secure=self.secure, httponly=True, samesite="strict"
        )


def utc_now() -> datetime:
    return datetime.now(UTC)
