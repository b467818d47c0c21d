"""Members as every service names them: `members/{member_id}` resource names, the states a
member goes through (identity decides them, the others learn them from its events) and member
tags."""

from __future__ import annotations

import re
import uuid
from enum import StrEnum

from loyalty_kit.errors import FieldViolation, InvalidArgument


class MemberState(StrEnum):
    """A member is active, suspended (until reactivated), merged into a survivor or erased
    (a tombstone); merged and erased are final but for an unmerge."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    MERGED = "merged"
    ERASED = "erased"


FINAL_STATES = (MemberState.MERGED, MemberState.ERASED)

MEMBERS = "members/"


def member_name(member_id: str) -> str:
    return f"{MEMBERS}{member_id}"


def member_id_of(name: str, field: str) -> str:
    """'members/{id}' -> id, or INVALID_ARGUMENT naming the field."""
    member_id = name[len(MEMBERS) :] if name.startswith(MEMBERS) else ""
    try:
        return str(uuid.UUID(member_id)) if member_id and "/" not in member_id else _bad(field)
    except ValueError:
        return _bad(field)


# A member tag: a namespace, a colon, a value ('bu:hotel-active', 'rfm:champion'); identity keeps
# them, every service that selects members by tag checks them the same way.
TAG = re.compile(r"^[a-z][a-z0-9_-]{0,31}:[A-Za-z0-9_.:-]{1,64}$")
TAG_HINT = "a namespaced tag such as 'bu:hotel-active'"


def is_tag(text: str) -> bool:
    return TAG.match(text) is not None


def _bad(field: str) -> str:
    raise InvalidArgument.of([FieldViolation(field, "a member resource name: members/{id}")])
