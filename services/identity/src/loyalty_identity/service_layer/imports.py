"""Use cases of the member imports: creating one (its file stored by the servicer, part by
part, in the same transaction), reading and cancelling it, its report and merge candidates,
and the processing of one chunk of rows (the worker's transaction, `import_worker.py`).

Each runs inside one unit of work that the caller opens and commits; none knows gRPC.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

from loyalty_kit.caller import check_unit
from loyalty_kit.resources import is_tag

from loyalty_identity.domain import masking
from loyalty_identity.domain.events import MembersImported
from loyalty_identity.domain.identities import ChannelIdentity, IdentityKind
from loyalty_identity.domain.import_operation import new_id
from loyalty_identity.domain.import_spec import resolved, validate_spec
from loyalty_identity.domain.imports import (
    AutoMerge,
    ImportSpec,
    ParsedRow,
    RejectedRow,
    RowOutcome,
)
from loyalty_identity.domain.matching import (
    Decision,
    decide,
    merge_suspects,
    owners_to_look_up,
)
from loyalty_identity.domain.member import new_member_id
from loyalty_identity.domain.member_import import (
    CandidateNotFound,
    CandidateState,
    Counts,
    Evidence,
    ImportedMember,
    ImportNotFound,
    Joining,
    MemberImport,
    MergeCandidate,
    ReportRow,
    import_name,
)
from loyalty_identity.service_layer import handlers
from loyalty_identity.service_layer import import_operations as operations
from loyalty_identity.service_layer.commands import Operator
from loyalty_identity.service_layer.ports import ImportWork

Row = ParsedRow | RejectedRow
IMPORTING = frozenset((RowOutcome.CREATED, RowOutcome.LINKED, RowOutcome.MERGED))
DETAILED = frozenset((RowOutcome.REJECTED, RowOutcome.MERGE_CANDIDATE))  # a detail without notes
NOTES = {
    "UNMAPPED_TIER": "its legacy tier is not in the spec's tier mapping: not carried over",
}


KIND: operations.Kind[ImportWork, MemberImport, RowOutcome, ReportRow] = operations.Kind(
    lambda work: work.imports, ImportNotFound
)
uploaded = KIND.uploaded
get = KIND.get
listed = KIND.listed
cancel = KIND.cancel
report = KIND.report
ended = KIND.ended


# --- creating, reading, cancelling ---------------------------------------------------------------
async def create(
    work: ImportWork,
    spec: ImportSpec,
    operator: Operator,
    request_id: str,
    fingerprint: str,
    now: datetime,
    time_zone: str,
) -> tuple[MemberImport, bool]:
    """A new import, RUNNING once its file is stored (the caller stores it in this unit of
    work), and True; or, for a request id this client used already, that import and False."""
    validate_spec(spec)
    await operations.check_programme_unit(work, spec.unit)
    job, fresh = await operations.add_once(
        work.imports,
        MemberImport,
        resolved(spec, now, time_zone),
        operator,
        request_id,
        fingerprint,
        now,
    )
    if not fresh:
        return job, False
    await work.imports.register_legacy_type(spec.unit)
    await work.imports.audit(
        job.import_id,
        "create",
        None,
        (operator.unit, operator.client_id),
        "",
        {"unit": spec.unit, "file_name": spec.file_name, "format": spec.format.value},
        now,
    )
    return job, True


# --- a chunk ------------------------------------------------------------------------------------
async def import_chunk(
    work: ImportWork,
    job: MemberImport,
    rows: Sequence[Row],
    bytes_read: int,
    now: datetime,
    *,
    last: bool,
) -> Counts:
    """One chunk of rows in this unit of work: each row decided, the members made or joined in
    bulk, candidates and the report written, one MembersImported for the chunk, the counters
    and the checkpoint moved; the import ends here when the file is read (`last`), most of it
    was refused, or an operator asked it to stop. The chunk's counts."""
    parsed = [r for r in rows if isinstance(r, ParsedRow)]
    legacy = [r.legacy for r in parsed]
    earlier = await work.imports.earlier_legacy(job.import_id, legacy)
    owners = await work.imports.owners(owners_to_look_up(parsed))
    names: dict[str, str] = {}
    if job.spec.auto_merge is not AutoMerge.NONE:
        names = await work.imports.names(merge_suspects(parsed, owners))
    decisions = decide(
        parsed,
        owners,
        earlier,
        auto_merge=job.spec.auto_merge,
        names=names,
        new_member_id=new_member_id,
    )
    await _merge(work, job, decisions, now)
    given = await work.imports.join(job.unit, [_joining(d) for d in decisions if _imports(d)], now)

    kinds = await _kinds(work)
    counts = Counts()
    tally = dict.fromkeys(RowOutcome, 0)
    points = 0
    report: list[ReportRow] = []
    carried: list[ImportedMember] = []
    legacy_key = work.imports.legacy_key
    tier_ends_at = job.spec.tier_grant_ends_at
    add_row = report.append
    for decision in decisions:
        row, outcome, member_id = decision.row, decision.outcome, decision.member_id
        key = legacy_key(row.legacy)
        candidate_id = ""
        if outcome in IMPORTING:
            imported = _imported(row, member_id, key, decision.created, tier_ends_at)
            consents = given.pop(member_id, ())  # on the member's first row
            carried.append(dataclasses.replace(imported, consents=consents))
            points += row.legacy_points
        elif outcome is RowOutcome.MERGE_CANDIDATE:
            candidate = MergeCandidate(
                candidate_id=new_id(),
                import_id=job.import_id,
                row_number=row.number,
                unit=job.unit,
                evidence=_evidence(decision.evidence, kinds),
                imported=_imported(row, member_id, key, decision.created, tier_ends_at),
                created_at=now,
            )
            candidate_id = await work.imports.add_candidate(candidate, row)
        tally[outcome] += 1
        add_row(
            ReportRow(
                row.number,
                outcome,
                member_id,
                decision.reason or (row.notes[0] if row.notes else ""),
                _detail(decision, kinds) if row.notes or outcome in DETAILED else "",
                key,
                candidate_id,
            )
        )
    for refused in rows:
        if isinstance(refused, RejectedRow):
            tally[RowOutcome.REJECTED] += 1
            add_row(
                ReportRow(
                    refused.number,
                    RowOutcome.REJECTED,
                    reason=refused.reason,
                    detail=refused.detail,
                )
            )
    counts.add(tally, points)
    await work.imports.add_report(job.import_id, report)
    if carried:
        work.record(MembersImported(job.name, job.unit, tuple(carried), now))

    await operations.chunk_done(work.imports, job, counts, rows, bytes_read, now, last=last)
    return counts


