"""`loyalty-admin` as an operator runs it, a process of its own, against a suite of the four
services and the gateway (databases `<run>_adm_<service>` and an event namespace of their own,
so the programme it changes is nobody else's): apply is idempotent, export | apply is a no-op,
a dry run changes nothing, a failure part-way is reported and a re-run finishes, jobs print
their counts, clients are the gateway's."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from loyalty.common.v1 import channel_pb2
from loyalty.engagement.v1 import engagement_service_pb2 as engagement_pb
from loyalty.engagement.v1 import engagement_service_pb2_grpc
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import identity_service_pb2_grpc, member_pb2
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.points.v1 import points_service_pb2_grpc
from loyalty_devstack.demo import HUAYUE

from tests.admin.conftest import Suite
from tests.engagement.conftest import GROUP_MARKETING
from tests.points.conftest import ADMIN as POINTS_ADMIN
from tests.points.conftest import at, line, pos, rid
from tests.support.clients import As


def _edited(tmp_path: Path, name: str, *edits: tuple[str, str]) -> Path:
    text = HUAYUE.read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / name
    path.write_text(text)
    return path


async def test_applying_the_file_twice_changes_nothing_the_second_time(suite: Suite) -> None:
    first = await suite.process("programme", "apply", str(HUAYUE))
    assert first.code == 0, first.err
    assert "points (points service): " in first.out  # nothing live yet: no version
    assert "points: published v1\n" in first.out
    assert "tiers: published v1\n" in first.out
    assert "benefits: published v1\n" in first.out
    assert "reward_stock: restocked 3 reward(s)\n" in first.out
    assert "journeys (engagement service): 8 change(s)\n" in first.out
    assert "journeys: 8 call(s)\n" in first.out
    assert "challenges: created 1\n" in first.out
    assert first.out.endswith(
        "applied: points, tiers, benefits, reward_stock, journeys, challenges\n"
    )

    second = await suite.admin("programme", "apply", str(HUAYUE))
    assert second.code == 0, second.err
    assert second.out == (
        "points (points service, v1): unchanged\n"
        "tiers (tiers service, v1): unchanged\n"
        "benefits (benefits service, v1): unchanged\n"
        "reward_stock (benefits service): unchanged\n"
        "journeys (engagement service): unchanged\n"
        "challenges (engagement service): unchanged\n"
        "no changes\n"
    )
    diff = await suite.admin("programme", "diff", str(HUAYUE))
    assert diff.code == 0 and diff.out.endswith("no changes\n"), diff.out


async def test_export_then_apply_is_a_no_op(suite: Suite, tmp_path: Path) -> None:
    await suite.admin("programme", "apply", str(HUAYUE))
    exported = tmp_path / "live.yaml"
    made = await suite.admin("programme", "export", "-o", str(exported))
    assert made.code == 0, made.err
    text = exported.read_text()
    assert "effective_from" not in text.split("tiers:")[0]  # in force already: not repeated
    assert "multiplier: '2'" in text and "cinema-ticket: 200" in text
    assert (await suite.admin("programme", "validate", str(exported))).code == 0
    again = await suite.admin("programme", "apply", str(exported))
    assert again.code == 0, again.err
    assert again.out.endswith("no changes\n"), again.out
    # ... and through a pipe, as `export | apply /dev/stdin` would.
    printed = await suite.admin("programme", "export")
    assert printed.out.split("\n", 2)[2] == text.split("\n", 2)[2]  # the header has the time


async def test_a_dry_run_shows_the_change_and_makes_none(suite: Suite, tmp_path: Path) -> None:
    await suite.admin("programme", "apply", str(HUAYUE))
    changed = _edited(
        tmp_path,
        "hotel.yaml",
        ('  - unit: hotel\n    multiplier: "2"', '  - unit: hotel\n    multiplier: "2.5"'),
    )
    dry = await suite.admin("programme", "apply", str(changed), "--dry-run")
    assert dry.code == 0, dry.err
    assert "points (points service, v1): 1 change(s)\n" in dry.out
    assert '  ~ units[hotel].multiplier: "2" -> "2.5"\n' in dry.out
    assert "has passed: the change takes effect when applied" in dry.out
    assert dry.out.endswith("dry run: nothing applied\n")
    assert "1 change(s)" in (await suite.admin("programme", "diff", str(changed))).out
    assert (await suite.admin("programme", "diff", str(HUAYUE))).out.endswith("no changes\n")


async def test_a_change_takes_effect_when_told_and_never_in_the_past(
    suite: Suite, tmp_path: Path
) -> None:
    await suite.admin("programme", "apply", str(HUAYUE))
    changed = _edited(
        tmp_path,
        "cinema.yaml",
        ('  - unit: cinema\n    multiplier: "1.5"', '  - unit: cinema\n    multiplier: "3"'),
    )
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    refused = await suite.admin("programme", "apply", str(changed), "--effective-from", past)
    assert refused.code == 1
    assert "is in the past: a change to the programme never rewrites history" in refused.err
    assert "nothing applied" in refused.err

    later = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    done = await suite.admin(
        "programme", "apply", str(changed), "--effective-from", later.isoformat()
    )
    assert done.code == 0, done.err
    assert f"(effective from {later.isoformat()})" in done.out
    assert "points: published v2\n" in done.out
    # The scheduled version is what the file is compared with: nothing left to do.
    assert (await suite.admin("programme", "diff", str(changed))).out.endswith("no changes\n")
    # The exported file keeps the effective_from of a version still ahead.
    exported = (await suite.admin("programme", "export")).out
    assert f"effective_from: '{later.strftime('%Y-%m-%dT%H:%M:%SZ')}'" in exported


async def test_a_failure_part_way_is_reported_and_a_rerun_finishes(
    suite: Suite, tmp_path: Path
) -> None:
    await suite.admin("programme", "apply", str(HUAYUE))
    # The ladder changes (fine) and a benefit gets a quota without a period: only the benefits
    # service knows that is wrong, so the ladder is published before the catalogue is refused.
    broken = _edited(
        tmp_path,
        "broken.yaml",
        ('      value: "5000"', '      value: "6000"'),
        ("    name_en: Free parking\n", "    name_en: Free parking\n    quota: 3\n"),
    )
    assert (await suite.admin("programme", "validate", str(broken))).code == 0
    failed = await suite.admin("programme", "apply", str(broken))
    assert failed.code == 1
    assert "tiers: published v2\n" in failed.out
    assert "FAILED at benefits: INVALID_ARGUMENT" in failed.err
    assert "quota_period" in failed.err
    assert "applied before the failure (they stay): tiers\n" in failed.err
    assert "not applied: benefits\n" in failed.err
    assert "run apply again: it finishes what is left" in failed.err

    fixed = _edited(
        tmp_path,
        "fixed.yaml",
        ('      value: "5000"', '      value: "6000"'),
        (
            "    name_en: Free parking\n",
            "    name_en: Free parking\n    quota: 3\n    quota_period: QUOTA_PERIOD_MONTH\n",
        ),
    )
    rerun = await suite.admin("programme", "apply", str(fixed))
    assert rerun.code == 0, rerun.err
    assert "tiers (tiers service, v2): unchanged\n" in rerun.out
    assert "benefits: published v2\n" in rerun.out
    assert (await suite.admin("programme", "diff", str(fixed))).out.endswith("no changes\n")


async def _journeys(suite: Suite) -> dict[str, engagement_pb.Journey]:
    """The engagement service's journeys by key (those without one by display name)."""
    async with grpc.aio.insecure_channel(suite.env["LOYALTY_ENGAGEMENT_TARGET"]) as channel:
        stub = As(engagement_service_pb2_grpc.EngagementServiceStub, channel, GROUP_MARKETING)
        listed = await stub.ListJourneys(engagement_pb.ListJourneysRequest(page_size=200))
    return {j.key or j.display_name: j for j in listed.journeys}


