"""Who may call each EngagementService method (checked by the kit's interceptor; docs/access.md
is rendered from it). A journey belongs to a unit: a unit's team (`engagement:write`) creates
and changes its own unit's journeys, the group's team (unit "group") every one; reading needs
`engagement:read` or `engagement:write`."""

from __future__ import annotations

from loyalty_kit.access import ADMIN_ONLY, Rule, rule
from loyalty_kit.scopes import ENGAGEMENT_READ, ENGAGEMENT_WRITE, MEMBERS_MANAGE, MESSAGES_SEND

_READ = rule(
    ENGAGEMENT_READ,
    ENGAGEMENT_WRITE,
    resource_unit="the journey's unit (every journey for the group's team)",
)
_WRITE = rule(
    ENGAGEMENT_WRITE,
    resource_unit="the journey's unit (every journey for the group's team)",
    audited=True,
)

ACCESS: dict[str, Rule] = {
    "CreateJourney": rule(
        ENGAGEMENT_WRITE,
        unit_field="journey.unit",
        note="a unit's journey acts (issues, funds points) for that unit only",
        audited=True,
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
        audited=True,
    ),
    "ListDeliveries": rule(
        ENGAGEMENT_READ,
        ENGAGEMENT_WRITE,
        note="a unit's team sees its own unit's deliveries",
    ),
    "RedriveDelivery": rule(
        ENGAGEMENT_WRITE,
        resource_unit="the delivery's unit (any for the group's team)",
        audited=True,
    ),
    # The token is the authority (192 random bits, one message's): the gateway serves it
    # without a bearer token at /v1/unsubscribe and calls this on its own account.
    "Unsubscribe": rule(note="any authenticated caller: the message's token is the authority"),
}

# ChallengeService: challenges and leaderboards belong to a unit as journeys do; a member's
# progress, badges and rank are read by any client (codes and counts, no personal data), for
# the member app and the overview; badges are granted and revoked by hand, audited.
_OWNED_READ = rule(
    ENGAGEMENT_READ,
    ENGAGEMENT_WRITE,
    resource_unit="the challenge's or leaderboard's unit (every one for the group's team)",
)
_MEMBER_READ = rule(
    member_field="member", note="a member's progress or badges: codes and counts only"
)
_BADGES = rule(
    ENGAGEMENT_WRITE,
    MEMBERS_MANAGE,
    note="by hand, audited (who, when, why); announced as BadgeEarned",
    audited=True,
)

ACCESS.update(
    {
        "CreateChallenge": rule(
            ENGAGEMENT_WRITE,
            unit_field="challenge.unit",
            note="a unit's challenge funds and issues its rewards as that unit only",
            audited=True,
        ),
        "GetChallenge": _OWNED_READ,
        "ListChallenges": _OWNED_READ,
        "GetMemberProgress": _MEMBER_READ,
        "ListMemberBadges": _MEMBER_READ,
        "GrantBadge": _BADGES,
        "RevokeBadge": _BADGES,
        "CreateLeaderboard": rule(
            ENGAGEMENT_WRITE,
            unit_field="leaderboard.unit",
            note="a unit's leaderboard ranks at its own unit and pays as that unit",
            audited=True,
        ),
        "GetLeaderboard": _OWNED_READ,
        "GetMemberRank": rule(
            member_field="member_id", note="a member's rank: codes and counts only"
        ),
        "CloseLeaderboardPeriod": rule(
            ENGAGEMENT_WRITE,
            resource_unit="the leaderboard's unit (every one for the group's team)",
            note="pays the period's rewards once (also closed on schedule)",
            audited=True,
        ),
    }
)

# TransactionalMessageService: services on their own account send (identity's sign-in codes);
# only admins read the development sink (it holds the codes in clear once opened).
ACCESS.update(
    {
        "SendTransactionalMessage": rule(
            MESSAGES_SEND, note="no consent, no quiet hours: what the member asked for"
        ),
        "ListTransactionalMessages": ADMIN_ONLY,
    }
)
