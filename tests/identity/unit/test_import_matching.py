"""Which member each row of an import's chunk becomes (the pure decisions, no store)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from loyalty_identity.domain.identities import ChannelIdentity
from loyalty_identity.domain.imports import AutoMerge, ParsedRow, RowOutcome, SealedAhead
from loyalty_identity.domain.matching import (
    DUPLICATE_ROW,
    MATCHES_TWO_MEMBERS,
    Decision,
    decide,
    groups_of,
    merge_suspects,
)


def phone(n: int) -> ChannelIdentity:
    return ChannelIdentity("phone", f"+86139{n:08d}")


def email(n: int) -> ChannelIdentity:
    return ChannelIdentity("email", f"p{n}@example.com")


def legacy(n: int) -> ChannelIdentity:
    return ChannelIdentity("legacy:hotel", f"H{n}")


def row(number: int, *identities: ChannelIdentity, name: str = "") -> ParsedRow:
    return ParsedRow(number=number, identities=(legacy(number), *identities), name=name)


def ids() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"new-{next(counter)}"


def run(
    rows: list[ParsedRow],
    owners: dict[ChannelIdentity, str] | None = None,
    earlier: dict[ChannelIdentity, int] | None = None,
    auto_merge: AutoMerge = AutoMerge.NONE,
    names: dict[str, str] | None = None,
) -> list[Decision]:
    return decide(
        rows,
        owners or {},
        earlier or {},
        auto_merge=auto_merge,
        names=names or {},
        new_member_id=ids(),
    )


def outcomes(decisions: list[Decision]) -> list[tuple[RowOutcome, str]]:
    return [(d.outcome, d.member_id) for d in decisions]


def test_a_row_nobody_holds_is_a_new_member_with_all_its_identities() -> None:
    [made] = run([row(1, phone(1), email(1))])
    assert (made.outcome, made.member_id, made.created) == (RowOutcome.CREATED, "new-1", True)
    assert made.link == (legacy(1), phone(1), email(1))


def test_a_row_joins_the_member_holding_its_identities_binding_what_is_unbound() -> None:
    joined, same = run(
        [row(1, phone(1), email(1)), row(2, phone(2))],
        owners={phone(1): "A", phone(2): "B", legacy(2): "B"},
    )
    assert (joined.outcome, joined.member_id, joined.created) == (RowOutcome.LINKED, "A", False)
    assert joined.link == (legacy(1), email(1))
    assert (same.outcome, same.member_id, same.link) == (RowOutcome.UNCHANGED, "B", ())


def test_rows_sharing_an_identity_in_a_chunk_are_one_person() -> None:
    # A new person twice (two cards, one phone), and a pair that an existing member holds
    # through the second row only: both rows join that member.
    decisions = run(
        [row(1, phone(1)), row(2, phone(1)), row(3, phone(3)), row(4, phone(3), email(4))],
        owners={email(4): "A"},
    )
    assert outcomes(decisions) == [
        (RowOutcome.CREATED, "new-1"),
        (RowOutcome.LINKED, "new-1"),
        (RowOutcome.LINKED, "A"),
        (RowOutcome.LINKED, "A"),
    ]
    assert decisions[1].link == (legacy(2),)
    assert decisions[2].link == (legacy(3), phone(3))
    assert [len(g) for g in groups_of([row(1, phone(1)), row(2), row(3, phone(1))])] == [2, 1]


def test_a_row_holding_two_members_identities_is_a_candidate_with_its_evidence() -> None:
    [candidate] = run([row(1, phone(1), email(1))], owners={phone(1): "A", email(1): "B"})
    assert (candidate.outcome, candidate.reason, candidate.member_id) == (
        RowOutcome.MERGE_CANDIDATE,
        MATCHES_TWO_MEMBERS,
        "",
    )
    assert candidate.evidence == ((phone(1), "A"), (email(1), "B"))
    assert candidate.link == ()


def test_in_a_chunk_pointing_at_two_members_each_row_is_decided_on_its_own() -> None:
    decisions = run(
        [row(1, phone(1)), row(2, phone(1), email(2)), row(3, email(2), phone(3))],
        owners={phone(1): "A", email(2): "B"},
    )
    assert outcomes(decisions) == [
        (RowOutcome.LINKED, "A"),
        (RowOutcome.MERGE_CANDIDATE, ""),
        (RowOutcome.LINKED, "B"),
    ]


def test_a_legacy_number_met_again_in_the_import_is_a_duplicate_row() -> None:
    first, again = run([row(1, phone(1)), ParsedRow(number=2, identities=(legacy(1), phone(2)))])
    assert first.outcome is RowOutcome.CREATED
    assert (again.outcome, again.reason, again.earlier_row) == (
        RowOutcome.REJECTED,
        DUPLICATE_ROW,
        1,
    )
    assert again.link == () and again.member_id == ""
    [before] = run([row(7, phone(7))], earlier={legacy(7): 3})  # an earlier chunk had it
    assert (before.outcome, before.earlier_row) == (RowOutcome.REJECTED, 3)


def test_the_phone_and_name_rule_merges_into_the_phone_holder() -> None:
    owners = {phone(1): "A", email(1): "B", phone(9): "B"}
    rows = [row(1, phone(1), email(1), name="王芳"), row(2, phone(9))]
    merged, after = run(
        rows, owners, auto_merge=AutoMerge.PHONE_AND_NAME, names={"A": "王芳", "B": " 王芳 "}
    )
    assert (merged.outcome, merged.member_id, merged.absorbed) == (RowOutcome.MERGED, "A", ("B",))
    assert merged.link == (legacy(1),)
    # What B held is A's now: a later row holding B's phone joins A.
    assert (after.outcome, after.member_id) == (RowOutcome.LINKED, "A")
    assert merge_suspects(rows, owners) == {"A", "B"}


def test_the_rule_leaves_different_names_and_rows_without_a_phone_to_an_operator() -> None:
    owners = {phone(1): "A", email(1): "B"}
    differ = run(
        [row(1, phone(1), email(1), name="王芳")],
        owners,
        auto_merge=AutoMerge.PHONE_AND_NAME,
        names={"A": "王芳", "B": "李伟"},
    )
    nameless = run(
        [row(1, phone(1), email(1))],
        owners,
        auto_merge=AutoMerge.PHONE_AND_NAME,
        names={"A": "", "B": ""},
    )
    off = run([row(1, phone(1), email(1), name="王芳")], owners, names={"A": "王芳", "B": "王芳"})
    no_phone = run(
        [row(1, email(1), ChannelIdentity("wechat_unionid", "oU1"), name="王芳")],
        {email(1): "A", ChannelIdentity("wechat_unionid", "oU1"): "B"},
        auto_merge=AutoMerge.PHONE_AND_NAME,
        names={"A": "王芳", "B": "王芳"},
    )
    for decisions in (differ, nameless, off, no_phone):
        assert decisions[0].outcome is RowOutcome.MERGE_CANDIDATE


def sealed_for(member_id: str) -> SealedAhead:
    return SealedAhead(member_id, b"k" * 32, "k1", b"w", (), None, None)


def test_a_new_member_takes_the_id_its_row_was_sealed_for_and_a_joining_row_does_not() -> None:
    first = ParsedRow(1, (legacy(1), phone(1)), sealed=sealed_for("ahead-1"))
    second = ParsedRow(2, (legacy(2), phone(1)), sealed=sealed_for("ahead-2"))  # the same person
    known = ParsedRow(3, (legacy(3), phone(3)), sealed=sealed_for("ahead-3"))
    plain = row(4, phone(4))  # read in the service's process: nothing sealed ahead

    decisions = run([first, second, known, plain], owners={phone(3): "m-3"})

    assert outcomes(decisions) == [
        (RowOutcome.CREATED, "ahead-1"),
        (RowOutcome.LINKED, "ahead-1"),
        (RowOutcome.LINKED, "m-3"),
        (RowOutcome.CREATED, "new-1"),
    ]
