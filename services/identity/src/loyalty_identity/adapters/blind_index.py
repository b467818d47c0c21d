"""An identity's blind index: what identities are looked up by, never their value. Kept apart
from `crypto.py` (which holds the keyring) so that an import's worker process, which is given
only the blind-index key, loads nothing more than this."""

from __future__ import annotations

import hmac

from loyalty_identity.domain.identities import ChannelIdentity


def blind_index(index_key: bytes, identity: ChannelIdentity) -> bytes:
    """The identity's HMAC-SHA256 under the index key."""
    message = f"{identity.type}\x00{identity.value}".encode()
    return hmac.digest(index_key, message, "sha256")  # one call: no HMAC object
