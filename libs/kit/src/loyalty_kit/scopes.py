"""The scopes a caller may hold, in one registry: each service's access rules, the gateway's
and the services' own calls to each other name them from here, never as bare strings.

A scope grants a kind of act (earning, redeeming, reading personal data), not a service; a unit's
client holds the scopes of what its tills and apps do. `admin` passes every rule.
"""

from __future__ import annotations

ADMIN = "admin"  # the group's operators: passes every access rule, acts for any unit
PERSONAL_DATA_READ = "personal_data:read"  # members' personal data in clear (else masked)
EARN = "earn"  # a till: credit points for purchases, refunds, confirmations, referrals
REDEEM = "redeem"  # spend a member's points: redemptions, their cancellation, transfers out
POINTS_ADJUST = "points:adjust"  # a service desk's goodwill and corrections
MEMBERS_MANAGE = "members:manage"  # the group's member operations (merge, suspend, tag, ...)
MEMBERS_REGISTER = "members:register"  # an enrolment desk or app that is not a till
MEMBERS_IMPORT = "members:import"  # a unit bringing its legacy members in by file
PROFILE_WRITE = "profile:write"  # the member app: the member's own profile and consents
COUPONS_ISSUE = "coupons:issue"  # a unit's (or the group's) marketing
MEMBERSHIP = "membership"  # a unit's shop selling paid memberships
INSIGHTS_READ = "insights:read"  # a unit's loyalty team: its own unit's figures
ENGAGEMENT_READ = "engagement:read"  # a unit's marketing team: its journeys, entries, messages
ENGAGEMENT_WRITE = "engagement:write"  # a unit's marketing team: create, change, pause journeys
INSIGHTS_GROUP = "insights:group"  # the group's loyalty team: every unit's figures and the group's
SEGMENTS_WRITE = "segments:write"  # a loyalty team's marketers: define dynamic segments
MEMBER_CODES_READ = "member_codes:read"  # the member app's backend: show a member their code
MEMBERS_SIGN_IN = "members:sign_in"  # an app's backend signing its members in (SMS, WeChat)
MESSAGES_SEND = "messages:send"  # a service sending a transactional message (a sign-in code)
# A member's own token (signed in by SMS code or WeChat) holds only these, and only for the
# member it speaks for: every rule that accepts one names the request's member field.
SELF_READ = "self:read"  # the member reads their own balance, statement, tier, coupons, profile
SELF_WRITE = "self:write"  # the member's own profile, consents, export, erasure, sign-out
SELF_REDEEM = "self:redeem"  # the member claims coupons and redeems rewards with their points
MEMBER_SCOPES = frozenset({SELF_READ, SELF_WRITE, SELF_REDEEM})

REGISTRY: dict[str, str] = {
    ADMIN: "passes every access rule and acts for any unit",
    PERSONAL_DATA_READ: "members' personal data in clear",
    EARN: "credit points: purchases, refunds, confirmations, referrals",
    REDEEM: "spend points: redemptions, their cancellation, transfers out",
    POINTS_ADJUST: "goodwill and corrections of a member's points",
    MEMBERS_MANAGE: "merge, unmerge, suspend, reactivate, tag, list and erase members",
    MEMBERS_REGISTER: "register members and link identities",
    MEMBERS_IMPORT: "import the unit's legacy members from a file, and read its imports",
    PROFILE_WRITE: "a member's own profile and consents",
    COUPONS_ISSUE: "issue coupons to members",
    MEMBERSHIP: "sell and refund paid memberships",
    INSIGHTS_READ: "read the unit's own figures (liability, activity across units)",
    INSIGHTS_GROUP: "read the group's figures and every unit's",
    SEGMENTS_WRITE: "create, change and delete dynamic segments (every unit's with insights:group)",
    ENGAGEMENT_READ: "read the unit's journeys, their entries and the messages sent",
    ENGAGEMENT_WRITE: "create, change, pause and resume the unit's journeys",
    MEMBER_CODES_READ: "the member app's backend: a member's code (会员码) to show them",
    MEMBERS_SIGN_IN: "sign members in by SMS code or WeChat, refresh and end their sessions",
    MESSAGES_SEND: "send a transactional message (a sign-in code) to a phone",
    SELF_READ: "a member token: read the member's own account",
    SELF_WRITE: "a member token: the member's own profile, consents, export and erasure",
    SELF_REDEEM: "a member token: claim coupons and redeem rewards for the member",
}
