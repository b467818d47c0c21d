"""The member aggregate and its rules (pure: no I/O).

A member is ACTIVE, SUSPENDED, MERGED (into a survivor) or ERASED (a tombstone). Only active or
suspended members change; merged and erased members only answer reads. What happens to a member
is recorded on it as plain domain events (`events`), which the unit of work collects.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import Enum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from loyalty_kit.errors import FieldViolation, InvalidArgument, Violations
from loyalty_kit.resources import TAG_HINT, is_tag

from loyalty_identity.domain import events as ev
from loyalty_identity.domain.errors import (
    CannotMergeIntoItself,
    LastIdentity,
    MemberErased,
    MemberMerged,
    MemberNotSuspended,
    MemberSuspended,
    NotMergedInto,
)
from loyalty_identity.domain.identities import UNIT_CODE, ChannelIdentity


class MemberState(Enum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    MERGED = "merged"
    ERASED = "erased"


class Gender(Enum):
    UNSPECIFIED = "unspecified"
    FEMALE = "female"
    MALE = "male"
    OTHER = "other"


class ConsentPurpose(Enum):
    MARKETING_SMS = "marketing_sms"
    MARKETING_PUSH = "marketing_push"
    PERSONALISED_OFFERS = "personalised_offers"
    PARTNER_SHARING = "partner_sharing"


PROFILE_FIELDS = (
    "full_name",
    "gender",
    "birthday",
    "region",
    "preferred_language",
    "time_zone",
)
LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
UNIT = re.compile(rf"^{UNIT_CODE}$")
MAX_TAGS_PER_MEMBER = 200


def known_time_zone(name: str) -> bool:
    """An IANA zone this system's zone database knows ("Asia/Shanghai", "UTC")."""
    if len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


@dataclass
class Profile:
    full_name: str = ""
    gender: Gender = Gender.UNSPECIFIED
    birthday: date | None = None
    region: str = ""
    preferred_language: str = ""
    time_zone: str = ""  # IANA, e.g. "Asia/Shanghai" ("": not known)

    def validate(self, prefix: str = "profile", today: date | None = None) -> None:
        problems = Violations()
        if len(self.full_name) > 128:
            problems.add(f"{prefix}.full_name", "at most 128 characters")
        if self.birthday is not None:
            today = today or datetime.now(UTC).date()
            if self.birthday > today:
                problems.add(f"{prefix}.birthday", "must not be in the future")
            elif self.birthday.year < 1900:
                problems.add(f"{prefix}.birthday", "must be after 1900")
        if len(self.region) > 64:
            problems.add(f"{prefix}.region", "at most 64 characters")
        if self.preferred_language and not LANGUAGE_TAG.match(self.preferred_language):
            problems.add(f"{prefix}.preferred_language", "a BCP 47 tag such as zh-CN or en")
        if self.time_zone and not known_time_zone(self.time_zone):
            problems.add(f"{prefix}.time_zone", "an IANA time zone such as Asia/Shanghai")
        problems.raise_if_any()

    def changed_fields(self, other: Profile) -> list[str]:
        return [f for f in PROFILE_FIELDS if getattr(self, f) != getattr(other, f)]


@dataclass
class Consent:
    purpose: ConsentPurpose
    granted: bool
    source: str
    changed_at: datetime


@dataclass
class LinkedIdentity:
    identity: ChannelIdentity
    linked_at: datetime


