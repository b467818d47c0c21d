"""Personal data at rest: envelope encryption per member, and blind indexes for look-ups.

- Every member has a random 256-bit data key. Personal fields (identity values, name,
  birthday) are sealed with it using AES-GCM, bound to the member and the field by the
  associated data, so a sealed value copied to another row or column does not open.
- The data key is stored wrapped by a master key from configuration (key id kept beside it).
  Erasing a member deletes its data key: every sealed value of that member becomes noise
  (crypto-shredding), including copies in backups.
- Identities are found by a blind index: HMAC-SHA256 under a separate index key of the
  normalised value. The database can answer "who has this phone?" without holding the phone.

Master key rotation without downtime: put the new key first in LOYALTY_IDENTITY_KEYS (new data
keys are wrapped with it, old ones still open with their key id), run
`loyalty-identity rotate-keys` to re-wrap every data key, then drop the old key.
"""

from __future__ import annotations

import base64
import functools
import hmac
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from loyalty_kit.devfiles import create_once
from loyalty_kit.logs import get_logger

from loyalty_identity.adapters.blind_index import blind_index
from loyalty_identity.domain.identities import ChannelIdentity

log = get_logger("loyalty.identity.crypto")

NONCE_BYTES = 12
KEY_BYTES = 32


class KeyConfigError(ValueError):
    pass


def _decode_key(text: str, what: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except ValueError:
        raise KeyConfigError(f"{what} is not base64") from None
    if len(key) != KEY_BYTES:
        raise KeyConfigError(f"{what} must be {KEY_BYTES} bytes, base64-encoded")
    return key


def new_key_text() -> str:
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


@dataclass(frozen=True)
class Keyring:
    master_keys: dict[str, bytes]
    active_key_id: str
    index_key: bytes

    @classmethod
    def parse(cls, keys: str, index_key: str) -> Keyring:
        """keys: "k2:BASE64,k1:BASE64" (the first one wraps new data keys)."""
        master: dict[str, bytes] = {}
        order: list[str] = []
        for item in filter(None, (part.strip() for part in keys.split(","))):
            key_id, sep, text = item.partition(":")
            if not sep or not key_id:
                raise KeyConfigError("LOYALTY_IDENTITY_KEYS entries are '<key id>:<base64 key>'")
            master[key_id] = _decode_key(text, f"master key {key_id}")
            order.append(key_id)
        if not order:
            raise KeyConfigError("LOYALTY_IDENTITY_KEYS names no key")
        return cls(master, order[0], _decode_key(index_key, "LOYALTY_IDENTITY_BLIND_INDEX_KEY"))

    @classmethod
    def development(cls, data_dir: Path) -> Keyring:
        """Keys generated once into the data folder: for `make run` and tests, never production."""
        path, text = development_keys_file(data_dir)
        log.warning(
            "using development keys for personal data; set LOYALTY_IDENTITY_KEYS and "
            "LOYALTY_IDENTITY_BLIND_INDEX_KEY in production",
            path=str(path),
        )
        document = json.loads(text)
        return cls.parse(document["keys"], document["blind_index_key"])

    # --- data keys ------------------------------------------------------------------------------
    @staticmethod
    def new_data_key() -> bytes:
        return AESGCM.generate_key(bit_length=256)

    def wrap(self, member_id: str, data_key: bytes) -> tuple[str, bytes]:
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = AESGCM(self.master_keys[self.active_key_id]).encrypt(
            nonce, data_key, member_id.encode()
        )
        return self.active_key_id, nonce + sealed

    def unwrap(self, member_id: str, key_id: str, wrapped: bytes) -> bytes:
        master = self.master_keys.get(key_id)
        if master is None:
            raise KeyConfigError(f"master key {key_id} is not configured")
        return AESGCM(master).decrypt(
            wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], member_id.encode()
        )

    # --- short-lived values (a sign-in challenge's phone) -------------------------------------
    def seal_short_lived(self, text: str, context: str) -> tuple[str, bytes]:
        """A value kept minutes, no member's yet: sealed under the active master key, bound to
        `context`; the key id to open it with."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        master = self.master_keys[self.active_key_id]
        sealed = AESGCM(master).encrypt(nonce, text.encode(), f"short/{context}".encode())
        return self.active_key_id, nonce + sealed

    def open_short_lived(self, key_id: str, sealed: bytes, context: str) -> str:
        master = self.master_keys.get(key_id)
        if master is None:
            raise KeyConfigError(f"master key {key_id} is not configured")
        return (
            AESGCM(master)
            .decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], f"short/{context}".encode())
            .decode()
        )

    def derived_key(self, purpose: str) -> bytes:
        """A key for `purpose` derived from the blind-index key (a sign-in code's hash), made
        once per purpose (every scan and sign-in asks for one)."""
        return _derived(self.index_key, purpose)

    # --- blind index --------------------------------------------------------------------------
    def blind_index(self, identity: ChannelIdentity) -> bytes:
        return blind_index(self.index_key, identity)


@functools.lru_cache(maxsize=64)
def _derived(index_key: bytes, purpose: str) -> bytes:
    return hmac.digest(index_key, f"derived\x00{purpose}".encode(), "sha256")


def development_keys_file(data_dir: Path) -> tuple[Path, str]:
    """The data folder's development keys (made once, whichever process asks first)."""
    path = data_dir / "identity-keys.json"
    document = {"keys": f"dev1:{new_key_text()}", "blind_index_key": new_key_text()}
    return path, create_once(path, lambda: json.dumps(document))


def sealed_as(member_id: str, name: str) -> str:
    """Associated data binding a sealed value to its member and field."""
    return f"{member_id}/{name}"


def seal(data_key: bytes, plaintext: str, context: str) -> bytes:
    return seal_bytes(data_key, plaintext.encode(), context)


def unseal(data_key: bytes, sealed: bytes, context: str) -> str:
    return unseal_bytes(data_key, sealed, context).decode()


def seal_bytes(data_key: bytes, content: bytes, context: str) -> bytes:
    """`content` sealed with AES-GCM under `data_key`, bound to `context` (what it is and
    whose): a sealed value moved elsewhere does not open."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(data_key).encrypt(nonce, content, context.encode())


class AheadSealer:
    """New members' data keys made and wrapped, and their data sealed, as `Keyring.wrap` and
    `seal` do, by an import reader's worker process (which holds the active master key only,
    and one cipher object per key rather than one per value)."""

    def __init__(self, key_id: str, master_key: bytes) -> None:
        self.key_id = key_id
        self._master = AESGCM(master_key)

    def new_key(self, member_id: str) -> tuple[bytes, bytes, AESGCM]:
        """A data key, wrapped for `member_id`, and its cipher."""
        data_key = AESGCM.generate_key(bit_length=256)
        nonce = secrets.token_bytes(NONCE_BYTES)
        wrapped = nonce + self._master.encrypt(nonce, data_key, member_id.encode())
        return data_key, wrapped, AESGCM(data_key)

    @staticmethod
    def seal(cipher: AESGCM, plaintext: str, context: str) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + cipher.encrypt(nonce, plaintext.encode(), context.encode())


def unseal_bytes(data_key: bytes, sealed: bytes, context: str) -> bytes:
    return AESGCM(data_key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], context.encode())
