"""What an import's spec may ask (pure): the checks made before its file is taken, and the
defaults it is given then."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from loyalty_kit.errors import InvalidArgument, Violations

from loyalty_identity.domain.identities import is_phone_region
from loyalty_identity.domain.imports import ColumnMapping, ImportFormat, ImportSpec
from loyalty_identity.domain.member import ConsentPurpose, validate_unit

DEFAULT_MAX_REJECTED_PERCENT = 50
TIER_CODE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")  # the ladder's codes ("gold"); tiers owns them
ENCODINGS = ("utf-8", "gb18030")
MAX_COLUMN_LENGTH = 128
MAX_FILE_NAME_LENGTH = 255
MAX_TIER_MAPPINGS = 100
CONSENT_PREFIX = "CONSENT_PURPOSE_"


def consent_purpose(contract_name: str) -> ConsentPurpose | None:
    """A consent purpose by its contract name ("CONSENT_PURPOSE_MARKETING_SMS")."""
    if not contract_name.startswith(CONSENT_PREFIX):
        return None
    return ConsentPurpose.__members__.get(contract_name.removeprefix(CONSENT_PREFIX))


def validate_spec(spec: ImportSpec) -> None:
    """Every problem of a spec at once, as field violations named as in the request."""
    problems = Violations()
    try:
        validate_unit(spec.unit, "spec.unit")
    except InvalidArgument as error:
        problems.items.extend(error.field_violations)
    mapping = spec.mapping
    if not mapping.legacy_number:
        problems.add("spec.mapping.legacy_number", "required: the column of the legacy number")
    for name in ColumnMapping.__dataclass_fields__:
        value = getattr(mapping, name)
        if isinstance(value, str) and len(value) > MAX_COLUMN_LENGTH:
            problems.add(f"spec.mapping.{name}", f"at most {MAX_COLUMN_LENGTH} characters")
    if not 1 <= len(mapping.tag_separator) <= 4:
        problems.add("spec.mapping.tag_separator", "1 to 4 characters (default ';')")
    seen: set[str] = set()
    for index, consent in enumerate(mapping.consents):
        where = f"spec.mapping.consents[{index}]"
        if consent_purpose(consent.purpose) is None:
            names = ", ".join(CONSENT_PREFIX + p.name for p in ConsentPurpose)
            problems.add(f"{where}.purpose", f"one of {names}")
        elif consent.purpose in seen:
            problems.add(f"{where}.purpose", "named twice")
        seen.add(consent.purpose)
        if not consent.granted:
            problems.add(f"{where}.granted", "required: the column saying whether it was given")
        for column in (consent.granted, consent.changed_at):
            if len(column) > MAX_COLUMN_LENGTH:
                problems.add(where, f"column names of at most {MAX_COLUMN_LENGTH} characters")
    if spec.encoding not in ENCODINGS:
        problems.add("spec.encoding", "utf-8 or gb18030")
    elif spec.encoding == "gb18030" and spec.format is not ImportFormat.CSV:
        problems.add("spec.encoding", "gb18030 is for CSV files; JSON Lines are UTF-8")
    if not is_phone_region(spec.default_region):
        problems.add("spec.default_region", "a region code such as CN or HK")
    if len(spec.tier_mapping) > MAX_TIER_MAPPINGS:
        problems.add("spec.tier_mapping", f"at most {MAX_TIER_MAPPINGS} legacy tiers")
    for legacy, code in sorted(spec.tier_mapping.items()):
        if not legacy.strip() or len(legacy) > MAX_COLUMN_LENGTH:
            problems.add("spec.tier_mapping", f"legacy tier names of 1-{MAX_COLUMN_LENGTH} chars")
        if not TIER_CODE.match(code):
            problems.add(
                f"spec.tier_mapping[{legacy[:MAX_COLUMN_LENGTH]}]",
                "a tier code of the ladder, e.g. 'gold'",
            )
    if not 0 <= spec.max_rejected_percent <= 100:
        problems.add("spec.max_rejected_percent", "0 to 100 (0: 50)")
    name = spec.file_name
    if len(name) > MAX_FILE_NAME_LENGTH or "/" in name or "\\" in name:
        problems.add("spec.file_name", f"a file name without a path, {MAX_FILE_NAME_LENGTH} max")
    problems.raise_if_any()


def end_of_next_year(now: datetime, time_zone: str) -> datetime:
    """The end of the calendar year after `now`'s, in the programme's time zone (the first
    moment of the year after)."""
    zone = ZoneInfo(time_zone)
    return datetime(now.astimezone(zone).year + 2, 1, 1, tzinfo=zone).astimezone(UTC)


def resolved(spec: ImportSpec, now: datetime, time_zone: str) -> ImportSpec:
    """The spec with its defaults made explicit (the tiers' end, the refusal limit)."""
    return replace(
        spec,
        tier_grant_ends_at=spec.tier_grant_ends_at or end_of_next_year(now, time_zone),
        max_rejected_percent=spec.max_rejected_percent or DEFAULT_MAX_REJECTED_PERCENT,
    )