@dataclass
class Member:
    member_id: str
    state: MemberState
    registered_unit: str
    registered_channel: str
    created_at: datetime
    updated_at: datetime
    merged_into: str = ""
    suspension_reason: str = ""
    identities: list[LinkedIdentity] = field(default_factory=list)
    profile: Profile = field(default_factory=Profile)
    consents: dict[ConsentPurpose, Consent] = field(default_factory=dict)
    tags: set[str] = field(default_factory=set)
    # What happened to the member in this unit of work, for the outbox (not part of its state).
    events: list[ev.Event] = field(default_factory=list, compare=False, repr=False)

    @classmethod
    def register(
        cls,
        member_id: str,
        unit: str,
        channel: str,
        now: datetime,
        identities: Sequence[ChannelIdentity],
        profile: Profile,
        consents: Sequence[Consent],
    ) -> Member:
        """A new active member: registered, with the consents and the profile given."""
        member = cls(
            member_id=member_id,
            state=MemberState.ACTIVE,
            registered_unit=unit,
            registered_channel=channel,
            created_at=now,
            updated_at=now,
            identities=[LinkedIdentity(i, now) for i in identities],
        )
        member.record(ev.MemberRegistered(member_id, unit, channel, now))
        member.give_consents(consents)
        member.change_profile(profile, now)
        return member

    def record(self, event: ev.Event) -> None:
        self.events.append(event)

    def change_tags(self, add: Iterable[str], remove: Iterable[str], now: datetime) -> None:
        """The member's tags with `remove` taken off and `add` put on (a tag in both stays);
        a change is announced (MemberTagsChanged), none is not."""
        before = self.tags
        self.tags = (before - set(remove)) | set(add)
        added, removed = self.tags - before, before - self.tags
        if added or removed:
            self.record(
                ev.MemberTagsChanged(
                    self.member_id,
                    tuple(sorted(self.tags)),
                    tuple(sorted(added)),
                    tuple(sorted(removed)),
                    now,
                )
            )

    # --- rules --------------------------------------------------------------------------------
    def ensure_changeable(self) -> None:
        """Merged and erased members are read-only."""
        if self.state is MemberState.MERGED:
            raise MemberMerged(self.member_id, self.merged_into)
        if self.state is MemberState.ERASED:
            raise MemberErased(self.member_id)

    def ensure_active(self) -> None:
        self.ensure_changeable()
        if self.state is MemberState.SUSPENDED:
            raise MemberSuspended(self.member_id)

    def suspend(self, reason: str, now: datetime) -> None:
        self.ensure_active()
        self.state = MemberState.SUSPENDED
        self.suspension_reason = reason
        self.updated_at = now
        self.record(ev.MemberSuspended(self.member_id, now))

    def reactivate(self, now: datetime) -> None:
        self.ensure_changeable()
        if self.state is not MemberState.SUSPENDED:
            raise MemberNotSuspended(self.member_id)
        self.state = MemberState.ACTIVE
        self.suspension_reason = ""
        self.updated_at = now
        self.record(ev.MemberReactivated(self.member_id, now))

    def change_profile(self, profile: Profile, now: datetime) -> list[str]:
        """The member's profile becomes `profile`; the fields that changed (announced if any)."""
        changed = profile.changed_fields(self.profile)
        self.profile = profile
        if changed:
            self.record(
                ev.ProfileChanged(
                    self.member_id, tuple(changed), profile.birthday, now, profile.time_zone
                )
            )
        return changed

    def give_consents(self, changes: Sequence[Consent]) -> None:
        """Consents given or withdrawn: each is announced, even one that changes nothing."""
        for consent in changes:
            self.consents[consent.purpose] = consent
            self.record(
                ev.ConsentChanged(
                    self.member_id,
                    consent.purpose,
                    consent.granted,
                    consent.source,
                    consent.changed_at,
                )
            )

    def erase(self, now: datetime) -> None:
        """Personal data gone, a tombstone left: the member only answers reads from now on."""
        self.ensure_changeable()
        self.state = MemberState.ERASED
        self.merged_into = ""
        self.suspension_reason = ""
        self.updated_at = now
        self.identities = []
        self.profile = Profile()
        self.consents = {}
        self.tags = set()
        self.record(ev.MemberErased(self.member_id, now))

    def has_identity(self, identity: ChannelIdentity) -> bool:
        return any(linked.identity == identity for linked in self.identities)

    def ensure_can_unlink(self, identity: ChannelIdentity) -> None:
        self.ensure_changeable()
        if len(self.identities) <= 1 and self.has_identity(identity):
            raise LastIdentity(self.member_id)

    def ensure_can_absorb(self, absorbed: Member) -> None:
        if absorbed.member_id == self.member_id:
            raise CannotMergeIntoItself(self.member_id)
        self.ensure_changeable()
        absorbed.ensure_changeable()

    def ensure_can_give_back(self, restored: Member, identities: Sequence[ChannelIdentity]) -> None:
        """An unmerge: `restored` must be merged into this member, which must be a member of its
        own still (not merged since, not erased); every identity named must be this member's,
        and it keeps at least one (a member is never left without an identity)."""
        self.ensure_changeable()
        if restored.state is not MemberState.MERGED or restored.merged_into != self.member_id:
            raise NotMergedInto(restored.member_id, self.member_id, restored.merged_into)
        problems = Violations()
        if not identities:
            problems.add("identities", "name the identities that go back to the restored member")
        for index, identity in enumerate(identities):
            if not self.has_identity(identity):
                problems.add(f"identities[{index}]", f"the survivor holds no such {identity.type}")
        problems.raise_if_any()
        if len(identities) >= len(self.identities):
            raise LastIdentity(
                self.member_id, "the survivor keeps at least one identity: leave it one"
            )

    def absorb_profile(self, absorbed: Profile) -> Profile:
        """The survivor keeps what it has and takes what it lacks from the absorbed member."""
        merged = Profile(**{f: getattr(self.profile, f) for f in PROFILE_FIELDS})
        for name in PROFILE_FIELDS:
            mine = getattr(merged, name)
            if mine in ("", None, Gender.UNSPECIFIED):
                setattr(merged, name, getattr(absorbed, name))
        return merged


def new_member_id() -> str:
    """Opaque and random: nothing about the person, and spreads evenly when distributed."""
    return str(uuid.uuid4())


def validate_unit(unit: str, field: str = "unit", required: bool = True) -> None:
    if not unit and not required:
        return
    if not UNIT.match(unit):
        raise InvalidArgument.of(
            [FieldViolation(field, "a business unit code such as 'mall' or 'hotel'")]
        )


def validate_tags(tags: list[str], field: str) -> None:
    problems = Violations()
    for index, tag in enumerate(tags):
        if not is_tag(tag):
            problems.add(f"{field}[{index}]", TAG_HINT)
    problems.raise_if_any()
