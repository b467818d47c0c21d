"""Who may call each InsightsService method (checked by the kit's interceptor; docs/access.md is
rendered from it), and which figures a caller may read: a unit's client its own unit's, the
group's and other units' only with `insights:group` (or as an admin)."""

from __future__ import annotations

from loyalty_kit.access import Rule, rule, scope_required
from loyalty_kit.caller import UnitMismatch, current_caller
from loyalty_kit.scopes import ADMIN, INSIGHTS_GROUP, INSIGHTS_READ, SEGMENTS_WRITE

_FIGURES = rule(
    INSIGHTS_READ,
    INSIGHTS_GROUP,
    note="`insights:read`: the caller's own unit's figures only (`unit` must name it); the "
    "group's and other units' need `insights:group`",
)

# Segments belong to a unit (the group's team's to "group"): a unit's team sees and changes its
# own unit's, the group's team (`insights:group`) every one.
_SEGMENTS_READ = rule(
    INSIGHTS_READ,
    INSIGHTS_GROUP,
    SEGMENTS_WRITE,
    resource_unit="the segment's unit (every segment with `insights:group`)",
    note="member IDs only; benefits reads a segment's members for a coupon issuance",
)
_SEGMENTS_WRITE = rule(
    SEGMENTS_WRITE,
    resource_unit="the segment's unit (every segment with `insights:group`)",
    note="a unit's team creates its unit's segments; with `insights:group`, the group's",
    audited=True,
)

ACCESS: dict[str, Rule] = {
    "GetPointsLiability": _FIGURES,
    "GetMultiUnitMembers": _FIGURES,
    "GetUnitOverlap": _FIGURES,
    "GetUnitFlows": _FIGURES,
    "GetSpendShare": _FIGURES,
    "GetRfm": _FIGURES,
    "GetCohorts": _FIGURES,
    "GetProgrammeHealth": _FIGURES,
    "GetLifetimeValue": _FIGURES,
    "GetLifetimeValueFit": rule(
        INSIGHTS_GROUP, note="a fit is the group's: its state, parameters and hold-out report"
    ),
    "FitLifetimeValue": rule(
        ADMIN,
        note="fits the lifetime value models now (they are fitted daily on schedule)",
        audited=True,
    ),
    "CreateSegment": _SEGMENTS_WRITE,
    "GetSegment": _SEGMENTS_READ,
    "ListSegments": _SEGMENTS_READ,
    "UpdateSegment": _SEGMENTS_WRITE,
    "DeleteSegment": _SEGMENTS_WRITE,
    "ListSegmentMembers": _SEGMENTS_READ,
    "ListMemberSegments": rule(
        INSIGHTS_READ,
        INSIGHTS_GROUP,
        SEGMENTS_WRITE,
        note="a member's segments: a unit's team sees those of its own unit, `insights:group` "
        "every one",
    ),
    "GetRecommendations": rule(
        resource_unit="`unit` (any with `insights:group`)",
        note="a member's offers (codes only, no personal data): any client, for its own "
        "unit's offers or the group's; withheld from members who withdrew the "
        "personalised-offers consent",
    ),
    "GetJourneyUplift": rule(
        INSIGHTS_GROUP,
        note="a journey's treatment against its control group (counts and per-member "
        "figures, no member IDs): the group's loyalty team",
    ),
    "RefreshFigures": rule(
        INSIGHTS_GROUP,
        note="recomputes every member's figures: the group's loyalty team or an admin",
    ),
}


def check_figures_of(unit: str) -> None:
    """Refuse the group's figures (`unit` empty) or another unit's to a caller confined to its
    own unit (PERMISSION_DENIED: SCOPE_REQUIRED, UNIT_MISMATCH)."""
    caller = current_caller()
    if caller.may(INSIGHTS_GROUP):
        return
    if not unit:
        raise scope_required(frozenset({INSIGHTS_GROUP}))
    if unit != caller.unit:
        raise UnitMismatch(unit, caller.unit)


def check_offers_of(unit: str) -> None:
    """A unit's offers for its own client (or the group's team, or an admin); the group's
    (`unit` empty) for any client (PERMISSION_DENIED: UNIT_MISMATCH)."""
    caller = current_caller()
    if unit and not caller.may(INSIGHTS_GROUP) and unit != caller.unit:
        raise UnitMismatch(unit, caller.unit)