async def test_journeys_are_kept_by_key_a_change_is_a_new_version(
    suite: Suite, tmp_path: Path
) -> None:
    await suite.admin("programme", "apply", str(HUAYUE))
    live = await _journeys(suite)
    birthday = live["birthday-gift"]
    assert birthday.trigger.kind == engagement_pb.TRIGGER_KIND_BIRTHDAY
    assert birthday.steps[0].issue_coupon.template == "birthday-gift"
    assert birthday.state == engagement_pb.JOURNEY_STATE_ACTIVE
    assert live["welcome-gold"].steps[0].issue_coupon.grant_key == "welcome:gold"
    assert live["win-back"].steps[1].delay.seconds == 14 * 86400

    changed = _edited(
        tmp_path,
        "journeys.yaml",
        ("  budget:\n    coupons: 5000", "  budget:\n    coupons: 6000"),
        (
            "    period_days: 30\n  state: JOURNEY_STATE_ACTIVE",
            "    period_days: 30\n  state: JOURNEY_STATE_PAUSED",
        ),
    )
    diff = await suite.admin("programme", "diff", str(changed))
    assert "journeys (engagement service): 2 change(s)\n" in diff.out, diff.out
    assert "  ~ journeys[win-back].budget.coupons: 5000 -> 6000\n" in diff.out
    assert (
        '  ~ journeys[expiring-points].state: "JOURNEY_STATE_ACTIVE" -> "JOURNEY_STATE_PAUSED"\n'
        in diff.out
    )
    done = await suite.admin("programme", "apply", str(changed))
    assert done.code == 0, done.err
    assert "journeys: 2 call(s)\n" in done.out
    after = await _journeys(suite)
    assert after["win-back"].version == live["win-back"].version + 1
    assert after["win-back"].budget.coupons == 6000
    assert after["expiring-points"].state == engagement_pb.JOURNEY_STATE_PAUSED
    assert after["expiring-points"].version == live["expiring-points"].version
    assert len(after) == len(live)  # changed in place, none made
    again = await suite.admin("programme", "apply", str(changed))
    assert again.out.endswith("no changes\n"), again.out
    back = await suite.admin("programme", "apply", str(HUAYUE))  # resumed, the budget put back
    assert back.code == 0, back.err
    assert (await _journeys(suite))["expiring-points"].state == engagement_pb.JOURNEY_STATE_ACTIVE


