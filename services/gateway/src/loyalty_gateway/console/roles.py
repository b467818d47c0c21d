"""Operators' roles: each maps to the kit's scopes (those of the short tokens the console calls
the services with) and to a unit: `group` for the group's roles, one unit for unit_manager.

The token never leaves the server, so the console may also hold a finer list of what each role
may do in its pages (`ACTIONS`), checked before a page offers or performs an action.
"""

from __future__ import annotations

from dataclasses import dataclass

from loyalty_kit import scopes
from loyalty_kit.resources import unit_of

GROUP = "group"


@dataclass(frozen=True)
class Role:
    name: str
    scopes: frozenset[str]
    one_unit: bool  # bound to one unit (else the group)
    actions: frozenset[str]  # what its console pages may do


ROLES: dict[str, Role] = {
    r.name: r
    for r in (
        Role(
            "group_admin",
            frozenset({scopes.ADMIN}),
            one_unit=False,
            actions=frozenset(
                {
                    "members",
                    "adjust",
                    "coupons",
                    "unmask",
                    "suspend",
                    "tiers",
                    "merge",
                    "erase",
                    "programme",
                    "jobs",
                    "jobs_run",
                    "dashboards",
                    "audit",
                }
            ),
        ),
        Role(
            "unit_manager",
            frozenset(
                {
                    scopes.POINTS_ADJUST,
                    scopes.COUPONS_ISSUE,
                    scopes.INSIGHTS_READ,
                    scopes.ENGAGEMENT_READ,
                    scopes.MEMBERS_IMPORT,
                    scopes.PERSONAL_DATA_READ,
                }
            ),
            one_unit=True,
            actions=frozenset({"members", "adjust", "coupons", "unmask", "jobs", "dashboards"}),
        ),
        Role(
            "customer_service",
            frozenset({scopes.POINTS_ADJUST, scopes.MEMBERS_MANAGE, scopes.PERSONAL_DATA_READ}),
            one_unit=False,
            actions=frozenset({"members", "adjust", "unmask", "suspend"}),
        ),
        Role(
            "analyst",
            frozenset({scopes.INSIGHTS_GROUP, scopes.ENGAGEMENT_READ}),
            one_unit=False,
            actions=frozenset({"dashboards"}),
        ),
    )
}


class RoleError(ValueError):
    """A role or unit an operator cannot have."""


def role_of(name: str) -> Role:
    try:
        return ROLES[name]
    except KeyError:
        raise RoleError(f"unknown role {name!r}; one of: {', '.join(ROLES)}") from None


def unit_for(role: str, unit: str | None) -> str:
    """The unit an operator of `role` works for: one unit (required) for a unit role, the
    group for the others (which may not name one)."""
    found = role_of(role)
    if not found.one_unit:
        if unit not in (None, "", GROUP):
            raise RoleError(f"a {role} works for the group, not one unit")
        return GROUP
    if not unit or unit == GROUP:
        raise RoleError(f"a {role} needs its one unit (--unit hotel)")
    try:
        return unit_of(unit)
    except Exception:
        raise RoleError(f"{unit!r} is not a business unit code such as 'hotel'") from None


def scopes_of(role: str, *, personal_data: bool = False) -> frozenset[str]:
    """The scopes a call made for an operator of `role` carries. Personal data in clear only
    when asked for (an operator's "show", which is recorded) and the role may see it."""
    granted = role_of(role).scopes
    if personal_data or scopes.ADMIN in granted:
        return granted
    return granted - {scopes.PERSONAL_DATA_READ}


def may(role: str, action: str) -> bool:
    return action in role_of(role).actions
