"""A member's personal data as the document an export hands them (pure: no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from loyalty_identity.domain.member import Consent, Member


def _consent(consent: Consent) -> dict[str, Any]:
    return {
        "purpose": consent.purpose.value,
        "granted": consent.granted,
        "source": consent.source,
        "at": consent.changed_at.isoformat(),
    }


def personal_data(member: Member, history: Sequence[Consent]) -> dict[str, Any]:
    """Everything the service holds on the member: identities, profile, consents as they stand
    and as they were given over time (`history`), tags."""
    profile = member.profile
    return {
        "member_id": member.member_id,
        "state": member.state.value,
        "merged_into": member.merged_into or None,
        "registered": {
            "unit": member.registered_unit,
            "channel": member.registered_channel,
            "at": member.created_at.isoformat(),
        },
        "identities": [
            {
                "type": i.identity.type,
                "value": i.identity.value,
                "linked_at": i.linked_at.isoformat(),
            }
            for i in member.identities
        ],
        "profile": {
            "full_name": profile.full_name,
            "gender": profile.gender.value,
            "birthday": profile.birthday.isoformat() if profile.birthday else None,
            "region": profile.region,
            "preferred_language": profile.preferred_language,
            "time_zone": profile.time_zone,
        },
        "consents": [_consent(c) for c in member.consents.values()],
        "consent_history": [_consent(c) for c in history],
        "tags": sorted(member.tags),
    }
