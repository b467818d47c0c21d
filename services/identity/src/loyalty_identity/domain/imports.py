"""Bringing a unit's legacy members in: what an import asks for and what a row of its file is,
once read (pure: no I/O).

The file reader (`import_file.py`) turns the file's bytes into `ParsedRow`s and `RejectedRow`s,
streaming; the import's use case (service layer) matches each parsed row against the members
already there and decides its outcome. Rows exist in memory only while they are processed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum

from loyalty_identity.domain.identities import ChannelIdentity
from loyalty_identity.domain.member import Gender

LEGACY_TYPE_PREFIX = "legacy:"


def legacy_type(unit: str) -> str:
    """The identity type of a unit's legacy member number, e.g. "legacy:mall"."""
    return f"{LEGACY_TYPE_PREFIX}{unit}"


class ImportFormat(Enum):
    CSV = "csv"
    JSON_LINES = "jsonl"


class AutoMerge(Enum):
    NONE = "none"
    PHONE_AND_NAME = "phone_and_name"


class RowOutcome(Enum):
    CREATED = "created"
    LINKED = "linked"
    UNCHANGED = "unchanged"
    MERGE_CANDIDATE = "merge_candidate"
    MERGED = "merged"
    REJECTED = "rejected"


@dataclass(frozen=True)
class ConsentColumns:
    purpose: str  # a ConsentPurpose value name, e.g. "CONSENT_PURPOSE_MARKETING_SMS"
    granted: str  # column
    changed_at: str = ""  # column


@dataclass(frozen=True)
class ColumnMapping:
    """Which column (CSV header, or JSON key) holds what; "" = not imported."""

    legacy_number: str
    phone: str = ""
    email: str = ""
    wechat_unionid: str = ""
    wechat_openid: str = ""
    card_number: str = ""
    name: str = ""
    gender: str = ""
    birthday: str = ""
    region: str = ""
    tags: str = ""
    points_balance: str = ""
    points_expire_at: str = ""
    tier: str = ""
    consents: tuple[ConsentColumns, ...] = ()
    tag_separator: str = ";"
    joined_at: str = ""  # when the member joined the unit's legacy programme

    def columns(self) -> list[str]:
        """Every column named, once, in mapping order."""
        named = [
            self.legacy_number,
            self.phone,
            self.email,
            self.wechat_unionid,
            self.wechat_openid,
            self.card_number,
            self.name,
            self.gender,
            self.birthday,
            self.region,
            self.tags,
            self.points_balance,
            self.points_expire_at,
            self.tier,
            self.joined_at,
        ]
        for consent in self.consents:
            named += [consent.granted, consent.changed_at]
        return list(dict.fromkeys(c for c in named if c))


@dataclass(frozen=True)
class ImportSpec:
    unit: str
    mapping: ColumnMapping
    format: ImportFormat = ImportFormat.CSV
    encoding: str = "utf-8"  # or "gb18030" (CSV only)
    default_region: str = "CN"
    tier_mapping: dict[str, str] = field(default_factory=dict)  # legacy tier -> ladder tier
    tier_grant_ends_at: datetime | None = None  # None: end of next calendar year
    auto_merge: AutoMerge = AutoMerge.NONE
    keep_file: bool = False
    file_name: str = ""
    max_rejected_percent: int = 50


@dataclass(frozen=True)
class RowConsent:
    purpose: str
    granted: bool
    changed_at: datetime | None  # None: the import's time


@dataclass(frozen=True)
class SealedAhead:
    """A row's personal data sealed for the new member it would make, by the import reader's
    worker process while the chunk before was written: the id that member takes, its data key
    (raw, and wrapped under the master key `key_id`), the row's identities' values sealed in
    their order, its name and birthday sealed (None when it has none). Used only when the row
    does make that member; any other row's data is sealed in the service as before."""

    member_id: str
    data_key: bytes = field(repr=False)
    key_id: str
    wrapped_key: bytes = field(repr=False)
    identities: tuple[bytes, ...] = field(repr=False)
    name: bytes | None = field(repr=False)
    birthday: bytes | None = field(repr=False)


@dataclass(frozen=True)
class ParsedRow:
    """A row read, normalised and valid. `identities` holds the legacy number first (type
    `legacy:<unit>`), then phone, email, WeChat and card identities the row has."""

    number: int
    identities: tuple[ChannelIdentity, ...]
    name: str = ""
    gender: Gender = Gender.UNSPECIFIED
    birthday: date | None = None
    region: str = ""
    tags: tuple[str, ...] = ()
    consents: tuple[RowConsent, ...] = ()
    legacy_points: int = 0
    points_expire_at: datetime | None = None
    legacy_tier: str = ""
    tier_code: str = ""  # the ladder tier it maps to ("" when unmapped or none)
    joined_at: datetime | None = None  # when it joined the unit's legacy programme
    # Codes of what was not carried over although the row is imported, e.g. "UNMAPPED_TIER".
    notes: tuple[str, ...] = ()
    # The identities' blind indexes, in order, when a worker process made them with the row
    # (opaque here; not part of what the row is).
    indexes: tuple[bytes, ...] = field(default=(), compare=False, repr=False)
    # Its data sealed ahead for the member it would make, when a worker process did it.
    sealed: SealedAhead | None = field(default=None, compare=False, repr=False)

    @property
    def legacy(self) -> ChannelIdentity:
        return self.identities[0]


@dataclass(frozen=True)
class RejectedRow:
    """A row refused: its number, a reason code (e.g. "INVALID_PHONE", "LINE_TOO_LONG") and the
    reason in words with personal data masked."""

    number: int
    reason: str
    detail: str


class ImportFileError(Exception):
    """The file as a whole cannot be read: a mapped column missing, the wrong encoding, an
    empty file. Fails the import with this reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
