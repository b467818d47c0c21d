"""Who may call each IdentityService, MemberImportService, OrderImportService,
MemberCodeService, MemberSignInService and MemberErasureService method
(checked by the kit's interceptor; docs/access.md is rendered from it). Reads are open to any
authenticated caller: personal data is masked without `personal_data:read`. A unit imports only
its own members and orders and reads only its own imports; merge candidates are decided by the
group's member operators."""

from __future__ import annotations

from loyalty_kit.access import ADMIN_AUDITED, ANY_CALLER, Rule, rule
from loyalty_kit.caller import ADMIN, PERSONAL_DATA_READ
from loyalty_kit.scopes import (
    MEMBER_CODES_READ,
    MEMBERS_IMPORT,
    MEMBERS_SIGN_IN,
    SELF_READ,
    SELF_WRITE,
)

MANAGE = "members:manage"  # the group's member operations
REGISTER = "members:register"  # an enrolment desk or app that is not a till
EARN = "earn"  # a till: registers at the counter, binds a card
PROFILE_WRITE = "profile:write"  # the member app: the member's own profile and consents

ACCESS: dict[str, Rule] = {
    "RegisterMember": rule(EARN, REGISTER, unit_field="unit"),
    "GetMember": rule(
        member_field="name",
        note="personal data masked without personal_data:read, but for the member's own token",
    ),
    "ResolveMember": rule(
        note="personal data masked without personal_data:read; a member code is used up"
    ),
    "LinkIdentity": rule(EARN, REGISTER, MANAGE, unit_field="unit", audited=True),
    "UnlinkIdentity": rule(MANAGE, audited=True),
    "MergeMembers": rule(MANAGE, audited=True),
    "UnmergeMembers": rule(MANAGE, note="undoes a wrong merge", audited=True),
    "UpdateProfile": rule(PROFILE_WRITE, MANAGE, SELF_WRITE, member_field="member", audited=True),
    "SetConsents": rule(PROFILE_WRITE, MANAGE, SELF_WRITE, member_field="member", audited=True),
    "ListConsentEvents": rule(member_field="member"),
    "SuspendMember": rule(MANAGE, audited=True),
    "ReactivateMember": rule(MANAGE, audited=True),
    "UpdateTags": rule(MANAGE, audited=True),
    "ListMembers": rule(MANAGE),
    "EraseMember": rule(MANAGE, audited=True),
    "ExportMemberData": rule(
        PERSONAL_DATA_READ,
        SELF_WRITE,
        member_field="name",
        note="all of a member's personal data",
        audited=True,
    ),
    "ListIdentityTypes": ANY_CALLER,
    "UpsertIdentityType": ADMIN_AUDITED,
    # MemberImportService
    "CreateMemberImport": rule(MEMBERS_IMPORT, unit_field="spec.unit", audited=True),
    "GetMemberImport": rule(MEMBERS_IMPORT, resource_unit="the import's unit"),
    "ListMemberImports": rule(MEMBERS_IMPORT, unit_field="unit", note="a unit lists its own"),
    "CancelMemberImport": rule(MEMBERS_IMPORT, resource_unit="the import's unit", audited=True),
    "ListMemberImportRows": rule(
        MEMBERS_IMPORT, resource_unit="the import's unit", note="personal data masked"
    ),
    "ListMergeCandidates": rule(
        MEMBERS_IMPORT,
        MANAGE,
        resource_unit="the candidate's unit (members:import)",
        note="values masked; members:manage sees every unit's",
    ),
    "ResolveMergeCandidate": rule(MANAGE, audited=True),
    "DismissMergeCandidate": rule(MANAGE, audited=True),
    # MemberCodeService
    "GetMemberCode": rule(
        SELF_READ,
        MEMBER_CODES_READ,
        member_field="member",
        note="a member's own token for that member only; the secret is made on first use",
    ),
    "RotateMemberCode": rule(
        SELF_WRITE,
        MANAGE,
        member_field="member",
        note="every code shown before stops resolving",
        audited=True,
    ),
    # OrderImportService
    "CreateOrderImport": rule(MEMBERS_IMPORT, unit_field="spec.unit", audited=True),
    "GetOrderImport": rule(MEMBERS_IMPORT, resource_unit="the import's unit"),
    "ListOrderImports": rule(MEMBERS_IMPORT, unit_field="unit", note="a unit lists its own"),
    "CancelOrderImport": rule(MEMBERS_IMPORT, resource_unit="the import's unit", audited=True),
    "ListOrderImportRows": rule(
        MEMBERS_IMPORT, resource_unit="the import's unit", note="no personal data"
    ),
}

# MemberSignInService: an app's backend (or the gateway) signs its members in; the code, the
# WeChat login code or the refresh token is the member's proof. A member's own token ends its
# own sessions everywhere.
_SIGN_IN = rule(MEMBERS_SIGN_IN, note="the code or refresh token is the member's proof")
ACCESS.update(
    {
        "StartSmsSignIn": rule(MEMBERS_SIGN_IN, note="limited per phone and per client address"),
        "VerifySmsSignIn": _SIGN_IN,
        "SignInWithWeChat": _SIGN_IN,
        "RefreshMemberToken": _SIGN_IN,
        "SignOut": _SIGN_IN,
        "SignOutEverywhere": rule(
            SELF_WRITE, MANAGE, member_field="member", note="ends every session", audited=True
        ),
    }
)

# MemberErasureService: a member asks to be erased themselves (their own token), or the group's
# member operators act on the member's behalf; the sweep is an administrator's (and the
# service's own job).
ACCESS.update(
    {
        "RequestErasure": rule(
            SELF_WRITE,
            MANAGE,
            member_field="member",
            note="sends a confirmation code to the member's phone",
            audited=True,
        ),
        "ConfirmErasure": rule(
            SELF_WRITE, MANAGE, member_field="member", note="with the code sent", audited=True
        ),
        "CancelErasure": rule(SELF_WRITE, MANAGE, member_field="member", audited=True),
        "GetErasureRequest": rule(SELF_READ, MANAGE, member_field="member"),
        "RunDueErasures": rule(
            ADMIN,
            note="confirmed requests past their cooling-off; the service runs it itself too",
            audited=True,
        ),
    }
)
