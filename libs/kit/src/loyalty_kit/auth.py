"""Credentials of business-unit API clients, checked the same way by every service.

The gateway's token endpoint gives an API client (client id + secret) a short-lived bearer
token: a JWT signed with Ed25519 (EdDSA) that carries the client, its unit and its scopes.
Every service verifies it with the public key alone, so a backend team calling a service over
gRPC directly presents the same credential as an HTTP client of the gateway, and no service
needs the gateway (or its database) to check a call. Revocation takes effect when a token
expires (15 minutes by default): the token endpoint refuses a revoked client.

Keys: `LOYALTY_AUTH_PUBLIC_KEYS` (`<kid>:<base64url public key>,...`, several during a rotation)
for every service; the gateway also needs `LOYALTY_GATEWAY_SIGNING_KEY`. In development
(`LOYALTY_AUTH_DEV_KEYS=true`, set by `make run` and the tests) a key pair is generated into the
data folder and shared by the services of that folder.

Without a bearer token, the `x-loyalty-*` headers are taken as sent only while
`LOYALTY_AUTH_TRUST_HEADERS` is true (development: `make run`, the benchmarks; off by default);
otherwise such a call is refused (UNAUTHENTICATED, reason TOKEN_MISSING).

Services calling each other on their own account (benefits paying a reward in points, points
asking identity about a member) present tokens too: `ServiceCredentials` signs short-lived
tokens with the service's own key (`LOYALTY_AUTH_SERVICE_KEY`, whose public half is among every
service's `LOYALTY_AUTH_PUBLIC_KEYS`), for the unit and scopes of that one call, and keeps each
until a minute before it expires. Without a key it sends the caller headers instead, which only
a service trusting headers accepts.

A verified token is kept per process (`TokenVerifier.CACHE_SIZE` tokens, each until its `exp`,
never past it), so its signature is checked once per process rather than on every call; a token
that fails is never kept. What a service checks beyond the signature (identity: a member
token's session still open) still runs on every call.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cachetools import TLRUCache
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from loyalty_kit.caller import Caller
from loyalty_kit.devfiles import create_once
from loyalty_kit.errors import Unauthenticated
from loyalty_kit.scopes import MEMBER_SCOPES

ISSUER = "loyalty-gateway"
AUDIENCE = "loyalty"
ALGORITHM = "EdDSA"
AUTHORIZATION = "authorization"


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOYALTY_AUTH_", extra="ignore")

    public_keys: str = Field(
        default="", description="Token verification keys: '<kid>:<base64url Ed25519>,...'."
    )
    dev_keys: bool = Field(
        default=False,
        description="Without configured keys, use a development key pair in the data folder.",
    )
    service_key: str = Field(
        default="",
        description="This service's own signing key for calls to other services, "
        "'<kid>:<base64url Ed25519 private>' (its public half goes into PUBLIC_KEYS).",
    )
    trust_headers: bool = Field(
        default=False,
        description="Take x-loyalty-* caller headers as sent when no bearer token is given "
        "(development only: `make run` and the benchmarks turn it on).",
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_key_text(key: Ed25519PublicKey) -> str:
    return _b64(key.public_bytes(Encoding.Raw, PublicFormat.Raw))


def parse_keys(text: str) -> dict[str, bytes]:
    """'<kid>:<base64url>,...' -> {kid: raw key bytes}."""
    keys: dict[str, bytes] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        kid, sep, encoded = item.partition(":")
        raw = _unb64(encoded) if sep else b""
        if not kid or len(raw) != 32:
            raise ValueError("keys are '<kid>:<base64url of 32 bytes>', comma-separated")
        keys[kid] = raw
    return keys


@dataclass(frozen=True)
class SigningKey:
    kid: str
    key: Ed25519PrivateKey

    @staticmethod
    def parse(text: str) -> SigningKey:
        ((kid, raw),) = parse_keys(text).items()
        return SigningKey(kid, Ed25519PrivateKey.from_private_bytes(raw))

    def issue(
        self,
        caller: Caller,
        ttl_seconds: float,
        now: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> tuple[str, int]:
        """A bearer token for the caller and when it expires (Unix seconds)."""
        issued = int(now if now is not None else time.time())
        expires = issued + int(ttl_seconds)
        claims = {
            **(extra or {}),
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": caller.client_id,
            "unit": caller.unit,
            "scope": " ".join(sorted(caller.scopes)),
            **({"op": caller.operator} if caller.operator else {}),
            **({"member": caller.member} if caller.member else {}),
            "iat": issued,
            "exp": expires,
            "jti": secrets.token_hex(8),
        }
        token = jwt.encode(claims, self.key, algorithm=ALGORITHM, headers={"kid": self.kid})
        return token, expires


def development_keys(data_dir: Path) -> tuple[SigningKey, str]:
    """The development key pair of a data folder (made on first use, once, whichever of the
    folder's processes comes first): the signing key and the public keys' text."""

    def make() -> str:
        from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

        raw = Ed25519PrivateKey.generate().private_bytes(
            Encoding.Raw, PrivateFormat.Raw, NoEncryption()
        )
        return json.dumps({"kid": f"dev-{secrets.token_hex(4)}", "private": _b64(raw)})

    stored = json.loads(create_once(data_dir / "auth-keys.json", make))
    signing = SigningKey.parse(f"{stored['kid']}:{stored['private']}")
    return signing, f"{signing.kid}:{public_key_text(signing.key.public_key())}"


def caller_of_claims(claims: dict[str, Any]) -> Caller:
    """The caller a verified token's claims speak for (the gateway's HTTP side reads the
    claims itself, for its rate limit, and gets the same caller)."""
    scopes = frozenset(str(claims.get("scope", "")).split())
    member = str(claims.get("member", ""))
    if member:  # a member's token grants nothing beyond the member scopes, whoever signed it
        scopes &= MEMBER_SCOPES
    return Caller(
        unit="" if member else str(claims.get("unit", "")),
        client_id=str(claims["sub"]),
        scopes=scopes,
        operator="" if member else str(claims.get("op", "")),
        member=member,
        session=str(claims.get("sid", "")) if member else "",
    )


class TokenVerifier:
    # Verified tokens kept per process: a few thousand API clients and signed-in members at
    # once; beyond that the ones verified first give way.
    CACHE_SIZE = 10_000

    def __init__(
        self,
        public_keys: dict[str, bytes],
        trust_headers: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = {
            kid: Ed25519PublicKey.from_public_bytes(raw) for kid, raw in public_keys.items()
        }
        self.trust_headers = trust_headers
        self.clock = clock
        # token -> (its exp, its claims, the caller it speaks for), each until its exp; when
        # full, expired ones go first, then the least recently used.
        self._verified: TLRUCache[str, tuple[float, dict[str, Any], Caller]] = TLRUCache(
            maxsize=self.CACHE_SIZE, ttu=lambda _token, entry, _now: entry[0], timer=clock
        )

    @staticmethod
    def from_settings(data_dir: Path) -> TokenVerifier:
        configured = AuthSettings()
        text = configured.public_keys
        if not text and configured.dev_keys:
            text = development_keys(data_dir)[1]
        return TokenVerifier(parse_keys(text), configured.trust_headers)

    def verify(self, token: str) -> Caller:
        """The caller a bearer token speaks for; UNAUTHENTICATED if it is not one of ours,
        tampered with or expired."""
        return self._checked(token)[2]

    def claims(self, token: str) -> dict[str, Any]:
        """A verified token's claims."""
        return dict(self._checked(token)[1])

    def _checked(self, token: str) -> tuple[float, dict[str, Any], Caller]:
        """The token's entry: kept from an earlier call until its exp, else verified now (and
        kept if it is still valid for a while)."""
        found = self._verified.get(token)
        if found is not None:
            return found
        claims = self._verified_claims(token)
        entry = (float(claims["exp"]), claims, caller_of_claims(claims))
        if entry[0] > self.clock():  # within the leeway after its exp: accepted, never kept
            self._verified[token] = entry
        return entry

    def _verified_claims(self, token: str) -> dict[str, Any]:
        """The claims of a token whose signature, issuer, audience and times check out."""
        try:
            kid = jwt.get_unverified_header(token).get("kid", "")
            key = self.keys.get(kid)
            if key is None:
                raise Unauthenticated(
                    "the token is signed with a key this service does not know",
                    reason="TOKEN_INVALID",
                )
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub"]},
                leeway=5,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated(
                "the token has expired: get a new one", reason="TOKEN_EXPIRED"
            ) from None
        except jwt.PyJWTError:
            raise Unauthenticated("the token is not valid", reason="TOKEN_INVALID") from None
        return claims

    def caller_of(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Caller:
        """The caller of a call: a verified bearer token, else (when trusted) the headers."""
        from loyalty_kit.caller import caller_from_metadata, header_text

        items = list(metadata or ())
        for key, value in items:
            if key.lower() == AUTHORIZATION:
                text = header_text(AUTHORIZATION, value)
                scheme, _, token = text.partition(" ")
                if scheme.lower() != "bearer" or not token:
                    raise Unauthenticated("use 'Bearer <token>'", reason="TOKEN_INVALID")
                return self.verify(token.strip())
        if not self.trust_headers:
            raise Unauthenticated(
                "this service needs a bearer token ('authorization: Bearer <token>')",
                reason="TOKEN_MISSING",
            )
        return caller_from_metadata(items)


class ServiceCredentials:
    """What a service presents when it calls another on its own account."""

    REFRESH_BEFORE_SECONDS = 60

    def __init__(self, service: str, signing: SigningKey | None, ttl_seconds: float = 600) -> None:
        self.service = service
        self.signing = signing
        self.ttl_seconds = ttl_seconds
        self._tokens: dict[Caller, tuple[str, int]] = {}

    @staticmethod
    def from_settings(service: str, data_dir: Path) -> ServiceCredentials:
        configured = AuthSettings()
        if configured.service_key:
            return ServiceCredentials(service, SigningKey.parse(configured.service_key))
        if configured.dev_keys and not configured.public_keys:
            return ServiceCredentials(service, development_keys(data_dir)[0])
        return ServiceCredentials(service, None)

    def metadata(self, caller: Caller) -> tuple[tuple[str, str], ...]:
        """The gRPC metadata of a call made as `caller` (a bearer token, or the headers)."""
        if self.signing is None:
            return caller.metadata()
        now = time.time()
        cached = self._tokens.get(caller)
        if cached is None or cached[1] - now < self.REFRESH_BEFORE_SECONDS:
            if len(self._tokens) > 1000:  # callers are a handful (one per unit); stay bounded
                self._tokens.clear()
            cached = self.signing.issue(caller, self.ttl_seconds, now, {"svc": self.service})
            self._tokens[caller] = cached
        return ((AUTHORIZATION, f"Bearer {cached[0]}"),)