def _imports(decision: Decision) -> bool:
    return decision.outcome in IMPORTING


def _joining(decision: Decision) -> Joining:
    return Joining(decision.member_id, decision.created, decision.row, decision.link)


async def _merge(
    work: ImportWork, job: MemberImport, decisions: Sequence[Decision], now: datetime
) -> None:
    """The auto-merge rule's merges, as an operator's would be (MemberMerged, the audit log),
    on the import's account."""
    operator = Operator(unit=job.unit, client_id=f"import:{job.import_id}")
    for decision in decisions:
        for absorbed in decision.absorbed:
            await handlers.merge(
                work,
                decision.member_id,
                absorbed,
                now,
                operator,
                f"{job.name} row {decision.row.number}: phone and name agree (auto-merge)",
            )


def _imported(
    row: ParsedRow, member_id: str, key: str, created: bool, tier_ends_at: datetime | None
) -> ImportedMember:
    birthday, tier_code = row.birthday, row.tier_code
    return ImportedMember(
        member_id,
        key,
        created,
        row.legacy_points,
        row.points_expire_at,
        tier_code,
        tier_ends_at if tier_code else None,
        birthday.month if birthday else 0,
        birthday.day if birthday else 0,
        tuple(sorted({tag for tag in row.tags if is_tag(tag)})),
        joined_at=row.joined_at,
    )


async def _kinds(work: ImportWork) -> dict[str, IdentityKind]:
    return {code: t.kind for code, t in (await work.members.identity_types()).items()}


def _masked(identity: ChannelIdentity, kinds: dict[str, IdentityKind]) -> str:
    kind = kinds.get(identity.type, IdentityKind.TOKEN)
    return masking.mask_identity(kind.value, identity.value)


def _evidence(
    held: Sequence[tuple[ChannelIdentity, str]], kinds: dict[str, IdentityKind]
) -> tuple[Evidence, ...]:
    return tuple(Evidence(member, i.type, _masked(i, kinds)) for i, member in held)


