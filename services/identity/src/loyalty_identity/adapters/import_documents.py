"""Member imports as PostgreSQL stores them: the spec and a candidate's row as JSON documents,
and the rows of `member_imports` and `merge_candidates` as domain objects."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from loyalty_identity.adapters.import_operations import json_of, operation_fields
from loyalty_identity.domain.identities import ChannelIdentity
from loyalty_identity.domain.imports import (
    AutoMerge,
    ColumnMapping,
    ConsentColumns,
    ImportFormat,
    ImportSpec,
    ParsedRow,
    RowConsent,
)
from loyalty_identity.domain.member import Gender
from loyalty_identity.domain.member_import import (
    CandidateState,
    Counts,
    Evidence,
    ImportedMember,
    MemberImport,
    MergeCandidate,
)

COUNTERS = ("created", "linked", "unchanged", "candidates", "merged", "rejected", "legacy_points")
CANDIDATE_COLUMNS = (
    "candidate_id::text, import_id::text, row_number, unit, legacy_key, evidence, "
    "legacy_points, points_expire_at, tier_code, tier_ends_at, birthday_month, birthday_day, "
    "state, survivor::text, created_at, resolved_at"
)


def spec_document(spec: ImportSpec) -> dict[str, Any]:
    mapping = spec.mapping
    return {
        "unit": spec.unit,
        "format": spec.format.value,
        "encoding": spec.encoding,
        "default_region": spec.default_region,
        "tier_mapping": dict(spec.tier_mapping),
        "tier_grant_ends_at": _iso(spec.tier_grant_ends_at),
        "auto_merge": spec.auto_merge.value,
        "keep_file": spec.keep_file,
        "file_name": spec.file_name,
        "max_rejected_percent": spec.max_rejected_percent,
        "mapping": {
            **{
                name: getattr(mapping, name)
                for name in ColumnMapping.__dataclass_fields__
                if name != "consents"
            },
            "consents": [[c.purpose, c.granted, c.changed_at] for c in mapping.consents],
        },
    }


def spec_of(document: dict[str, Any]) -> ImportSpec:
    mapping = dict(document["mapping"])
    consents = tuple(ConsentColumns(*c) for c in mapping.pop("consents"))
    return ImportSpec(
        unit=document["unit"],
        mapping=ColumnMapping(**mapping, consents=consents),
        format=ImportFormat(document["format"]),
        encoding=document["encoding"],
        default_region=document["default_region"],
        tier_mapping=dict(document["tier_mapping"]),
        tier_grant_ends_at=_time(document["tier_grant_ends_at"]),
        auto_merge=AutoMerge(document["auto_merge"]),
        keep_file=document["keep_file"],
        file_name=document["file_name"],
        max_rejected_percent=document["max_rejected_percent"],
    )


def row_document(row: ParsedRow) -> dict[str, Any]:
    return {
        "number": row.number,
        "identities": [[i.type, i.value] for i in row.identities],
        "name": row.name,
        "gender": row.gender.value,
        "birthday": row.birthday.isoformat() if row.birthday else None,
        "region": row.region,
        "tags": list(row.tags),
        "consents": [[c.purpose, c.granted, _iso(c.changed_at)] for c in row.consents],
        "legacy_points": row.legacy_points,
        "points_expire_at": _iso(row.points_expire_at),
        "legacy_tier": row.legacy_tier,
        "tier_code": row.tier_code,
        "joined_at": _iso(row.joined_at),
        "notes": list(row.notes),
    }


def row_of(document: dict[str, Any]) -> ParsedRow:
    birthday = document["birthday"]
    return ParsedRow(
        number=document["number"],
        identities=tuple(ChannelIdentity(t, v) for t, v in document["identities"]),
        name=document["name"],
        gender=Gender(document["gender"]),
        birthday=date.fromisoformat(birthday) if birthday else None,
        region=document["region"],
        tags=tuple(document["tags"]),
        consents=tuple(RowConsent(p, g, _time(at)) for p, g, at in document["consents"]),
        legacy_points=document["legacy_points"],
        points_expire_at=_time(document["points_expire_at"]),
        legacy_tier=document["legacy_tier"],
        tier_code=document["tier_code"],
        joined_at=_time(document.get("joined_at")),
        notes=tuple(document["notes"]),
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def import_of(row: Any) -> MemberImport:
    return MemberImport(
        **operation_fields(row),
        spec=spec_of(json_of(row["spec"])),
        counts=Counts(**{name: row[name] for name in COUNTERS}),
    )


def candidate_of(row: Any) -> MergeCandidate:
    return MergeCandidate(
        candidate_id=row["candidate_id"],
        import_id=row["import_id"],
        row_number=row["row_number"],
        unit=row["unit"],
        evidence=tuple(Evidence(*item) for item in json_of(row["evidence"])),
        imported=ImportedMember(
            member_id="",
            legacy_key=bytes(row["legacy_key"]).hex(),
            created=False,
            legacy_points=row["legacy_points"],
            legacy_points_expire_at=row["points_expire_at"],
            tier_code=row["tier_code"],
            tier_ends_at=row["tier_ends_at"],
            birthday_month=row["birthday_month"],
            birthday_day=row["birthday_day"],
        ),
        created_at=row["created_at"],
        state=CandidateState(row["state"]),
        survivor=row["survivor"] or "",
        resolved_at=row["resolved_at"],
    )
