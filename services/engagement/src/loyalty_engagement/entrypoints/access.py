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
    "SetWebhookEndpoint": rule(
        ENGAGEMENT_WRITE,
        resource_unit="endpoint.unit: a unit's team its own; the group's team any unit's",
    ),
    "ListDeliveries": rule(
        ENGAGEMENT_READ,
        ENGAGEMENT_WRITE,
        note="a unit's team sees its own unit's deliveries",
    ),
    "RedriveDelivery": rule(
        ENGAGEMENT_WRITE, resource_unit="the delivery's unit (any for the group's team)"
    ),
    # The token is the authority (192 random bits, one message's): the gateway serves it
    # without a bearer token at /v1/unsubscribe and calls this on its own account.
    "Unsubscribe": rule(note="any authenticated caller: the message's token is the authority"),
}
