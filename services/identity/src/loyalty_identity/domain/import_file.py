"""Reading a member import file: its bytes, in parts, become `ParsedRow`s and `RejectedRow`s
(pure: no I/O; streaming).

**Framing on bytes.** The file comes in parts of any size, split anywhere. Records are framed
before they are decoded: in UTF-8 and in GB18030 the bytes of a newline, a quote and a comma
never occur inside a multi-byte character, so a newline byte always ends a line and a quote byte
is always a quote. A CSV record is a line, or several while a quoted field is open (RFC 4180,
read as Python's `csv` module reads it: a quote opens a quoted field only as the field's first
character). Only the record under way is held, at most `MAX_RECORD_BYTES`; a longer one is
rejected (`LINE_TOO_LONG`) and read past to the next newline without being kept.

**Decoding per record.** Each record is decoded alone, so bytes not in the file's encoding
reject that row (`INVALID_ENCODING`); a header (or a first JSON line) that cannot be decoded
fails the file. A byte order mark is dropped. A file said to be GBK or GB2312 is read as GB18030,
which extends both.

**Values.** Every value is trimmed; an empty one is absent. What the reader decides:
- Control characters (C0 and C1, the line and paragraph separators, the bidirectional
  embeddings, overrides, isolates and marks, zero-width space and a stray byte order mark) in
  any mapped value reject the row (`CONTROL_CHARACTERS`); tabs and newlines only around a value
  are trimmed like spaces. They hide or reorder text, and no legacy field needs them.
- Emoji are allowed in names: WeChat nicknames carry them, and a name is data to show, not an
  identity to match (the zero-width joiner of emoji sequences is allowed). A name has at most
  128 characters, a region 64, a legacy tier 64, every identity 256.
- A CSV row with more or fewer fields than its header is rejected (`WRONG_COLUMN_COUNT`): a
  comma left unquoted shifts every later column, and a shifted phone is someone else's.
- Dates: `YYYY-MM-DD`, `YYYY/MM/DD` (month and day of one or two digits), `YYYYMMDD`. Times:
  ISO 8601 / RFC 3339; without an offset they are in the import's time zone (default
  Asia/Shanghai). A consent's date means the start of that day; a points expiry date means the
  end of that day, i.e. the first instant of the next, as the points ledger's expiry instants are
  (points are gone at that instant). A birthday may carry a midnight time (spreadsheets add it).
- Gender: male/female/other, M/F/O, 男/女/其他 (any case) map; unknown, U, 未知, 保密 are
  unspecified; anything else is unspecified with the note `UNKNOWN_GENDER` (often a column
  mapped by mistake).
- A legacy tier not in the spec's mapping (exactly, else ignoring case) is imported without a
  tier, with the note `UNMAPPED_TIER`.
- JSON values are strings or numbers (true/false too, for consents); `tags` may also be an
  array of strings; null is absent.
- A row is rejected for its first problem, in mapping order. Details name the column and never
  show a personal value unmasked (`loyalty_identity.domain.masking`).
- Row numbers: CSV data rows from 1 (the header is 0), counting blank lines, so row n is the
  spreadsheet's line n + 1 when no field spans lines; JSON Lines lines from 1. Blank lines yield
  nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from loyalty_kit.resources import is_tag

from loyalty_identity.domain import masking
from loyalty_identity.domain.file_records import (
    _CONTROL,
    MAX_RECORD_BYTES,
    RecordReader,
    _masked_token,
)
from loyalty_identity.domain.identities import (
    MAX_VALUE_LENGTH,
    ChannelIdentity,
    IdentityKind,
    IdentityType,
    canonical_email,
)
from loyalty_identity.domain.imports import (
    ImportFileError,
    ImportSpec,
    ParsedRow,
    RejectedRow,
    RowConsent,
    legacy_type,
)
from loyalty_identity.domain.member import MAX_TAGS_PER_MEMBER, Gender

MAX_NAME_LENGTH = 128
MAX_REGION_LENGTH = 64
MAX_TIER_LENGTH = 64
MAX_BALANCE = 2**63 - 1  # points are int64
DEFAULT_TIME_ZONE = ZoneInfo("Asia/Shanghai")

# The mapping's fields, in the order the reader hands a row's values over (consents follow:
# granted, changed_at for each).
FIELDS = (
    "legacy_number",
    "phone",
    "email",
    "wechat_unionid",
    "wechat_openid",
    "card_number",
    "name",
    "gender",
    "birthday",
    "region",
    "tags",
    "points_balance",
    "points_expire_at",
    "tier",
    "joined_at",
)
(
    _LEGACY,
    _PHONE,
    _EMAIL,
    _UNIONID,
    _OPENID,
    _CARD,
    _NAME,
    _GENDER,
    _BIRTHDAY,
    _REGION,
    _TAGS,
    _BALANCE,
    _EXPIRY,
    _TIER,
    _JOINED,
) = range(len(FIELDS))
_CONSENTS = len(FIELDS)
# The token identities a row may carry, after its legacy number, phone and e-mail.
TOKEN_TYPES = ((_UNIONID, "wechat_unionid"), (_OPENID, "wechat_openid"), (_CARD, "store_card"))

_DAY = re.compile(r"(\d{4})([-/])(\d{1,2})\2(\d{1,2})|(\d{4})(\d{2})(\d{2})", re.ASCII)
_BIRTHDAY_FORMAT = re.compile(
    r"(?:(\d{4})([-/])(\d{1,2})\2(\d{1,2})|(\d{4})(\d{2})(\d{2}))"
    r"(?:[ T]00:00(?::00(?:\.0+)?)?)?",
    re.ASCII,
)
_DAY_AND_TIME = re.compile(r"(\d{4})([-/])(\d{1,2})\2(\d{1,2})([ T].+)", re.ASCII | re.DOTALL)
_WHOLE = re.compile(r"(\d{1,19})(?:\.0*)?", re.ASCII)
_GENDERS = {
    **dict.fromkeys(("male", "m", "男", "男性"), Gender.MALE),
    **dict.fromkeys(("female", "f", "女", "女性"), Gender.FEMALE),
    **dict.fromkeys(("other", "o", "其他"), Gender.OTHER),
    **dict.fromkeys(("unknown", "u", "unspecified", "未知", "保密"), Gender.UNSPECIFIED),
}
_CONSENT_ANSWERS = {
    **dict.fromkeys(("true", "yes", "y", "1", "是"), True),
    **dict.fromkeys(("false", "no", "n", "0", "否"), False),
}


class FileReader(RecordReader[ParsedRow]):
    """Reads one import file. `rows` may be called once; it raises `ImportFileError` when the
    file as a whole cannot be read (before any row, or at the end for a file with no rows)."""

    spec: ImportSpec

    def __init__(
        self,
        spec: ImportSpec,
        identity_types: Mapping[str, IdentityType],
        *,
        now: datetime,
        time_zone: ZoneInfo | None = None,
    ) -> None:
        self.spec = spec
        self.bytes_read = 0  # bytes consumed so far: up to the end of the last row yielded
        self._identity_types = identity_types
        self._now = now if now.tzinfo else now.replace(tzinfo=UTC)
        self._zone: tzinfo = time_zone or DEFAULT_TIME_ZONE
        self._today = self._now.astimezone(self._zone).date()
        mapping = spec.mapping
        self._columns = [getattr(mapping, name) for name in FIELDS]
        for consent in mapping.consents:
            self._columns += [consent.granted, consent.changed_at]
        self._legacy_type = legacy_type(spec.unit)
        self._region = spec.default_region.upper()
        self._tiers = dict(spec.tier_mapping)
        self._tiers_folded = {k.casefold(): v for k, v in spec.tier_mapping.items()}
        self._separator = mapping.tag_separator or ";"
        self._tokens: list[tuple[int, str, re.Pattern[str]]] = []
        # Dates repeat from row to row (one expiry date for a whole file, birthdays from a few
        # tens of thousands of days): each is read once. Kept bounded (see `_cached`).
        self._birthdays: dict[str, date | None] = {}
        self._starts: dict[str, datetime | None] = {}
        self._ends: dict[str, datetime | None] = {}
        self._where: list[str] = []  # how a detail names each field's column

    # --- the file ---------------------------------------------------------------------------
    def _check_spec(self) -> None:
        super()._check_spec()
        spec = self.spec
        if not spec.mapping.legacy_number:
            raise ImportFileError("MISSING_COLUMNS", "the mapping names no legacy number column")
        self._tokens = []
        for slot, code in TOKEN_TYPES:
            if not self._columns[slot]:
                continue
            known = self._identity_types.get(code)
            if known is None or known.kind is not IdentityKind.TOKEN:
                raise ImportFileError(
                    "UNKNOWN_IDENTITY_TYPE",
                    f"identity type {code} (column {self._columns[slot]!r}) is not defined",
                )
            self._tokens.append((slot, code, re.compile(known.pattern)))

    def _json_row(self, number: int, text: str, item: dict[Any, Any]) -> ParsedRow | RejectedRow:
        raw = [item.get(key, "") for key in self._keys]
        values = _json_values(raw, self._separator)
        if isinstance(values, int):
            return RejectedRow(
                number,
                "INVALID_JSON",
                f"{self._where[values]} holds neither a string nor a number",
            )
        clean = "\\" not in text and _CONTROL.search(text) is None
        return self._row(number, values, clean)

    # --- a row --------------------------------------------------------------------------------
    def _row(self, number: int, v: Sequence[str], clean: bool) -> ParsedRow | RejectedRow:
        """A row's values (in `FIELDS` order, then the consents'), normalised and checked.
        `clean`: the whole record was seen to hold no control character."""
        identities = self._member_of(number, v, clean, legacy_required=True)
        if isinstance(identities, RejectedRow):
            return identities
        value = v[_EMAIL].strip()
        if value:
            email = canonical_email(value) if len(value) <= MAX_VALUE_LENGTH else None
            if email is None:
                return self._reject(
                    number,
                    "INVALID_EMAIL",
                    _EMAIL,
                    f"{masking.mask_email(value[:64])} is not a valid e-mail address",
                )
            identities.append(ChannelIdentity("email", email))
        for slot, code, pattern in self._tokens:
            value = v[slot].strip()
            if not value:
                continue
            if len(value) > MAX_VALUE_LENGTH or not pattern.fullmatch(value):
                return self._reject(
                    number,
                    f"INVALID_{code.upper()}",
                    slot,
                    f"{_masked_token(value)} is not a valid {code}",
                )
            identities.append(ChannelIdentity(code, value))
        notes: list[str] = []
        name = v[_NAME].strip()
        if len(name) > MAX_NAME_LENGTH:
            return self._too_long_value(number, _NAME, MAX_NAME_LENGTH)
        gender = Gender.UNSPECIFIED
        value = v[_GENDER].strip()
        if value:
            found = _GENDERS.get(value.casefold())
            if found is None:
                notes.append("UNKNOWN_GENDER")
            else:
                gender = found
        birthday: date | None = None
        value = v[_BIRTHDAY].strip()
        if value:
            birthday = self._birthdays.get(value, _UNREAD)
            if birthday is _UNREAD:
                birthday = _cached(self._birthdays, value, _birthday(value))
            if birthday is None or birthday.year < 1900:
                return self._reject(
                    number,
                    "INVALID_BIRTHDAY",
                    _BIRTHDAY,
                    "not a date from 1900 on (YYYY-MM-DD, YYYY/MM/DD or YYYYMMDD)",
                )
            if birthday > self._today:
                return self._reject(number, "BIRTHDAY_IN_FUTURE", _BIRTHDAY, "in the future")
        region = v[_REGION].strip()
        if len(region) > MAX_REGION_LENGTH:
            return self._too_long_value(number, _REGION, MAX_REGION_LENGTH)
        tags: tuple[str, ...] = ()
        value = v[_TAGS].strip()
        if value:
            tags = tuple(
                dict.fromkeys(t for t in map(str.strip, value.split(self._separator)) if t)
            )
            for index, tag in enumerate(tags):
                if not is_tag(tag):
                    return self._reject(
                        number,
                        "INVALID_TAG",
                        _TAGS,
                        f"tag {index + 1} is not a namespaced tag such as 'bu:hotel-active'",
                    )
            if len(tags) > MAX_TAGS_PER_MEMBER:
                return self._reject(
                    number, "TOO_MANY_TAGS", _TAGS, f"at most {MAX_TAGS_PER_MEMBER} tags"
                )
        consents: list[RowConsent] = []
        for index, consent in enumerate(self.spec.mapping.consents):
            slot = _CONSENTS + 2 * index
            value = v[slot].strip()
            if not value:
                continue
            granted = _CONSENT_ANSWERS.get(value.casefold())
            if granted is None:
                return self._reject(
                    number, "INVALID_CONSENT", slot, "not true/false, yes/no, 1/0, Y/N or 是/否"
                )
            changed_at: datetime | None = None
            value = v[slot + 1].strip()
            if value:
                changed_at = self._time(value, end_of_day=False)
                if changed_at is None:
                    return self._reject(number, "INVALID_DATE", slot + 1, _NOT_A_TIME)
                if changed_at > self._now:
                    return self._reject(number, "DATE_IN_FUTURE", slot + 1, "in the future")
            consents.append(RowConsent(consent.purpose, granted, changed_at))
        legacy_points = 0
        value = v[_BALANCE].strip()
        if value:
            whole = _WHOLE.fullmatch(value)
            if whole is None or int(whole.group(1)) > MAX_BALANCE:
                reason = "NEGATIVE_BALANCE" if _negative(value) else "INVALID_BALANCE"
                return self._reject(
                    number, reason, _BALANCE, "not a whole number of points, 0 or more"
                )
            legacy_points = int(whole.group(1))
        expires_at: datetime | None = None
        value = v[_EXPIRY].strip()
        if value:
            expires_at = self._time(value, end_of_day=True)
            if expires_at is None:
                return self._reject(number, "INVALID_DATE", _EXPIRY, _NOT_A_TIME)
        tier = v[_TIER].strip()
        tier_code = ""
        if tier:
            if len(tier) > MAX_TIER_LENGTH:
                return self._too_long_value(number, _TIER, MAX_TIER_LENGTH)
            tier_code = self._tiers.get(tier) or self._tiers_folded.get(tier.casefold(), "")
            if not tier_code:
                notes.append("UNMAPPED_TIER")
        joined_at: datetime | None = None
        value = v[_JOINED].strip()
        if value:
            joined_at = self._time(value, end_of_day=False)
            if joined_at is None:
                return self._reject(number, "INVALID_DATE", _JOINED, _NOT_A_TIME)
            if joined_at > self._now:
                return self._reject(number, "DATE_IN_FUTURE", _JOINED, "in the future")
        return ParsedRow(
            number=number,
            identities=tuple(identities),
            name=name,
            gender=gender,
            birthday=birthday,
            region=region,
            tags=tags,
            consents=tuple(consents),
            legacy_points=legacy_points,
            points_expire_at=expires_at,
            legacy_tier=tier,
            tier_code=tier_code,
            joined_at=joined_at,
            notes=tuple(notes),
        )

    def _time(self, value: str, *, end_of_day: bool) -> datetime | None:
        """`value` read as `_instant` reads it, through the file's cache of times already read
        (a day's start, or with `end_of_day` the next day's)."""
        cache = self._ends if end_of_day else self._starts
        found: datetime | None = cache.get(value, _UNREAD)
        if found is _UNREAD:
            found = _cached(cache, value, _instant(value, self._zone, end_of_day=end_of_day))
        return found

    def _reject(self, number: int, reason: str, slot: int, problem: str) -> RejectedRow:
        field = FIELDS[slot] if slot < _CONSENTS else _consent_field(slot)
        return RejectedRow(number, reason, f"{self._where[slot]} ({field}): {problem}")

    def _too_long_value(self, number: int, slot: int, limit: int) -> RejectedRow:
        return self._reject(number, "VALUE_TOO_LONG", slot, f"more than {limit} characters")


_NOT_A_TIME = "not a date (YYYY-MM-DD, YYYY/MM/DD, YYYYMMDD) or an ISO 8601 time"


def _json_values(raw: list[object], separator: str) -> list[str] | int:
    """A JSON object's mapped values as text, or the index of the first that is not a string,
    a number or null (an array of strings is taken for the tags)."""
    values: list[str] = []
    for index, value in enumerate(raw):
        if isinstance(value, str):
            values.append(value)
        elif value is None:
            values.append("")
        elif isinstance(value, bool):
            values.append("true" if value else "false")
        elif isinstance(value, int | float):
            values.append(str(value))
        elif index == _TAGS and isinstance(value, list) and all(isinstance(t, str) for t in value):
            values.append(separator.join(value))
        else:
            return index
    return values


T = TypeVar("T")
_UNREAD: Any = object()
MAX_CACHED = 50_000


def _cached(cache: dict[str, T], key: str, value: T) -> T:
    if len(cache) >= MAX_CACHED:
        cache.clear()
    cache[key] = value
    return value


def _birthday(value: str) -> date | None:
    found = _BIRTHDAY_FORMAT.fullmatch(value)
    return _date_of(found) if found else None


def _date_of(found: re.Match[str]) -> date | None:
    year, _, month, day, compact_year, compact_month, compact_day = found.groups()
    try:
        if year:
            return date(int(year), int(month), int(day))
        return date(int(compact_year), int(compact_month), int(compact_day))
    except ValueError:
        return None


def _instant(value: str, zone: tzinfo, *, end_of_day: bool) -> datetime | None:
    """A date (its start, or with `end_of_day` the start of the next day) or an ISO 8601 time
    (without an offset: in `zone`), in UTC."""
    found = _DAY.fullmatch(value)
    if found:
        day = _date_of(found)
        if day is None:
            return None
        if end_of_day:
            if day == date.max:
                return None
            day += timedelta(days=1)
        try:
            return datetime.combine(day, time(), zone).astimezone(UTC)
        except OverflowError:  # 0001-01-01 in a zone ahead of UTC is before datetime.min
            return None
    spelt = _DAY_AND_TIME.fullmatch(value)  # a date spelt as `_DAY` spells it, then a time
    if spelt:
        year, _, month, day_of_month, at_time = spelt.groups()
        value = f"{year}-{month:0>2}-{day_of_month:0>2}{at_time}"
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=zone)
    try:
        return at.astimezone(UTC)
    except OverflowError:
        return None


def _negative(value: str) -> bool:
    if not value.startswith("-") or len(value) > 64:
        return False
    try:
        return Decimal(value) < 0
    except InvalidOperation:
        return False


def _consent_field(slot: int) -> str:
    return "consent granted" if (slot - _CONSENTS) % 2 == 0 else "consent changed at"


__all__ = ["FIELDS", "MAX_RECORD_BYTES", "FileReader"]