async def test_a_journey_made_before_it_had_a_key_is_given_the_files(
    suite: Suite, tmp_path: Path
) -> None:
    name = f"Spring {uuid.uuid4().hex[:8]}"
    async with grpc.aio.insecure_channel(suite.env["LOYALTY_ENGAGEMENT_TARGET"]) as channel:
        stub = As(engagement_service_pb2_grpc.EngagementServiceStub, channel, GROUP_MARKETING)
        made = await stub.CreateJourney(
            engagement_pb.CreateJourneyRequest(
                journey=engagement_pb.Journey(
                    display_name=name,
                    trigger=engagement_pb.Trigger(kind=engagement_pb.TRIGGER_KIND_BIRTHDAY),
                    steps=[
                        engagement_pb.Step(
                            change_tags=engagement_pb.ChangeTags(add_tags=["spring:one"])
                        )
                    ],
                ),
                request_id=rid(),
            )
        )
    key = f"spring-{uuid.uuid4().hex[:8]}"
    file = tmp_path / "spring.yaml"
    file.write_text(
        "journeys:\n"
        f"- key: {key}\n"
        f"  display_name: {name}\n"
        "  trigger: {kind: TRIGGER_KIND_BIRTHDAY}\n"
        "  steps:\n"
        "  - change_tags: {add_tags: ['spring:two']}\n"
    )
    done = await suite.admin("programme", "apply", str(file))
    assert done.code == 0, done.err
    assert f'  ~ journeys[{key}].steps: [{{"change_tags":' in done.out
    adopted = (await _journeys(suite))[key]
    assert adopted.name == made.journey.name and adopted.version == 2
    assert list(adopted.steps[0].change_tags.add_tags) == ["spring:two"]
    assert adopted.state == engagement_pb.JOURNEY_STATE_DRAFT
    again = await suite.admin("programme", "apply", str(file))
    assert again.out.endswith("no changes\n"), again.out


