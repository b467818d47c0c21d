"""Business units: the group's brands and properties ('mall', 'hotel'), named by a short code.
Every request that acts for a unit names it; every member-scoped record that belongs to one
carries its code."""

from __future__ import annotations

from loyalty_kit.errors import FieldViolation, InvalidArgument

MAX_UNIT_LENGTH = 32
GROUP = "group"  # the group itself, as a caller: services calling each other on their account


def unit_of(unit: str, field: str = "unit") -> str:
    """A business unit code ('mall', 'hotel'), or INVALID_ARGUMENT naming the field."""
    unit = unit.strip()
    if not unit or len(unit) > MAX_UNIT_LENGTH:
        raise InvalidArgument.of([FieldViolation(field, "a business unit code such as 'hotel'")])
    return unit
