"""Use cases of the identity service. Each runs inside one unit of work (one transaction) that
the caller opens and commits. The member aggregate records what happened as domain events; the
unit of work collects them for the outbox, in the same transaction.

Handlers take plain commands and return domain objects: they know nothing of gRPC.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from loyalty_kit import audit
from loyalty_kit.errors import FailedPrecondition, FieldViolation, InvalidArgument, Violations

from loyalty_identity.domain import events
from loyalty_identity.domain.errors import (
    CannotMergeIntoItself,
    IdentityAlreadyBound,
    IdentityNotLinked,
    MemberNotFound,
    NoMemberWithIdentity,
    NotMergedInto,
)
from loyalty_identity.domain.export import personal_data
from loyalty_identity.domain.identities import (
    ChannelIdentity,
    IdentityType,
    known_types,
    normalise,
    unknown_type,
)
from loyalty_identity.domain.member import (
    MAX_TAGS_PER_MEMBER,
    PROFILE_FIELDS,
    Consent,
    ConsentPurpose,
    LinkedIdentity,
    Member,
    MemberState,
    Profile,
    new_member_id,
    validate_tags,
    validate_unit,
)
from loyalty_identity.service_layer.commands import (
    ConsentGiven,
    Operator,
    RawIdentity,
    Register,
    Registered,
    Unmerged,
)
from loyalty_identity.service_layer.ports import IdentityWork


# --- helpers ------------------------------------------------------------------------------------
async def _normalised(
    uow: IdentityWork, raw: Sequence[RawIdentity], field_name: str
) -> list[ChannelIdentity]:
    types = await uow.members.identity_types()
    problems = Violations()
    result: list[ChannelIdentity] = []
    known = ""  # the known types, told once per request (see `known_types`)
    for index, item in enumerate(raw):
        where = f"{field_name}[{index}]" if len(raw) > 1 or field_name.endswith("s") else field_name
        identity_type: IdentityType | None = types.get(item.type)
        if identity_type is None:
            known = known or known_types(types)
            problems.add(f"{where}.type", unknown_type(item.type, known))
            continue
        try:
            identity = normalise(identity_type, item.value, f"{where}.value")
        except InvalidArgument as error:
            problems.items.extend(error.field_violations)
            continue
        if identity in result:
            problems.add(f"{where}", "the same identity is given twice")
        result.append(identity)
    problems.raise_if_any()
    return result


normalised = _normalised  # the identities as the service keeps them (sign-in uses it too)


async def _member(uow: IdentityWork, member_id: str, *, lock: bool = False) -> Member:
    member = await uow.members.get(member_id, lock=lock)
    if member is None:
        raise MemberNotFound(member_id)
    return member


def _consents(
    given: Sequence[ConsentGiven], source: str, now: datetime, field_name: str
) -> list[Consent]:
    problems = Violations()
    seen: set[ConsentPurpose] = set()
    result: list[Consent] = []
    for index, item in enumerate(given):
        if item.purpose is None:
            problems.add(f"{field_name}[{index}].purpose", "required")
            continue
        if item.purpose in seen:
            problems.add(f"{field_name}[{index}].purpose", "given twice")
        seen.add(item.purpose)
        result.append(Consent(item.purpose, item.granted, source, now))
    problems.raise_if_any()
    return result


# --- use cases ----------------------------------------------------------------------------------
async def learn_programme(
    uow: IdentityWork, units: Sequence[str], version: int, now: datetime
) -> None:
    """A programme version was published: its units are ones members may register at."""
    await uow.members.learn_programme_units(units, version, now)


async def register(uow: IdentityWork, command: Register, now: datetime) -> Registered:
    problems = Violations()
    if not command.identities:
        problems.add("identities", "at least one identity is required")
    try:
        validate_unit(command.unit)
    except InvalidArgument as error:
        problems.items.extend(error.field_violations)
    try:
        command.profile.validate()
    except InvalidArgument as error:
        problems.items.extend(error.field_violations)
    identities: list[ChannelIdentity] = []
    try:
        identities = await _normalised(uow, command.identities, "identities")
    except InvalidArgument as error:
        problems.items.extend(error.field_violations)
    source = f"{command.unit}:{command.channel}"
    try:
        consents = _consents(command.consents, source, now, "consents")
    except InvalidArgument as error:
        problems.items.extend(error.field_violations)
    problems.raise_if_any()
    known = await uow.members.programme_units()
    if known and command.unit not in known:  # none known yet: no programme to judge by
        hint = f"a business unit of the programme: one of {', '.join(sorted(known))}"
        raise InvalidArgument(
            f"unit: {command.unit} is not a business unit of the programme",
            reason="UNKNOWN_UNIT",
            metadata={"unit": command.unit},
            field_violations=[FieldViolation("unit", hint)],
        )

    owners = await uow.members.owners(identities)
    if owners:
        distinct = sorted(set(owners.values()))
        if len(distinct) > 1:
            raise IdentityAlreadyBound(
                "the identities given belong to different members; merge them first",
                metadata={i.type: owners[i] for i in sorted(owners, key=lambda i: i.type)},
            )
        existing = await _member(uow, distinct[0])
        return Registered(existing, False, sorted({i.type for i in owners}))

    member = Member.register(
        new_member_id(),
        command.unit,
        command.channel,
        now,
        identities,
        command.profile,
        consents,
    )
    await uow.members.add(member)
    return Registered(member, True, [])


async def get_member(uow: IdentityWork, member_id: str) -> Member:
    return await _member(uow, member_id)


async def resolve(uow: IdentityWork, raw: RawIdentity) -> Member:
    (identity,) = await _normalised(uow, [raw], "identity")
    member = await uow.members.get_by_identity(identity)
    if member is None:
        raise NoMemberWithIdentity(identity.type)
    return member


async def link(uow: IdentityWork, member_id: str, raw: RawIdentity, now: datetime) -> Member:
    member = await _member(uow, member_id, lock=True)
    member.ensure_changeable()
    (identity,) = await _normalised(uow, [raw], "identity")
    owner = await uow.members.owner(identity)
    if owner == member.member_id:
        return member
    if owner is not None:
        raise IdentityAlreadyBound(
            f"this {identity.type} belongs to another member",
            metadata={"identity_type": identity.type},
        )
    await uow.members.link(member.member_id, identity, now)
    member.identities.append(LinkedIdentity(identity, now))
    return member


async def unlink(uow: IdentityWork, member_id: str, raw: RawIdentity) -> Member:
    member = await _member(uow, member_id, lock=True)
    (identity,) = await _normalised(uow, [raw], "identity")
    if not member.has_identity(identity):
        member.ensure_changeable()
        raise IdentityNotLinked(member.member_id, identity.type)
    member.ensure_can_unlink(identity)
    await uow.members.unlink(member.member_id, identity)
    member.identities = [i for i in member.identities if i.identity != identity]
    return member


async def merge(
    uow: IdentityWork,
    survivor_id: str,
    absorbed_id: str,
    now: datetime,
    operator: Operator | None = None,
    reason: str = "",
) -> Member:
    if survivor_id == absorbed_id:
        raise CannotMergeIntoItself(survivor_id)
    # Lock both rows in a fixed order, so two opposite merges cannot deadlock.
    locked = {m: await _member(uow, m, lock=True) for m in sorted((survivor_id, absorbed_id))}
    survivor, absorbed = locked[survivor_id], locked[absorbed_id]
    if absorbed.state is MemberState.MERGED and absorbed.merged_into == survivor.member_id:
        return survivor  # already done: merging is idempotent
    survivor.ensure_can_absorb(absorbed)
    survivor.ensure_active()
    absorbed.ensure_active()

    await uow.members.move_identities(absorbed.identities, absorbed.member_id, survivor.member_id)
    survivor.identities.extend(absorbed.identities)
    profile = survivor.absorb_profile(absorbed.profile)
    if profile.changed_fields(survivor.profile):
        await uow.members.save_profile(survivor.member_id, profile)
    taken = [c for p, c in absorbed.consents.items() if p not in survivor.consents]
    await uow.members.record_consents(survivor.member_id, taken)
    survivor.consents.update({c.purpose: c for c in taken})
    await uow.members.add_tags(survivor.member_id, absorbed.tags - survivor.tags, now)
    survivor.change_tags(absorbed.tags, (), now)

    await uow.members.erase_personal_data(absorbed.member_id)
    await uow.members.revoke_sessions(absorbed.member_id, now, "merged")
    absorbed.state = MemberState.MERGED
    absorbed.merged_into = survivor.member_id
    absorbed.updated_at = now
    await uow.members.save_state(absorbed)
    await uow.members.forward_merged(absorbed.member_id, survivor.member_id)
    survivor.updated_at = now
    await uow.members.save_state(survivor)
    survivor.record(events.MemberMerged(survivor.member_id, absorbed.member_id, now))
    survivor.change_profile(profile, now)
    if operator is not None:
        await uow.members.audit(
            survivor.member_id,
            "merge",
            absorbed.member_id,
            (operator.unit, operator.client_id),
            reason.strip(),
            {"identity_types": sorted(i.identity.type for i in absorbed.identities)},
            now,
        )
    return survivor


async def unmerge(
    uow: IdentityWork,
    survivor_id: str,
    restored_id: str,
    given: Sequence[RawIdentity],
    reason: str,
    operator: Operator,
    now: datetime,
) -> Unmerged:
    """Undo a merge: the identities named go back from the survivor to the member it absorbed,
    which is active again. The merge shredded the absorbed member's personal data, so the
    restored member starts with an empty profile, no consents and no tags; the survivor keeps
    what it took then (profile fields, consents, tags), as nothing tells whose they were."""
    _reason(reason, required=True)
    if survivor_id == restored_id:
        raise NotMergedInto(restored_id, survivor_id, "")
    identities = await _normalised(uow, given, "identities")
    # Lock both rows in a fixed order, as a merge does.
    locked = {m: await _member(uow, m, lock=True) for m in sorted((survivor_id, restored_id))}
    survivor, restored = locked[survivor_id], locked[restored_id]
    survivor.ensure_can_give_back(restored, identities)
    merged_at = restored.updated_at  # a merged member never changes after its merge

    restored.state = MemberState.ACTIVE
    restored.merged_into = ""
    restored.updated_at = now
    await uow.members.restore(restored)
    going = [linked for linked in survivor.identities if linked.identity in identities]
    await uow.members.move_identities(going, survivor.member_id, restored.member_id)
    restored.identities = going
    survivor.identities = [i for i in survivor.identities if i.identity not in identities]
    survivor.updated_at = now
    await uow.members.save_state(survivor)
    survivor.record(events.MemberUnmerged(survivor.member_id, restored.member_id, merged_at, now))
    detail = {
        "identity_types": sorted(i.identity.type for i in going),
        "merged_at": merged_at.isoformat(),
    }
    for member_id, other in ((survivor_id, restored_id), (restored_id, survivor_id)):
        await uow.members.audit(
            member_id,
            "unmerge",
            other,
            (operator.unit, operator.client_id),
            reason.strip(),
            detail,
            now,
        )
    return Unmerged(restored, survivor)


async def update_profile(
    uow: IdentityWork, member_id: str, given: Profile, paths: Sequence[str], now: datetime
) -> Member:
    problems = Violations()
    if not paths:
        problems.add("update_mask", f"name the fields to update: {', '.join(PROFILE_FIELDS)}")
    for index, path in enumerate(paths):
        if path not in PROFILE_FIELDS:
            problems.add(f"update_mask.paths[{index}]", f"unknown field {path!r}")
    problems.raise_if_any()
    member = await _member(uow, member_id, lock=True)
    member.ensure_changeable()
    updated = Profile(**{f: getattr(member.profile, f) for f in PROFILE_FIELDS})
    for path in paths:
        setattr(updated, path, getattr(given, path))
    updated.validate()
    if updated.changed_fields(member.profile):
        await uow.members.save_profile(member.member_id, updated)
        member.change_profile(updated, now)
        member.updated_at = now
        await uow.members.save_state(member)
    return member


async def set_consents(
    uow: IdentityWork,
    member_id: str,
    given: Sequence[ConsentGiven],
    source: str,
    now: datetime,
) -> Member:
    problems = Violations()
    if not given:
        problems.add("changes", "at least one change is required")
    if not source or len(source) > 128:
        problems.add("source", "required: where the consent was given, e.g. 'app:privacy'")
    problems.raise_if_any()
    changes = _consents(given, source, now, "changes")
    member = await _member(uow, member_id, lock=True)
    member.ensure_changeable()
    await uow.members.record_consents(member.member_id, changes)
    member.give_consents(changes)
    return member


async def consent_history(
    uow: IdentityWork, member_id: str, before_seq: int | None, limit: int
) -> list[tuple[int, Consent]]:
    await _member(uow, member_id)
    return await uow.members.consent_events(member_id, before_seq, limit)


def _reason(reason: str, required: bool) -> None:
    if (required and not reason.strip()) or len(reason) > 512:
        raise InvalidArgument.of([FieldViolation("reason", "required, at most 512 characters")])


async def suspend(uow: IdentityWork, member_id: str, reason: str, now: datetime) -> Member:
    _reason(reason, required=True)
    member = await _member(uow, member_id, lock=True)
    before = {"state": member.state.value}
    member.suspend(reason.strip(), now)
    await uow.members.save_state(member)
    audit.note(before=before, after={"state": member.state.value})
    return member


async def reactivate(uow: IdentityWork, member_id: str, reason: str, now: datetime) -> Member:
    _reason(reason, required=False)
    member = await _member(uow, member_id, lock=True)
    before = {"state": member.state.value}
    member.reactivate(now)
    await uow.members.save_state(member)
    audit.note(before=before, after={"state": member.state.value})
    return member


async def update_tags(
    uow: IdentityWork,
    member_id: str,
    add: Sequence[str],
    remove: Sequence[str],
    now: datetime,
) -> Member:
    problems = Violations()
    if not add and not remove:
        problems.add("add_tags", "name tags to add or to remove")
    for name, tags in (("add_tags", add), ("remove_tags", remove)):
        try:
            validate_tags(list(tags), name)
        except InvalidArgument as error:
            problems.items.extend(error.field_violations)
    problems.raise_if_any()
    member = await _member(uow, member_id, lock=True)
    member.ensure_changeable()
    await uow.members.remove_tags(member.member_id, remove)
    await uow.members.add_tags(member.member_id, add, now)
    member.change_tags(add, remove, now)
    if len(member.tags) > MAX_TAGS_PER_MEMBER:
        raise FailedPrecondition(
            f"a member carries at most {MAX_TAGS_PER_MEMBER} tags",
            reason="TOO_MANY_TAGS",
            metadata={"member_id": member.member_id},
        )
    return member


async def list_member_ids(
    uow: IdentityWork, tag: str, after: str | None, limit: int
) -> tuple[list[str], str | None, int]:
    """A page of member ids, the position after it (None at the end) and, on the first page
    only (`after` None), how many members the listing holds (0 on later pages)."""
    if tag:
        validate_tags([tag], "tag")
    ids = await uow.members.member_ids(tag=tag, after=after, limit=limit + 1)
    more = len(ids) > limit
    page = ids[:limit]
    total = await uow.members.count_members(tag=tag) if after is None else 0
    return page, (page[-1] if more and page else None), total


async def list_members(
    uow: IdentityWork, tag: str, after: str | None, limit: int
) -> tuple[list[Member], str | None, int]:
    """As `list_member_ids`, with the members."""
    page, next_after, total = await list_member_ids(uow, tag, after, limit)
    return await uow.members.get_many(page), next_after, total


async def erase(uow: IdentityWork, member_id: str, now: datetime) -> Member:
    """The one erasure, whoever asks (an operator's EraseMember, a member's erasure request
    carried out): the data key and personal data gone, every sign-in session (and its refresh
    tokens) ended, the member code's secret deleted with the rest, an open erasure request
    done; a tombstone stays."""
    member = await _member(uow, member_id, lock=True)
    if member.state is MemberState.ERASED:
        return member
    member.erase(now)
    await uow.members.erase_personal_data(member.member_id)
    await uow.members.revoke_sessions(member.member_id, now, "erased")
    await uow.erasures.end_open(member.member_id, now)
    await uow.members.save_state(member)
    return member


async def export(uow: IdentityWork, member_id: str) -> str:
    member = await _member(uow, member_id)
    history = await uow.members.consent_events(member_id, None, 10_000)
    document = personal_data(member, [consent for _, consent in history])
    return json.dumps(document, ensure_ascii=False, indent=2)


async def upsert_identity_type(uow: IdentityWork, identity_type: IdentityType) -> IdentityType:
    identity_type.validate_definition()
    await uow.members.upsert_identity_type(identity_type)
    return identity_type


async def rotate_keys(uow: IdentityWork, batch: int) -> int:
    return await uow.members.rewrap_data_keys(batch)
