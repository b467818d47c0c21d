"""Bounds on what a request may carry, checked once here for every service.

Strings that are stored in an indexed or unique column (order ids, request ids, partner
references, codes, tags, identity values) have one documented maximum, `MAX_KEY_LENGTH`
characters (protos/README.md, "Limits"): PostgreSQL cannot index an arbitrarily long value, and
a longer one is refused as INVALID_ARGUMENT naming the field rather than failing in the database.
Enum fields are open in proto3 (any number decodes); `enum_value` refuses numbers the contract
does not name.
"""

from __future__ import annotations

from collections.abc import Iterable

from loyalty_kit.errors import FieldViolation, InvalidArgument

MAX_KEY_LENGTH = 128


def length_violation(
    text: str, field: str, *, maximum: int = MAX_KEY_LENGTH, required: bool = True
) -> FieldViolation | None:
    """What is wrong with `text`'s length, if anything (for validators collecting violations)."""
    if (required and not text.strip()) or len(text) > maximum:
        needs = "required, at most" if required else "at most"
        return FieldViolation(field, f"{needs} {maximum} characters")
    return None


def bounded(text: str, field: str, *, maximum: int = MAX_KEY_LENGTH, required: bool = True) -> str:
    """`text` if it is within `maximum` characters (and given, when required); otherwise
    INVALID_ARGUMENT naming `field`."""
    violation = length_violation(text, field, maximum=maximum, required=required)
    if violation is not None:
        raise InvalidArgument.of([violation])
    return text


def enum_violation(
    named: Iterable[int], value: int, field: str, *, unspecified_ok: bool = True
) -> FieldViolation | None:
    """What is wrong with an enum number, if anything (for validators collecting violations)."""
    if value not in named or (value == 0 and not unspecified_ok):
        return FieldViolation(field, "not one of the contract's values")
    return None


def enum_value(
    named: Iterable[int], value: int, field: str, *, unspecified_ok: bool = False
) -> int:
    """`value` if it is among the enum's `named` numbers (`Kind.values()`; 0, UNSPECIFIED, only
    when `unspecified_ok`); otherwise INVALID_ARGUMENT naming `field`."""
    violation = enum_violation(named, value, field, unspecified_ok=unspecified_ok)
    if violation is not None:
        raise InvalidArgument.of([violation])
    return value