async def test_a_journey_past_its_end_is_the_files_as_it_stands(
    suite: Suite, tmp_path: Path
) -> None:
    key = f"ended-{uuid.uuid4().hex[:8]}"
    file = tmp_path / "ended.yaml"
    file.write_text(
        "journeys:\n"
        f"- key: {key}\n"
        "  display_name: Last spring\n"
        "  trigger: {kind: TRIGGER_KIND_BIRTHDAY}\n"
        "  steps: [{change_tags: {add_tags: ['spring:one']}}]\n"
        "  end_time: '2026-01-01T00:00:00+08:00'\n"
        "  state: JOURNEY_STATE_ACTIVE\n"
    )
    made = await suite.admin("programme", "apply", str(file))
    assert made.code == 0, made.err
    assert (await _journeys(suite))[key].state == engagement_pb.JOURNEY_STATE_ENDED
    again = await suite.admin("programme", "apply", str(file))
    assert again.code == 0, again.err
    assert f"  (journeys[{key}] has ended (its end_time))\n" in again.out
    assert again.out.endswith("no changes\n"), again.out
    exported = tmp_path / "exported.yaml"
    assert (await suite.admin("programme", "export", "-o", str(exported))).code == 0
    assert (await suite.admin("programme", "validate", str(exported))).code == 0
    assert (await suite.admin("programme", "apply", str(exported))).out.endswith("no changes\n")


async def test_journeys_are_checked_offline(suite: Suite, tmp_path: Path) -> None:
    broken = _edited(
        tmp_path,
        "bad-journeys.yaml",
        ("- key: expiring-points", "- key: win-back"),
        ("      template: cinema-ticket\n      unit: cinema", "      template: cinema\n"),
        ("- key: welcome-gold", "- key: Welcome Gold"),
    )
    checked = await suite.admin("programme", "validate", str(broken))
    assert checked.code == 1
    assert "journeys[1].key: 'win-back' is the key of journeys[0]" in checked.err
    assert "journeys[2].steps[0].issue_coupon.template: 'cinema': no such coupon template" in (
        checked.err
    )
    assert 'journeys[4].key: lowercase letters, digits and "-", at most 63' in checked.err
    no_key = tmp_path / "no-key.yaml"
    no_key.write_text(
        "journeys:\n- display_name: x\n  trigger: {kind: TRIGGER_KIND_BIRTHDAY}\n"
        "  steps: [{delay: {seconds: 60}}]\n"
    )
    missing = await suite.admin("programme", "validate", str(no_key))
    assert missing.code == 1 and "journeys[0]: required field 'key' is missing" in missing.err


async def test_jobs_run_by_hand_print_their_counts(suite: Suite) -> None:
    await suite.admin("programme", "apply", str(HUAYUE))
    expected = {
        "expiry": "expiry: members_expired 0, lots_expired 0, points_expired 0\n",
        "pending-activation": "pending-activation: postings_activated 0, points_activated 0\n",
        "year-end": "year-end: judged 0, retained 0, downgraded 0\n",
        "grant-expiry": "grant-expiry: ended 0, changed 0\n",
        "birthday-gifts": "birthday-gifts: celebrating 0, granted 0\n",
    }
    for job, said in expected.items():
        done = await (suite.process if job == "expiry" else suite.admin)("jobs", "run", job)
        assert done.code == 0, done.err
        assert done.out == said


