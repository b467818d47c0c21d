"""A chunk's MembersImported built directly is the message the contract's generic mapping
makes, field for field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from loyalty_identity.adapters.events import CONTRACT, members_imported, to_message
from loyalty_identity.domain.events import MembersImported
from loyalty_identity.domain.member import ConsentPurpose
from loyalty_identity.domain.member_import import ImportedConsent, ImportedMember


def _event(size: int) -> MembersImported:
    now = datetime(2025, 3, 1, 8, 30, tzinfo=UTC)
    ends = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
    members = tuple(
        ImportedMember(
            member_id=f"m{i}",
            legacy_key=f"{i:064x}",
            created=i % 3 != 0,
            legacy_points=i * 7 % 5000,
            legacy_points_expire_at=now + timedelta(days=i % 4) if i % 2 else None,
            tier_code="gold" if i % 5 == 0 else "",
            tier_ends_at=ends if i % 5 == 0 else None,
            birthday_month=i % 13,
            birthday_day=i % 29 if i % 13 else 0,
            tags=("bu:mall-active", f"legacy:tier-{i % 3}") if i % 4 == 0 else (),
            consents=(
                (
                    ImportedConsent(ConsentPurpose.PERSONALISED_OFFERS, i % 2 == 0, now),
                    ImportedConsent(ConsentPurpose.MARKETING_SMS, True, now - timedelta(days=i)),
                )
                if i % 6 == 0
                else ()
            ),
            joined_at=now - timedelta(days=365 + i) if i % 7 else None,
        )
        for i in range(size)
    )
    return MembersImported("memberImports/abc", "mall", members, now)


def test_members_imported_is_the_generic_message() -> None:
    event = _event(200)
    generic = CONTRACT.message(event)
    direct = members_imported(event)
    assert direct == generic
    assert direct.SerializeToString(deterministic=True) == generic.SerializeToString(
        deterministic=True
    )
    assert to_message(event) == generic
    assert len(direct.members) == 200
    assert not direct.members[0].HasField("legacy_points_expire_at")
    assert direct.members[1].HasField("legacy_points_expire_at")
    assert not direct.members[0].HasField("joined_at")
    assert direct.members[1].joined_at.ToDatetime(tzinfo=UTC) == datetime(
        2024, 2, 29, 8, 30, tzinfo=UTC
    )
    offers, sms = direct.members[6].consents
    assert (offers.purpose, offers.granted) == ("CONSENT_PURPOSE_PERSONALISED_OFFERS", True)
    assert (sms.purpose, sms.changed_at.ToDatetime(tzinfo=UTC)) == (
        "CONSENT_PURPOSE_MARKETING_SMS",
        datetime(2025, 2, 23, 8, 30, tzinfo=UTC),
    )


def test_an_empty_chunk() -> None:
    event = _event(0)
    assert members_imported(event) == CONTRACT.message(event)
