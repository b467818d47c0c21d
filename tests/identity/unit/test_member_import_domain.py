"""An import's own rules (pure): what a spec may ask, its progress, how it ends."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from loyalty_identity.domain.import_spec import end_of_next_year, validate_spec
from loyalty_identity.domain.imports import (
    ColumnMapping,
    ConsentColumns,
    ImportFormat,
    ImportSpec,
    RowOutcome,
)
from loyalty_identity.domain.member_import import (
    Counts,
    ImportEnded,
    ImportState,
    MemberImport,
    same_name,
)
from loyalty_kit.errors import InvalidArgument

T0 = datetime(2026, 12, 31, 17, tzinfo=UTC)  # 1 January 2027, 01:00 in Shanghai
SPEC = ImportSpec(unit="mall", mapping=ColumnMapping(legacy_number="card_no"))


def job(**changes: object) -> MemberImport:
    made = MemberImport("i-1", SPEC, "mall-crm", "r-1", T0, T0, file_bytes=1000)
    return dataclasses.replace(made, **changes)  # type: ignore[arg-type]


def test_a_spec_is_refused_with_every_problem_at_once() -> None:
    bad = ImportSpec(
        unit="Mall!",
        mapping=ColumnMapping(
            legacy_number="",
            tag_separator="",
            consents=(
                ConsentColumns("CONSENT_PURPOSE_TELEPATHY", "ok"),
                ConsentColumns("CONSENT_PURPOSE_MARKETING_SMS", ""),
            ),
        ),
        format=ImportFormat.JSON_LINES,
        encoding="gb18030",
        default_region="XX",
        tier_mapping={"金卡": "Gold Card"},
        max_rejected_percent=101,
        file_name="../etc/passwd",
    )
    with pytest.raises(InvalidArgument) as refused:
        validate_spec(bad)
    assert [v.field for v in refused.value.field_violations] == [
        "spec.unit",
        "spec.mapping.legacy_number",
        "spec.mapping.tag_separator",
        "spec.mapping.consents[0].purpose",
        "spec.mapping.consents[1].granted",
        "spec.encoding",
        "spec.default_region",
        "spec.tier_mapping[金卡]",
        "spec.max_rejected_percent",
        "spec.file_name",
    ]
    validate_spec(dataclasses.replace(SPEC, encoding="gb18030", tier_mapping={"金卡": "gold"}))


def test_carried_over_tiers_end_with_the_next_calendar_year_in_the_programmes_zone() -> None:
    # Already 2027 in Shanghai: the next calendar year is 2028.
    assert end_of_next_year(T0, "Asia/Shanghai") == datetime(2028, 12, 31, 16, tzinfo=UTC)
    assert end_of_next_year(T0, "UTC") == datetime(2027, 12, 31, 23, tzinfo=UTC) + timedelta(
        hours=1
    )


def test_progress_is_read_off_the_bytes_and_the_running_time() -> None:
    counts = Counts(created=300, rejected=100)
    running = job(started_at=T0, bytes_read=250, counts=counts)
    progress = running.progress(T0 + timedelta(seconds=10))
    assert (progress.percent, progress.rows_per_second, progress.eta_seconds) == (25.0, 40.0, 30)
    assert job().progress(T0).eta_seconds == 0  # not started: unknown
    done = job(state=ImportState.SUCCEEDED, started_at=T0, ended_at=T0 + timedelta(seconds=4))
    assert done.progress(T0 + timedelta(hours=1)).percent == 100.0
    assert counts.rows_read == 400 and counts.by_outcome()[RowOutcome.REJECTED] == 100


def test_the_first_chunk_is_the_first_thousand_rows_at_most() -> None:
    assert job().first_chunk_rows(2000) == 1000
    assert job().first_chunk_rows(50) == 50
    assert job(counts=Counts(created=1000)).first_chunk_rows(2000) == 2000


def test_mostly_refused_is_more_than_the_specs_share() -> None:
    assert job(counts=Counts(created=50, rejected=50)).mostly_rejected() is None
    failure = job(counts=Counts(created=49, rejected=51)).mostly_rejected()
    assert failure is not None and failure.reason == "MOSTLY_REJECTED"
    strict = dataclasses.replace(SPEC, max_rejected_percent=10)
    assert job(spec=strict, counts=Counts(created=89, rejected=11)).mostly_rejected() is not None


def test_cancelling_ends_an_import_nobody_holds_and_only_a_running_one() -> None:
    waiting = job()
    waiting.request_cancel(T0, taken=False)
    assert waiting.state is ImportState.CANCELLED and not waiting.file_kept
    waiting.request_cancel(T0, taken=False)  # again: nothing
    held = job(lease_owner="replica-a")
    held.request_cancel(T0, taken=True)
    assert held.state is ImportState.RUNNING and held.cancel_requested
    kept = job(spec=dataclasses.replace(SPEC, keep_file=True))
    kept.succeed(1000, T0)
    assert kept.file_kept and kept.lease_owner == ""
    with pytest.raises(ImportEnded):
        kept.request_cancel(T0, taken=False)


def test_names_agree_whatever_their_spacing_case_or_width() -> None:
    assert same_name("Li  Wei", " li wei")
    assert same_name("ＷＡＮＧ Fang", "wang fang")  # full-width letters
    assert not same_name("王芳", "王方")
    assert not same_name("", "")
