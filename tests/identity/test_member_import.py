"""Bringing Huayue's units' members in, over a real channel: the mall's, the hotel's and the
cinema's legacy files, overlapping in people, become one member per person; the events points
and tiers follow carry each legacy account once; importing a file again changes nothing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import grpc
import pytest
from loyalty.identity.v1 import identity_service_pb2 as ipb
from loyalty.identity.v1 import member_import_pb2 as pb
from loyalty.identity.v1 import member_pb2
from loyalty_devstack.testing import metadata_for
from loyalty_identity.adapters.imports import ImportStore
from loyalty_identity.domain.identities import ChannelIdentity
from loyalty_kit.caller import Caller
from loyalty_kit.server import RunningService
from loyalty_kit.settings import Settings

from tests.identity.conftest import MALL_POS, SERVICE_DESK, IdentityClient
from tests.identity.import_files import (
    SMS,
    cinema_file,
    cinema_spec,
    get,
    hotel_file,
    hotel_joined,
    hotel_spec,
    imported,
    imported_events,
    importer,
    mall_file,
    mall_spec,
    population,
    report,
    stub,
    upload,
)
from tests.identity.test_registration import register
from tests.support.metrics import scrape
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")

MALL, HOTEL, CINEMA = importer("mall"), importer("hotel"), importer("cinema")


async def member_of(identity: IdentityClient, kind: str, value: str) -> member_pb2.Member:
    found = await identity.as_(SERVICE_DESK).ResolveMember(
        ipb.ResolveMemberRequest(identity=member_pb2.Identity(type=kind, value=value))
    )
    member: member_pb2.Member = found.member
    return member


def legacy_key(service: RunningService, unit: str, number: str) -> str:
    return str(service.root.keyring.blind_index(ChannelIdentity(f"legacy:{unit}", number)).hex())


def progress(made: pb.MemberImport) -> dict[str, int]:
    p = made.progress
    return {
        "rows_read": p.rows_read,
        "created": p.created,
        "linked": p.linked,
        "unchanged": p.unchanged,
        "candidates": p.candidates,
        "merged": p.merged,
        "rejected": p.rejected,
    }


async def test_three_units_files_with_overlapping_people_make_one_member_per_person(
    identity: IdentityClient, settings: Settings
) -> None:
    channel, service = identity.channel, identity.service
    people = population(60)
    at_mall = [p for p in people if p.index % 3 != 2]  # 40
    at_hotel = [p for p in people if p.index % 2 == 0]  # 30
    at_cinema = [p for p in people if p.index % 3 == 0 or p.index % 5 == 1]
    two_cards = at_mall[:4]
    # The hotel knows the phones of those the mall knows, through which they are found; the
    # cinema knows everyone's e-mail (found through the hotel) and the phone of those the
    # hotel does not know.
    hotel_phones = [p for p in at_hotel if p in at_mall]
    cinema_phones = [p for p in at_cinema if p not in at_hotel]

    mall = await imported(channel, MALL, mall_spec(), mall_file(at_mall, two_cards))
    assert mall.state == pb.MemberImport.STATE_SUCCEEDED, mall.error
    assert progress(mall) == {
        "rows_read": 44,
        "created": 40,
        "linked": 4,  # the second cards joined their holders
        "unchanged": 0,
        "candidates": 0,
        "merged": 0,
        "rejected": 0,
    }
    assert mall.progress.percent == 100 and not mall.file_kept
    hotel = await imported(channel, HOTEL, hotel_spec(), hotel_file(at_hotel, hotel_phones))
    assert hotel.state == pb.MemberImport.STATE_SUCCEEDED, hotel.error
    assert hotel.spec.encoding == "gb18030"
    assert (hotel.progress.created, hotel.progress.linked) == (
        len(at_hotel) - len(hotel_phones),
        len(hotel_phones),
    )
    cinema = await imported(channel, CINEMA, cinema_spec(), cinema_file(at_cinema, cinema_phones))
    assert cinema.state == pb.MemberImport.STATE_SUCCEEDED, cinema.error
    known = {p.index for p in at_mall + at_hotel}
    assert (cinema.progress.created, cinema.progress.linked) == (
        sum(p.index not in known for p in at_cinema),
        sum(p.index in known for p in at_cinema),
    )

    # Every person is one member, whichever legacy number or identity finds them.
    members: dict[int, str] = {}
    known_somewhere = [p for p in people if p.legacy]
    assert len(known_somewhere) > 45
    for person in known_somewhere:
        found = {
            (await member_of(identity, f"legacy:{unit}", number)).member_id
            for unit, numbers in person.legacy.items()
            for number in numbers
        }
        if person in at_mall or person in hotel_phones or person in cinema_phones:
            found.add((await member_of(identity, "phone", person.e164)).member_id)
        if person in at_hotel or person in at_cinema:
            found.add((await member_of(identity, "email", person.email)).member_id)
        assert len(found) == 1, (person.index, person.legacy, found)
        members[person.index] = found.pop()
    assert len(set(members.values())) == len(known_somewhere)
    whole = await member_of(identity, "phone", at_mall[0].e164)
    assert whole.registered_unit == "mall" and whole.profile.full_name

    # The events carry each legacy account once, with its balance, tier and birthday.
    for made, unit, file_people in ((mall, "mall", at_mall), (hotel, "hotel", at_hotel)):
        carried = [m for e in await imported_events(settings, made.name) for m in e.members]
        by_key = Counter(m.legacy_key for m in carried)
        expected = {
            legacy_key(service, unit, number): person
            for person in file_people
            for number in person.legacy[unit]
        }
        assert set(by_key) == set(expected) and set(by_key.values()) == {1}
        for entry in carried:
            person = expected[entry.legacy_key]
            assert entry.member_id == members[person.index]
            assert (entry.birthday_month, entry.birthday_day) == (
                (person.birthday.month, person.birthday.day) if unit == "mall" else (0, 0)
            )
            # When the hotel's account joined its programme (the start of that day in the
            # import's time zone, Shanghai by default), where the file says.
            if unit == "hotel" and person.index % 2:
                assert entry.joined_at.ToDatetime(tzinfo=UTC) == datetime.combine(
                    hotel_joined(person), time(), ZoneInfo("Asia/Shanghai")
                )
            else:
                assert not entry.HasField("joined_at")
    mall_entries = {
        m.legacy_key: m for e in await imported_events(settings, mall.name) for m in e.members
    }
    gold = at_mall[0]  # index 0: 金卡, 100 points, the first card made the member
    entry = mall_entries[legacy_key(service, "mall", gold.legacy["mall"][0])]
    assert (entry.created, entry.legacy_points, entry.tier_code) == (True, 100, "gold")
    assert entry.HasField("tier_ends_at") and entry.HasField("legacy_points_expire_at")
    second = mall_entries[legacy_key(service, "mall", gold.legacy["mall"][1])]
    assert (second.created, second.member_id) == (False, entry.member_id)
    plain = mall_entries[legacy_key(service, "mall", at_mall[1].legacy["mall"][0])]
    assert plain.tier_code == "" and not plain.HasField("tier_ends_at")
    # The consents the file gave, on each member's first row only (for insights' targeting).
    assert [(c.purpose, c.granted) for c in entry.consents] == [(SMS, False)]  # index 0: 否
    assert entry.consents[0].changed_at.ToDatetime(tzinfo=UTC).date() <= date(2024, 5, 1)
    assert not second.consents
    assert [(c.purpose, c.granted) for c in plain.consents] == [(SMS, True)]  # index 1: 是
    assert mall.progress.legacy_points == sum(
        100 * (p.index + 1) * (2 if p in two_cards else 1) for p in at_mall
    )

    # The report: a row per file row, in order, each with its member.
    rows = await report(channel, MALL, mall.name, page_size=7)
    assert [r.row_number for r in rows] == list(range(1, 45))
    assert {r.member_id for r in rows} == {members[p.index] for p in at_mall}
    assert Counter(r.outcome for r in rows) == {
        pb.IMPORT_ROW_OUTCOME_CREATED: 40,
        pb.IMPORT_ROW_OUTCOME_LINKED: 4,
    }


async def test_importing_the_same_file_again_changes_nothing(
    identity: IdentityClient, settings: Settings
) -> None:
    channel = identity.channel
    people = population(30)
    content = mall_file(people)
    before = await scrape(identity.service)
    first = await imported(channel, MALL, mall_spec(), content)
    assert first.progress.created == 30

    again = await imported(channel, MALL, mall_spec(), content)

    assert again.state == pb.MemberImport.STATE_SUCCEEDED
    assert again.file_sha256 == first.file_sha256 and again.name != first.name
    assert progress(again) == {
        "rows_read": 30,
        "created": 0,
        "linked": 0,
        "unchanged": 30,
        "candidates": 0,
        "merged": 0,
        "rejected": 0,
    }
    assert again.progress.legacy_points == 0
    assert await imported_events(settings, again.name) == []
    first_rows = await report(channel, MALL, first.name)
    again_rows = await report(channel, MALL, again.name)
    assert [r.member_id for r in again_rows] == [r.member_id for r in first_rows]

    # The rows are counted by outcome, and each import's run timed.
    after = await scrape(identity.service)
    rows = "loyalty_member_import_rows_total"
    for outcome in ("created", "unchanged"):
        counted = after.value(rows, unit="mall", outcome=outcome)
        assert counted - before.value(rows, unit="mall", outcome=outcome) == 30
    runs = "loyalty_job_runs_total"
    assert (
        after.value(runs, job="member-import", outcome="ok")
        - before.value(runs, job="member-import", outcome="ok")
        == 2
    )


async def test_a_unit_imports_and_reads_only_its_own(identity: IdentityClient) -> None:
    channel = identity.channel
    made = await imported(channel, MALL, mall_spec(), mall_file(population(3)))

    foreign_spec = mall_spec()
    foreign_spec.unit = "hotel"
    refused = await fails(upload(channel, MALL, foreign_spec, mall_file(population(1))))
    assert (refused.code, refused.reason) == (grpc.StatusCode.PERMISSION_DENIED, "UNIT_MISMATCH")
    other = await fails(get(channel, HOTEL, made.name))
    assert (other.code, other.reason) == (grpc.StatusCode.PERMISSION_DENIED, "UNIT_MISMATCH")
    till = Caller(unit="mall", client_id="mall-pos", scopes=frozenset({"earn"}))
    unscoped = await fails(upload(channel, till, mall_spec(), mall_file(population(1))))
    assert (unscoped.code, unscoped.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "SCOPE_REQUIRED",
    )
    listed = await stub(channel).ListMemberImports(
        pb.ListMemberImportsRequest(), metadata=metadata_for(HOTEL), timeout=15
    )
    assert made.name not in {i.name for i in listed.member_imports}
    assert all(i.spec.unit == "hotel" for i in listed.member_imports)
    mine = await stub(channel).ListMemberImports(
        pb.ListMemberImportsRequest(page_size=1), metadata=metadata_for(MALL), timeout=15
    )
    assert [i.name for i in mine.member_imports] == [made.name] and mine.next_page_token


async def test_a_member_registered_while_a_chunk_runs_makes_the_chunk_run_again(
    identity: IdentityClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    people = population(5)
    meanwhile = people[2]
    looked_up = ImportStore.owners
    registered: list[str] = []

    async def owners_then_a_registration(
        store: ImportStore, identities: Sequence[ChannelIdentity]
    ) -> dict[ChannelIdentity, str]:
        found = await looked_up(store, identities)
        if not registered and any(i.value == meanwhile.e164 for i in identities):
            # A till registers the same phone after the chunk looked it up and before it writes.
            answer = await identity.as_(MALL_POS).RegisterMember(register(meanwhile.phone))
            registered.append(answer.member.member_id)
        return found

    monkeypatch.setattr(ImportStore, "owners", owners_then_a_registration)
    made = await imported(identity.channel, MALL, mall_spec(), mall_file(people))

    assert registered and made.state == pb.MemberImport.STATE_SUCCEEDED, made.error
    assert (made.progress.created, made.progress.linked) == (4, 1)
    rows = await report(identity.channel, MALL, made.name)
    assert (rows[2].outcome, rows[2].member_id) == (pb.IMPORT_ROW_OUTCOME_LINKED, registered[0])
    assert (await member_of(identity, "phone", meanwhile.e164)).member_id == registered[0]
