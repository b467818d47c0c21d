"""What the identity service's use cases take and give back, as plain values (no gRPC)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from loyalty_identity.domain.member import ConsentPurpose, Member, Profile


@dataclass(frozen=True)
class RawIdentity:
    type: str
    value: str


@dataclass(frozen=True)
class ConsentGiven:
    purpose: ConsentPurpose | None  # None: the caller left it unspecified
    granted: bool


@dataclass(frozen=True)
class Register:
    identities: Sequence[RawIdentity]
    unit: str
    channel: str
    profile: Profile = field(default_factory=Profile)
    consents: Sequence[ConsentGiven] = ()


@dataclass(frozen=True)
class Operator:
    """Who runs a member operation (the caller's unit and client), for the audit log."""

    unit: str
    client_id: str


@dataclass(frozen=True)
class Unmerged:
    restored: Member
    survivor: Member


@dataclass(frozen=True)
class Registered:
    member: Member
    created: bool
    already_bound_types: list[str]
