"""The ledger published again for a read side that starts after it (RepublishLedger): every
posting and lot movement the accounts' own LedgerPosted events carried, no more, in events of
bounded size, walked in member order and resumable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st
from loyalty_kit.jobs import Chunks
from loyalty_points.domain import events
from loyalty_points.domain.events import LedgerPosted, LedgerPosting, LotMovement
from loyalty_points.domain.ledger import PostingKind
from loyalty_points.service_layer import jobs, spending

from tests.points.unit.conftest import World

AT = datetime(2026, 3, 2, tzinfo=UTC)


def carried(published: list[events.Event]) -> tuple[set[object], set[object]]:
    """Every (member, posting) and (member, movement) the LedgerPosted events carried."""
    ledgers = [e for e in published if isinstance(e, LedgerPosted)]
    return (
        {(e.member_id, p) for e in ledgers for p in e.postings},
        {(e.member_id, m) for e in ledgers for m in e.movements},
    )


async def test_republishing_carries_exactly_what_the_accounts_posted(world: World) -> None:
    members = [world.member() for _ in range(5)]
    for n, member in enumerate(members):
        await world.earn(member, "mall", f"{100 + n}")
        await world.earn(member, "cinema", "40", occurred_at=world.now - timedelta(days=800))
    async with world.uow as uow:
        await spending.redeem(uow, members[0], "mall", "CHANNEL_POS", 30, "", world.directory, AT)
        await uow.commit()
    posted = carried(world.uow.published)
    world.uow.published.clear()

    first = await jobs.republish_ledger(lambda: world.uow, None, Chunks(2, limit=3))
    assert (first.members, first.after) == (3, sorted(members)[2])  # a chunk of 2, then 1
    rest = await jobs.republish_ledger(lambda: world.uow, first.after, Chunks(2))
    assert (rest.members, rest.after) == (2, None)  # to the last member

    assert carried(world.uow.published) == posted  # each posting and movement, once
    assert first.postings + rest.postings == len(posted[0])
    assert first.movements + rest.movements == len(posted[1])
    republished = [e.member_id for e in world.uow.published if isinstance(e, LedgerPosted)]
    assert republished == sorted(members)  # in member order, one event each (short ledgers)


async def test_a_walk_past_the_last_member_publishes_nothing(world: World) -> None:
    member = world.member()
    await world.earn(member, "mall", "100")
    world.uow.published.clear()
    done = await jobs.republish_ledger(lambda: world.uow, member, Chunks(10))
    assert (done.members, done.after, world.uow.published) == (0, None, [])


def posting(n: int) -> LedgerPosting:
    return LedgerPosting(f"p{n}", PostingKind.EARN, "mall", n, AT, AT)


def movement(posting_id: str, n: int) -> LotMovement:
    return LotMovement(posting_id, f"lot{n}", "mall", "mall", n, AT, None)


@given(
    st.integers(min_value=0, max_value=40),
    st.lists(st.integers(min_value=0, max_value=45), max_size=60),
    st.integers(min_value=1, max_value=9),
)
def test_a_long_ledger_is_split_with_each_movement_beside_its_posting(
    postings: int, moved: list[int], size: int
) -> None:
    ledger = [posting(n) for n in range(postings)]
    movements = [movement(f"p{n}", i) for i, n in enumerate(moved)]  # p40+: no such posting
    parts = events.ledger_as_posted("m", ledger, movements, postings_per_event=size)
    assert [p for e in parts for p in e.postings] == ledger  # all, in order
    assert sorted((m for e in parts for m in e.movements), key=lambda m: m.lot_id) == sorted(
        movements, key=lambda m: m.lot_id
    )
    assert all(len(e.postings) <= size for e in parts)
    for n, e in enumerate(parts):
        mine = {p.posting_id for p in e.postings}
        last = n == len(parts) - 1
        assert all(m.posting_id in mine or last for m in e.movements)
    assert bool(parts) == bool(ledger or movements)
