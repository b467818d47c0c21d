"""Which member each row of an import's chunk becomes (pure: no I/O).

A row joins the member who holds any of its identities, from any unit. Within a chunk:

- a row whose legacy number an earlier row of the same import already brought is refused
  (DUPLICATE_ROW);
- rows that share an identity are one person: when their identities point to at most one
  existing member, they all become that member (the first creates it when there is none);
- when they point to several, each row is decided on its own, in file order: no member, a new
  one; one, it joins it (UNCHANGED when every identity is bound to it already); two or more, a
  merge candidate for an operator, unless the spec's auto-merge rule merges them (phone and
  name: the row's phone is one member's and every member's name is the row's name), the member
  holding the phone surviving.

Decisions name members after the chunk's merges: a member merged away by a later row is
replaced by its survivor everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from loyalty_identity.domain.identities import ChannelIdentity
from loyalty_identity.domain.imports import AutoMerge, ParsedRow, RowOutcome
from loyalty_identity.domain.member_import import same_name

DUPLICATE_ROW = "DUPLICATE_ROW"
MATCHES_TWO_MEMBERS = "MATCHES_TWO_MEMBERS"
PHONE = "phone"


@dataclass(frozen=True)
class Decision:
    """What becomes of one row: its outcome, the member it is, the identities it binds to that
    member, the members merged into it first (MERGED), or, for a candidate, which member holds
    which of its identities."""

    row: ParsedRow
    outcome: RowOutcome
    member_id: str = ""
    created: bool = False
    link: tuple[ChannelIdentity, ...] = ()
    absorbed: tuple[str, ...] = ()
    evidence: tuple[tuple[ChannelIdentity, str], ...] = ()
    reason: str = ""
    earlier_row: int = 0  # DUPLICATE_ROW: the row that brought the legacy number first


@dataclass
class _Draft:
    row: ParsedRow
    outcome: RowOutcome
    member_id: str = ""
    created: bool = False
    link: list[ChannelIdentity] = field(default_factory=list)
    absorbed: list[str] = field(default_factory=list)
    evidence: list[tuple[ChannelIdentity, str]] = field(default_factory=list)
    reason: str = ""
    earlier_row: int = 0


class _Chunk:
    def __init__(
        self,
        owners: Mapping[ChannelIdentity, str],
        auto_merge: AutoMerge,
        names: Mapping[str, str],
        new_member_id: Callable[[], str],
    ) -> None:
        self.owners = owners
        self.assigned: dict[ChannelIdentity, str] = dict(owners)
        self.forward: dict[str, str] = {}
        self.auto_merge = auto_merge
        self.names = names
        self.new_member_id = new_member_id

    def member(self, member_id: str) -> str:
        while member_id in self.forward:
            member_id = self.forward[member_id]
        return member_id

    def holder(self, identity: ChannelIdentity) -> str | None:
        found = self.assigned.get(identity)
        return None if found is None else self.member(found)

    def join(self, row: ParsedRow, member_id: str | None) -> _Draft:
        """The row becomes `member_id` (None: a new member), binding what is unbound."""
        if member_id is None:  # the id its data was sealed for ahead, if it was
            member_id = row.sealed.member_id if row.sealed else self.new_member_id()
            self._bind(row.identities, member_id)
            return _Draft(row, RowOutcome.CREATED, member_id, True, list(row.identities))
        unbound = [i for i in row.identities if self.holder(i) is None]
        self._bind(unbound, member_id)
        outcome = RowOutcome.LINKED if unbound else RowOutcome.UNCHANGED
        return _Draft(row, outcome, member_id, False, unbound)

    def _bind(self, identities: Iterable[ChannelIdentity], member_id: str) -> None:
        for identity in identities:
            self.assigned[identity] = member_id

    def alone(self, row: ParsedRow) -> _Draft:
        held = {i: h for i in row.identities if (h := self.holder(i)) is not None}
        members = sorted(set(held.values()))
        if len(members) <= 1:
            return self.join(row, members[0] if members else None)
        survivor = self.survivor(row, held, members)
        if survivor is None:
            evidence = sorted(held.items(), key=lambda item: (item[1], item[0].type))
            return _Draft(row, RowOutcome.MERGE_CANDIDATE, evidence=evidence)
        absorbed = [m for m in members if m != survivor]
        for member_id in absorbed:
            self.forward[member_id] = survivor
        draft = self.join(row, survivor)
        draft.outcome, draft.absorbed = RowOutcome.MERGED, absorbed
        return draft

    def survivor(
        self, row: ParsedRow, held: Mapping[ChannelIdentity, str], members: Sequence[str]
    ) -> str | None:
        """The member the others merge into by the spec's rule, if it applies."""
        if self.auto_merge is not AutoMerge.PHONE_AND_NAME or not row.name:
            return None
        phone_holder = next((h for i, h in held.items() if i.type == PHONE), None)
        if phone_holder is None or any(m not in self.names for m in members):
            return None  # a member made by this chunk is no one's to merge
        if all(same_name(self.names[m], row.name) for m in members):
            return phone_holder
        return None

    def group(self, rows: Sequence[ParsedRow]) -> list[_Draft]:
        existing = sorted(
            {
                self.member(self.owners[i])
                for row in rows
                for i in row.identities
                if i in self.owners
            }
        )
        if len(existing) > 1:
            return [self.alone(row) for row in rows]
        target: str | None = existing[0] if existing else None
        drafts = []
        for row in rows:
            draft = self.join(row, target)
            target = draft.member_id
            drafts.append(draft)
        return drafts

    def decided(self, draft: _Draft) -> Decision:
        return Decision(
            row=draft.row,
            outcome=draft.outcome,
            member_id=self.member(draft.member_id) if draft.member_id else "",
            created=draft.created,
            link=tuple(draft.link),
            absorbed=tuple(draft.absorbed),
            evidence=tuple((i, self.member(m)) for i, m in draft.evidence),
            reason=draft.reason,
            earlier_row=draft.earlier_row,
        )


