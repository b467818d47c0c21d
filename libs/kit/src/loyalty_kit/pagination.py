"""List pagination (AIP-158): page_size 0 means the default, negative is INVALID_ARGUMENT,
above the maximum is clamped; page tokens are opaque and tied to the request's filter, so a
token used with another filter is refused rather than silently mixing two lists. A token is
short (what it carries is one position); anything longer than `MAX_TOKEN_LENGTH` or that does not
decode is INVALID_ARGUMENT, whatever it holds."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from loyalty_kit.errors import FieldViolation, InvalidArgument

MAX_TOKEN_LENGTH = 1024


@dataclass(frozen=True)
class Page:
    size: int
    after: Any  # the position the token carries (None on the first page)


def _filter_key(filters: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(filters, sort_keys=True).encode()).hexdigest()[:16]


def read_page(
    page_size: int, page_token: str, filters: dict[str, Any], *, default: int, maximum: int
) -> Page:
    if page_size < 0:
        raise InvalidArgument.of([FieldViolation("page_size", "must not be negative")])
    size = default if page_size == 0 else min(page_size, maximum)
    return Page(size, read_token(page_token, filters))


def read_token(page_token: str, filters: dict[str, Any]) -> Any:
    """The position `page_token` carries (None: no token), for a request with these filters."""
    if not page_token:
        return None
    if len(page_token) > MAX_TOKEN_LENGTH:
        raise InvalidArgument.of([FieldViolation("page_token", "not a token this list gave")])
    try:
        padded = page_token + "=" * (-len(page_token) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded))
        after, key = decoded["a"], decoded["f"]
    except (ValueError, KeyError, TypeError, RecursionError):
        raise InvalidArgument.of(
            [FieldViolation("page_token", "not a token this list gave")]
        ) from None
    if key != _filter_key(filters):
        raise InvalidArgument.of(
            [FieldViolation("page_token", "belongs to a request with other filters")]
        )
    return after


def next_token(after: Any, filters: dict[str, Any]) -> str:
    payload = json.dumps({"a": after, "f": _filter_key(filters)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")