async def _members_with_expired_points(suite: Suite, count: int) -> int:
    """`count` members with points earned at the mall in August 2024 (expired since the end of
    August 2026); the points each earned."""
    async with (
        grpc.aio.insecure_channel(suite.env["LOYALTY_IDENTITY_TARGET"]) as identity_channel,
        grpc.aio.insecure_channel(suite.env["LOYALTY_POINTS_TARGET"]) as points_channel,
    ):
        identity = As(identity_service_pb2_grpc.IdentityServiceStub, identity_channel, POINTS_ADMIN)
        till = As(points_service_pb2_grpc.PointsServiceStub, points_channel, pos("mall"))
        earned = 0
        for _ in range(count):
            request = identity_pb.RegisterMemberRequest(
                request_id=rid(),
                unit="mall",
                channel=channel_pb2.CHANNEL_POS,
                identities=[
                    member_pb2.Identity(type="phone", value=f"139{uuid.uuid4().int % 10**8:08d}")
                ],
            )
            for _ in range(100):  # identity learns the programme's units from its event
                try:
                    member = (await identity.RegisterMember(request)).member.name
                    break
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.1)
            answer = await till.EarnPoints(
                points_pb.EarnPointsRequest(
                    member=member,
                    request_id=rid(),
                    unit="mall",
                    channel=channel_pb2.CHANNEL_POS,
                    order_id=f"ord-{rid()[:10]}",
                    lines=[line("10.00")],
                    occur_time=at("2024-08-15T10:00:00+08:00"),
                )
            )
            earned = answer.posting.points
    return earned


async def test_a_job_runs_in_steps_to_a_full_bar_and_prints_the_summed_counts(
    suite: Suite,
) -> None:
    await suite.admin("programme", "apply", str(HUAYUE))
    await suite.admin("jobs", "run", "expiry")  # whatever another test left due
    each = await _members_with_expired_points(suite, 5)

    dry = await suite.admin("jobs", "run", "expiry", "--dry-run")
    assert dry.code == 0, dry.err
    assert dry.out.startswith("expiry: 5 members with points to expire as of ")
    assert dry.out.endswith("; nothing changed\n")
    assert (await suite.admin("jobs", "run", "expiry", "--dry-run")).out.startswith("expiry: 5 ")

    done = await suite.process("jobs", "run", "expiry", "--step", "2", "--chunk-size", "1")
    assert done.code == 0, done.err
    assert done.out == f"expiry: members_expired 5, lots_expired 5, points_expired {5 * each}\n"
    bar, counts = done.err.splitlines()[-2:]
    assert bar.startswith("expiry ") and " 5/5 members " in bar, done.err
    assert counts == f"  members_expired 5, lots_expired 5, points_expired {5 * each:,}"
    after = await suite.admin("jobs", "run", "expiry", "--dry-run")
    assert after.out.startswith("expiry: 0 members with points to expire as of ")


async def test_clients_are_the_gateways_command(suite: Suite) -> None:
    made = await suite.process("clients", "create", "--unit", "hotel", "--scopes", "earn,redeem")
    assert made.code == 0, made.err
    client = json.loads(made.out)
    assert client["unit"] == "hotel" and client["client_secret"]
    listed = await suite.process("clients", "list")
    assert f"{client['client_id']}\thotel\tearn redeem\t" in listed.out


async def test_operators_are_the_gateways_command(suite: Suite) -> None:
    login = f"op-{uuid.uuid4().hex[:12]}"
    made = await suite.process(
        "operators", "create", "--login", login, "--role", "unit_manager", "--unit", "hotel"
    )
    assert made.code == 0, made.err
    operator = json.loads(made.out)
    assert (operator["role"], operator["unit"]) == ("unit_manager", "hotel")
    assert len(operator["password"]) >= 12
    refused = await suite.process(
        "operators", "create", "--login", "x1-" + login, "--role", "unit_manager"
    )
    assert refused.code == 2 and "needs its one unit" in refused.err
    assert (await suite.process("operators", "disable", login)).code == 0
    listed = await suite.process("operators", "list")
    assert f"{login}\tunit_manager\thotel\tdisabled\t" in listed.out