def groups_of(rows: Sequence[ParsedRow]) -> list[list[ParsedRow]]:
    """The rows that share identities, directly or through other rows, each group in row
    order, the groups in the order of their first rows."""
    parent = list(range(len(rows)))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    first_with: dict[ChannelIdentity, int] = {}
    for index, row in enumerate(rows):
        for identity in row.identities:
            seen = first_with.setdefault(identity, index)
            if seen != index:
                a, b = root(seen), root(index)
                parent[max(a, b)] = min(a, b)
    grouped: dict[int, list[ParsedRow]] = {}
    for index, row in enumerate(rows):
        grouped.setdefault(root(index), []).append(row)
    return [grouped[key] for key in sorted(grouped)]


def decide(
    rows: Sequence[ParsedRow],
    owners: Mapping[ChannelIdentity, str],
    earlier: Mapping[ChannelIdentity, int],
    *,
    auto_merge: AutoMerge,
    names: Mapping[str, str],
    new_member_id: Callable[[], str],
) -> list[Decision]:
    """The decisions of a chunk's rows, in row order.

    `owners`: the members holding the chunk's identities now; `earlier`: legacy numbers an
    earlier chunk of this import brought, with their row; `names`: the full names of existing
    members the auto-merge rule may compare (only asked for when it is on)."""
    chunk = _Chunk(owners, auto_merge, names, new_member_id)
    drafts: dict[int, _Draft] = {}
    fresh: list[ParsedRow] = []
    first_row = dict(earlier)
    for row in rows:
        before = first_row.setdefault(row.legacy, row.number)
        if before != row.number:
            drafts[row.number] = _Draft(
                row, RowOutcome.REJECTED, reason=DUPLICATE_ROW, earlier_row=before
            )
        else:
            fresh.append(row)
    for group in groups_of(fresh):
        for draft in chunk.group(group):
            drafts[draft.row.number] = draft
    for draft in drafts.values():
        if draft.outcome is RowOutcome.MERGE_CANDIDATE:
            draft.reason = MATCHES_TWO_MEMBERS
    return [chunk.decided(drafts[row.number]) for row in rows]


def owners_to_look_up(rows: Iterable[ParsedRow]) -> list[ChannelIdentity]:
    """Every identity of the chunk, once."""
    return list(dict.fromkeys(i for row in rows for i in row.identities))


def merge_suspects(rows: Iterable[ParsedRow], owners: Mapping[ChannelIdentity, str]) -> set[str]:
    """Existing members whose names the auto-merge rule may need: those of rows with
    identities held by two or more members."""
    found: set[str] = set()
    for row in rows:
        held = {owners[i] for i in row.identities if i in owners}
        if len(held) > 1:
            found |= held
    return found
