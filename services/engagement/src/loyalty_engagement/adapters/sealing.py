"""Webhook secrets at rest: sealed with AES-GCM under the engagement service's key
(`LOYALTY_ENGAGEMENT_WEBHOOK_KEY`, 32 bytes base64), bound to the endpoint (unit and purpose)
by the associated data, so a sealed secret copied to another endpoint's row does not open.
Without a configured key a development key is made once in the data folder (never for
production: a warning says so). Secrets are never logged or answered."""

from __future__ import annotations

import base64
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from loyalty_kit.devfiles import create_once
from loyalty_kit.logs import get_logger

log = get_logger("loyalty.engagement.sealing")
NONCE_BYTES = 12
KEY_BYTES = 32


class SealingKeyError(ValueError):
    pass


@dataclass(frozen=True)
class SecretBox:
    key: bytes

    @classmethod
    def parse(cls, text: str) -> SecretBox:
        try:
            key = base64.b64decode(text, validate=True)
        except ValueError:
            raise SealingKeyError("LOYALTY_ENGAGEMENT_WEBHOOK_KEY is not base64") from None
        if len(key) != KEY_BYTES:
            raise SealingKeyError(f"LOYALTY_ENGAGEMENT_WEBHOOK_KEY must be {KEY_BYTES} bytes")
        return cls(key)

    @classmethod
    def of(cls, configured: str, data_dir: Path) -> SecretBox:
        if configured:
            return cls.parse(configured)
        path = data_dir / "engagement-webhook.key"
        log.warning(
            "using a development key for webhook secrets; set LOYALTY_ENGAGEMENT_WEBHOOK_KEY "
            "in production",
            path=str(path),
        )
        return cls.parse(
            create_once(path, lambda: base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode())
        )

    def seal(self, secret: str, bound_to: str) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + AESGCM(self.key).encrypt(nonce, secret.encode(), bound_to.encode())

    def keyed_hash(self, text: str, purpose: str) -> str:
        """What a sealed value is found by (a phone): HMAC-SHA256 under a key derived from this
        one for `purpose`, so the hash says nothing without the key."""
        derived = hmac.digest(self.key, f"hash:{purpose}".encode(), "sha256")
        return hmac.digest(derived, text.encode(), "sha256").hex()

    def open(self, sealed: bytes, bound_to: str) -> str:
        return (
            AESGCM(self.key)
            .decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], bound_to.encode())
            .decode()
        )
