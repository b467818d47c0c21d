"""Request bodies, bounded in memory and time before anything parses them.

A body is read only up to `LOYALTY_GATEWAY_MAX_BODY_BYTES` (1 MiB by default): a declared
Content-Length above it is refused before a byte is read, a chunked body as soon as it passes
it (413, RESOURCE_EXHAUSTED / BODY_TOO_LARGE). JSON nested deeper than
`LOYALTY_GATEWAY_MAX_JSON_DEPTH` (64) is refused before the parser sees it (400,
INVALID_ARGUMENT / MALFORMED_REQUEST): no message of the contracts nests nearly as deep, and the
recursive parser would otherwise spend time and stack on it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from loyalty_kit.errors import FieldViolation, InvalidArgument, ResourceExhausted
from starlette.requests import Request

BODY_TOO_LARGE = "BODY_TOO_LARGE"
MALFORMED_REQUEST = "MALFORMED_REQUEST"

# JSON strings (where brackets are only characters), unrolled so long strings cost no
# backtracking; then the brackets that remain.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def body_too_large(limit: int) -> ResourceExhausted:
    return ResourceExhausted(
        f"the request body is larger than {limit} bytes",
        reason=BODY_TOO_LARGE,
        metadata={"limit_bytes": str(limit)},
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The body, never holding more than `limit` bytes of it."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise malformed("Content-Length is not a number")
        if int(declared) > limit:
            raise body_too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise body_too_large(limit)
    return bytes(body)


def malformed(description: str) -> InvalidArgument:
    return InvalidArgument(
        f"body: {description}",
        reason=MALFORMED_REQUEST,
        field_violations=[FieldViolation("body", description)],
    )


def nesting_exceeds(text: str, limit: int) -> bool:
    """Whether JSON `text` opens more than `limit` arrays or objects inside each other (one
    pass; it stops at the first bracket too deep)."""
    depth = 0
    for bracket in _BRACKET.finditer(_STRING.sub('""', text)):
        if bracket.group() in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def parse_json(body: bytes, max_depth: int) -> Any:
    """The JSON value of `body` (empty: an empty object), or MALFORMED_REQUEST."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise malformed("a JSON object in UTF-8") from None
    if not text.strip():
        return {}
    if nesting_exceeds(text, max_depth):
        raise malformed(f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise malformed("a JSON object in UTF-8") from None
