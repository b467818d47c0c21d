"""What the identity service tells the others, as plain domain events: the member aggregate
records them, the unit of work collects them, and one adapter (`adapters/events.py`) maps each
to the `loyalty.identity.v1` contract for the outbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:  # the member and import modules record these events
    from loyalty_identity.domain.member import ConsentPurpose
    from loyalty_identity.domain.member_import import ImportedMember
    from loyalty_identity.domain.order_import import ImportedOrder, OrderImportMode


@dataclass(frozen=True)
class MemberRegistered:
    member_id: str
    unit: str
    channel: str  # the contract's channel name, e.g. "CHANNEL_POS"; "" when unspecified
    registered_at: datetime


@dataclass(frozen=True)
class ConsentChanged:
    member_id: str
    purpose: ConsentPurpose
    granted: bool
    source: str
    changed_at: datetime


@dataclass(frozen=True)
class ProfileChanged:
    member_id: str
    changed_fields: tuple[str, ...]
    birthday: date | None  # the profile's birthday after the change (month and day go out)
    changed_at: datetime
    time_zone: str = ""  # the profile's zone after the change


@dataclass(frozen=True)
class MemberMerged:
    survivor_member_id: str
    absorbed_member_id: str
    merged_at: datetime


@dataclass(frozen=True)
class MemberUnmerged:
    survivor_member_id: str
    restored_member_id: str
    merged_at: datetime
    unmerged_at: datetime


@dataclass(frozen=True)
class MemberSuspended:
    member_id: str
    suspended_at: datetime


@dataclass(frozen=True)
class MemberReactivated:
    member_id: str
    reactivated_at: datetime


@dataclass(frozen=True)
class MemberErased:
    member_id: str
    erased_at: datetime


@dataclass(frozen=True)
class MemberTagsChanged:
    member_id: str
    tags: tuple[str, ...]  # every tag the member carries now
    added_tags: tuple[str, ...]
    removed_tags: tuple[str, ...]
    occurred_at: datetime


@dataclass(frozen=True)
class MembersImported:
    """A chunk of an import committed: the members its rows became or joined (no personal
    data: member ids, the legacy accounts' opaque keys, points, tier codes, dates)."""

    member_import: str  # "memberImports/{id}"
    unit: str
    members: tuple[ImportedMember, ...]
    imported_at: datetime


@dataclass(frozen=True)
class LegacyOrdersImported:
    """A chunk of an order import committed: the orders carried over (member ids, order ids,
    amounts, times; no personal data)."""

    order_import: str  # "orderImports/{id}"
    unit: str
    mode: OrderImportMode
    orders: tuple[ImportedOrder, ...]
    imported_at: datetime


Event: TypeAlias = (
    MemberRegistered
    | ConsentChanged
    | ProfileChanged
    | MemberMerged
    | MemberUnmerged
    | MemberSuspended
    | MemberReactivated
    | MemberErased
    | MemberTagsChanged
    | MembersImported
    | LegacyOrdersImported
)
