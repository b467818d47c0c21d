"""The member import's use cases on a fake unit of work: creating an import, a chunk's rows
becoming members (with its report, candidates, counts and one event), the import's end, and
merge candidates decided."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta

import pytest
from loyalty_identity.domain import events
from loyalty_identity.domain.identities import ChannelIdentity
from loyalty_identity.domain.imports import (
    AutoMerge,
    ColumnMapping,
    ImportSpec,
    ParsedRow,
    RejectedRow,
    RowConsent,
    RowOutcome,
)
from loyalty_identity.domain.member import ConsentPurpose, Gender, MemberState
from loyalty_identity.domain.member_import import (
    CandidateDecided,
    CandidateState,
    ImportState,
    MemberImport,
)
from loyalty_identity.service_layer import handlers, imports
from loyalty_identity.service_layer.commands import Operator, RawIdentity, Register
from loyalty_kit.errors import InvalidArgument

from tests.identity.unit.import_fakes import FakeImportWork, as_import_port

T0 = datetime(2026, 3, 1, 4, tzinfo=UTC)
CRM = Operator(unit="hotel", client_id="hotel-crm")
DESK = Operator(unit="group", client_id="service-desk")
SPEC = ImportSpec(unit="hotel", mapping=ColumnMapping(legacy_number="no", phone="tel"))


def phone(n: int) -> ChannelIdentity:
    return ChannelIdentity("phone", f"+86139{n:08d}")


def email(n: int) -> ChannelIdentity:
    return ChannelIdentity("email", f"p{n}@example.com")


def row(number: int, *identities: ChannelIdentity, **values: object) -> ParsedRow:
    legacy = ChannelIdentity("legacy:hotel", f"H{number}")
    return ParsedRow(number=number, identities=(legacy, *identities), **values)  # type: ignore[arg-type]


class Importing:
    """The use cases as the servicer and the worker run them: each in its own unit of work."""

    def __init__(self) -> None:
        self.uow = FakeImportWork()
        as_import_port(self.uow)

    async def __call__(self, use_case, *args, **kwargs):  # type: ignore[no-untyped-def]
        async with self.uow as uow:
            result = await use_case(uow, *args, **kwargs)
            await uow.commit()
        return result

    async def member(self, *identities: ChannelIdentity, name: str = "") -> str:
        command = Register(
            identities=[RawIdentity(i.type, i.value) for i in identities],
            unit="mall",
            channel="CHANNEL_POS",
        )
        done = await self(handlers.register, command, T0)
        if name:
            self.uow.store.tables.members[done.member.member_id].profile.full_name = name
        return str(done.member.member_id)

    async def create(self, spec: ImportSpec = SPEC, request_id: str = "r-1") -> MemberImport:
        job, _ = await self(imports.create, spec, CRM, request_id, "print", T0, "Asia/Shanghai")
        return await self(imports.uploaded, job, 100, "sha", T0)  # type: ignore[no-any-return]

    async def chunk(self, job: MemberImport, rows: list, last: bool = False) -> MemberImport:  # type: ignore[type-arg]
        current = await self(imports.get, job.import_id, None)
        await self(imports.import_chunk, current, rows, 50, T0 + timedelta(minutes=1), last=last)
        return await self(imports.get, job.import_id, None)  # type: ignore[no-any-return]

    def report(self, job: MemberImport) -> list[tuple[RowOutcome, str, str]]:
        rows = sorted(self.uow.store.tables.import_rows[job.import_id].items())
        return [(r.outcome, r.member_id, r.reason) for _, r in rows]

    def imported(self) -> list[events.MembersImported]:
        return [e for e in self.uow.published if isinstance(e, events.MembersImported)]


@pytest.fixture
def importing() -> Importing:
    return Importing()


async def test_an_import_is_created_once_per_request_id_for_a_unit_of_the_programme(
    importing: Importing,
) -> None:
    job = await importing.create()
    assert job.running and job.spec.tier_grant_ends_at == datetime(
        2028, 1, 1, tzinfo=UTC
    ) - timedelta(hours=8)
    again, fresh = await importing(imports.create, SPEC, CRM, "r-1", "print", T0, "Asia/Shanghai")
    assert (again.import_id, fresh) == (job.import_id, False)
    with pytest.raises(InvalidArgument) as reused:
        await importing(imports.create, SPEC, CRM, "r-1", "other", T0, "Asia/Shanghai")
    assert reused.value.reason == "REQUEST_ID_REUSED"
    importing.uow.store.tables.units = {"mall", "cinema"}
    with pytest.raises(InvalidArgument) as unknown:
        await importing(imports.create, SPEC, CRM, "r-2", "print", T0, "Asia/Shanghai")
    assert unknown.value.reason == "UNKNOWN_UNIT"
    assert "legacy:hotel" in importing.uow.store.tables.types
    assert [a["action"] for a in importing.uow.store.tables.import_audit] == ["create"]


async def test_a_chunk_makes_joins_refuses_and_leaves_to_an_operator_in_one_go(
    importing: Importing,
) -> None:
    a = await importing.member(phone(1))
    b = await importing.member(email(2))
    job = await importing.create()
    sms = RowConsent("CONSENT_PURPOSE_MARKETING_SMS", True, None)
    rows = [
        row(1, phone(1), email(1), name="王芳", legacy_points=300, tier_code="platinum"),
        row(2, phone(2), email(2), legacy_points=50),
        row(3, phone(3), birthday=date(1990, 7, 14), consents=(sms,), legacy_points=80),
        row(4, phone(3), tags=("bu:hotel",)),  # a second account of the same person
        RejectedRow(5, "INVALID_PHONE", "phone 138****0000 is not a valid phone number"),
        dataclasses.replace(row(6, phone(6)), identities=(row(3).legacy, phone(6))),
    ]
    # b holds phone 2 too: row 2 only brings its legacy number.
    await importing(handlers.link, b, RawIdentity("phone", phone(2).value), T0)

    after = await importing.chunk(job, rows)

    new = importing.report(after)[2][1]
    assert importing.report(after) == [
        (RowOutcome.LINKED, a, ""),
        (RowOutcome.LINKED, b, ""),
        (RowOutcome.CREATED, new, ""),
        (RowOutcome.LINKED, new, ""),
        (RowOutcome.REJECTED, "", "INVALID_PHONE"),
        (RowOutcome.REJECTED, "", "DUPLICATE_ROW"),
    ]
    counts = after.counts
    assert (counts.rows_read, counts.created, counts.linked, counts.rejected) == (6, 1, 3, 2)
    assert counts.legacy_points == 300 + 50 + 80
    assert (after.checkpoint, after.bytes_read, after.state) == (6, 50, ImportState.RUNNING)
    made = importing.uow.store.tables.members[new]
    assert (made.registered_unit, made.registered_channel) == ("hotel", "CHANNEL_IMPORT")
    assert {i.identity.type for i in made.identities} == {"legacy:hotel", "phone"}
    assert made.profile.birthday == date(1990, 7, 14) and made.tags == {"bu:hotel"}
    assert made.consents[ConsentPurpose.MARKETING_SMS].source == "hotel:import"
    joined = importing.uow.store.tables.members[a]
    assert joined.profile.full_name == "王芳" and joined.profile.gender is Gender.UNSPECIFIED
    [event] = importing.imported()
    assert [(m.member_id, m.created, m.legacy_points, m.tier_code) for m in event.members] == [
        (a, False, 300, "platinum"),
        (b, False, 50, ""),
        (new, True, 80, ""),
        (new, False, 0, ""),
    ]
    assert event.members[0].tier_ends_at == after.spec.tier_grant_ends_at
    assert (event.members[2].birthday_month, event.members[2].birthday_day) == (7, 14)
    assert event.member_import == after.name and event.unit == "hotel"


async def test_the_import_ends_with_its_last_chunk_or_when_most_rows_are_refused(
    importing: Importing,
) -> None:
    job = await importing.create()
    importing.uow.store.tables.import_parts[job.import_id] = [b"part"]
    done = await importing.chunk(job, [row(1, phone(1))], last=True)
    assert (done.state, done.file_kept, done.progress(T0).percent) == (
        ImportState.SUCCEEDED,
        False,
        100.0,
    )
    assert importing.uow.store.tables.import_parts[job.import_id] == []

    bad = await importing.create(request_id="r-2")
    refused = [RejectedRow(n, "INVALID_PHONE", "masked") for n in range(1, 4)]
    failed = await importing.chunk(bad, [row(4, phone(4)), *refused])
    assert failed.state is ImportState.FAILED and failed.failure is not None
    assert failed.failure.reason == "MOSTLY_REJECTED"
    assert failed.failure.metadata == {
        "rows_read": "4",
        "rejected": "3",
        "max_rejected_percent": "50",
    }
    assert [r[0] for r in importing.report(failed)] == [
        *[RowOutcome.REJECTED] * 3,
        RowOutcome.CREATED,  # what was imported stays
    ]


async def test_a_cancel_asked_while_a_replica_holds_the_import_stops_it_after_the_chunk(
    importing: Importing,
) -> None:
    job = await importing.create()
    held = dataclasses.replace(job, lease_owner="replica-a", leased_until=T0 + timedelta(minutes=5))
    await importing(lambda uow: uow.imports.save(held))
    asked = await importing(imports.cancel, job.import_id, CRM, "hotel", T0)
    assert asked.state is ImportState.RUNNING and asked.cancel_requested
    stopped = await importing.chunk(job, [row(1, phone(1))])
    assert stopped.state is ImportState.CANCELLED and stopped.counts.created == 1
    assert [a["action"] for a in importing.uow.store.tables.import_audit] == ["create", "cancel"]


async def test_the_phone_and_name_rule_merges_as_an_operator_would_before_the_rows_join(
    importing: Importing,
) -> None:
    a = await importing.member(phone(1), name="王芳")
    b = await importing.member(email(1), name="王芳")
    job = await importing.create(dataclasses.replace(SPEC, auto_merge=AutoMerge.PHONE_AND_NAME))

    after = await importing.chunk(job, [row(1, phone(1), email(1), name="王芳")])

    assert importing.report(after) == [(RowOutcome.MERGED, a, "")]
    assert importing.uow.store.tables.members[b].state is MemberState.MERGED
    kinds = [type(e).__name__ for e in importing.uow.published]
    assert kinds[-2:] == ["MemberMerged", "MembersImported"]
    [audit] = importing.uow.store.tables.audit
    assert audit["operator"] == ("hotel", f"import:{job.import_id}")


async def test_a_candidate_resolved_joins_its_survivor_and_carries_its_balance_over(
    importing: Importing,
) -> None:
    a = await importing.member(phone(1))
    b = await importing.member(email(1))
    c = await importing.member(phone(2))
    d = await importing.member(email(2))
    job = await importing.create()
    after = await importing.chunk(
        job, [row(1, phone(1), email(1), legacy_points=70), row(2, phone(2), email(2))]
    )
    assert [r[0] for r in importing.report(after)] == [RowOutcome.MERGE_CANDIDATE] * 2
    listed, _ = await importing(imports.candidates, job.import_id, None, "hotel", None, 10)
    first, second = listed
    assert sorted((e.member_id, e.identity_type) for e in first.evidence) == sorted(
        [(a, "phone"), (b, "email")]
    )
    assert all("****" in e.masked_value or "***@" in e.masked_value for e in first.evidence)
    before = len(importing.uow.published)

    decided = await importing(imports.resolve, first.candidate_id, a, True, DESK, "checked", T0)

    assert decided.state is CandidateState.RESOLVED and decided.survivor == a
    survivor = importing.uow.store.tables.members[a]
    assert {i.identity.type for i in survivor.identities} == {"phone", "email", "legacy:hotel"}
    assert importing.uow.store.tables.members[b].merged_into == a
    [event] = [e for e in importing.uow.published[before:] if isinstance(e, events.MembersImported)]
    assert [(m.member_id, m.created, m.legacy_points) for m in event.members] == [(a, False, 70)]
    dismissed = await importing(imports.dismiss, second.candidate_id, DESK, "two people", T0)
    assert dismissed.state is CandidateState.DISMISSED
    assert {i.identity.type for i in importing.uow.store.tables.members[c].identities} == {"phone"}
    assert importing.uow.store.tables.members[d].state is MemberState.ACTIVE
    with pytest.raises(CandidateDecided):
        await importing(imports.dismiss, second.candidate_id, DESK, "again", T0)
    ended = await importing(imports.get, job.import_id, None)
    assert importing.report(ended) == [
        (RowOutcome.MERGED, a, "RESOLVED"),
        (RowOutcome.REJECTED, "", "DISMISSED"),
    ]
    counts = ended.counts
    assert (counts.candidates, counts.merged, counts.rejected, counts.legacy_points) == (
        0,
        1,
        1,
        70,
    )
    assert [x["action"] for x in importing.uow.store.tables.import_audit] == [
        "create",
        "resolve",
        "dismiss",
    ]
