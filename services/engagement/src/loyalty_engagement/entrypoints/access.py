"""Who may call each EngagementService method (checked by the kit's interceptor; docs/access.md
is rendered from it). A journey belongs to a unit: a unit's team (`engagement:write`) creates
and changes its own unit's journeys, the group's team (unit "group") every one; reading needs
`engagement:read` or `engagement:write`."""

from __future__ import annotations

from loyalty_kit.access import Rule, rule
from loyalty_kit.scopes import ENGAGEMENT_READ, ENGAGEMENT_WRITE

_READ = rule(
    ENGAGEMENT_READ,
    ENGAGEMENT_WRITE,
    resource_unit="the journey's unit (every journey for the group's team)",
)
_WRITE = rule(
    ENGAGEMENT_WRITE,
    resource_unit="the journey's unit (every journey for the group's team)",
)

ACCESS: dict[str, Rule] = {
    "CreateJourney": rule(
        ENGAGEMENT_WRITE,
        unit_field="journey.unit",
        note="a unit's journey acts (issues, funds points) for that unit only",
    ),
    "GetJourney": _READ,
    "ListJourneys": _READ,
    "UpdateJourney": _WRITE,
    "PauseJourney": _WRITE,
    "ResumeJourney": _WRITE,
    "ListJourneyEntries": _READ,
    "ListMessages": rule(
        ENGAGEMENT_READ,
        ENGAGEMENT_WRITE,
        note="the development sink's messages: a unit's team sees its own journeys'",
    ),
}