def _detail(decision: Decision, kinds: dict[str, IdentityKind]) -> str:
    if decision.outcome is RowOutcome.REJECTED:
        return f"the legacy number of row {decision.earlier_row} again"
    if decision.outcome is RowOutcome.MERGE_CANDIDATE:
        members = len({m for _, m in decision.evidence})
        held = ", ".join(f"{i.type} {_masked(i, kinds)}" for i, _ in decision.evidence)
        return f"its identities belong to {members} members ({held}): left to an operator"
    return "; ".join(NOTES.get(note, note) for note in decision.row.notes)


# --- merge candidates ---------------------------------------------------------------------------
async def candidate(
    work: ImportWork, candidate_id: str, confined_to: str | None, *, lock: bool = False
) -> MergeCandidate:
    found = await work.imports.candidate(candidate_id, lock=lock)
    if found is None:
        raise CandidateNotFound(candidate_id)
    check_unit(found.unit, confined_to)
    return found


async def candidates(
    work: ImportWork,
    import_id: str | None,
    state: CandidateState | None,
    confined_to: str | None,
    after: tuple[str, int, str] | None,
    limit: int,
) -> tuple[list[MergeCandidate], tuple[str, int, str] | None]:
    """A page of candidates, oldest first and in row order (a unit's importer sees its own
    unit's only)."""
    if import_id is not None:
        await get(work, import_id, confined_to)
    found = await work.imports.candidates(import_id, state, confined_to, after, limit + 1)
    page = found[:limit]
    more = len(found) > limit and page
    last = page[-1] if more else None
    return page, (last.created_at.isoformat(), last.row_number, last.candidate_id) if last else None


async def resolve(
    work: ImportWork,
    candidate_id: str,
    survivor: str,
    merge: bool,
    operator: Operator,
    reason: str,
    now: datetime,
) -> MergeCandidate:
    """The row joins `survivor` (one of the candidate's members); with `merge`, the others are
    merged into it first. Its unbound identities are linked, its profile gaps, consents and
    tags filled, and its legacy balance and tier go out in a MembersImported of its own."""
    found = await candidate(work, candidate_id, None, lock=True)
    found.ensure_open()
    found.ensure_names(survivor)
    row = await work.imports.candidate_row(found)
    if row is None:  # an open candidate keeps its row; only a decided one drops it
        raise CandidateNotFound(candidate_id)
    if merge:
        for other in found.member_ids:
            if other != survivor:
                await handlers.merge(work, survivor, other, now, operator, reason)
    member = await handlers.get_member(work, survivor)
    member.ensure_changeable()
    owners = await work.imports.owners(row.identities)
    unbound = tuple(i for i in row.identities if i not in owners)
    given = await work.imports.join(found.unit, [Joining(survivor, False, row, unbound)], now)
    found.resolve(survivor, now)
    await work.imports.save_candidate(found)
    await work.imports.settle_candidate_rows(candidate_id, RowOutcome.MERGED, survivor, "RESOLVED")
    imported = found.imported
    work.record(
        MembersImported(
            import_name(found.import_id),
            found.unit,
            (
                ImportedMember(
                    survivor,
                    imported.legacy_key,
                    False,
                    imported.legacy_points,
                    imported.legacy_points_expire_at,
                    imported.tier_code,
                    imported.tier_ends_at,
                    imported.birthday_month,
                    imported.birthday_day,
                    tuple(sorted({tag for tag in row.tags if is_tag(tag)})),
                    given.get(survivor, ()),
                    row.joined_at,
                ),
            ),
            now,
        )
    )
    await work.imports.audit(
        found.import_id,
        "resolve",
        found.candidate_id,
        (operator.unit, operator.client_id),
        reason.strip(),
        {"survivor": survivor, "merge": merge, "members": found.member_ids},
        now,
    )
    return found


async def dismiss(
    work: ImportWork, candidate_id: str, operator: Operator, reason: str, now: datetime
) -> MergeCandidate:
    """The row is not imported; the members stay as they are."""
    found = await candidate(work, candidate_id, None, lock=True)
    found.dismiss(now)
    await work.imports.save_candidate(found)
    await work.imports.settle_candidate_rows(candidate_id, RowOutcome.REJECTED, "", "DISMISSED")
    await work.imports.audit(
        found.import_id,
        "dismiss",
        found.candidate_id,
        (operator.unit, operator.client_id),
        reason.strip(),
        {"members": found.member_ids},
        now,
    )
    return found
