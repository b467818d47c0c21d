"""loyalty-check over real traffic: clean as the services leave the data, and each rule names
the member (or the row) when one thing is changed behind the services' back."""

from __future__ import annotations

import uuid

import pytest
from loyalty_check.checker import Options, check
from loyalty_check.findings import Finding, Report
from loyalty_kit.outbox import RELAY_LOCK_KEY
from loyalty_kit.settings import Settings

from tests.check.conftest import DRINK, Traffic, database, only, settled, tampered

pytestmark = pytest.mark.asyncio(loop_scope="session")


def found(report: Report, rule: str) -> list[Finding]:
    return next(r for r in report.results if r.rule == rule).findings


async def test_real_traffic_leaves_every_rule_clean(
    traffic: Traffic, check_settings: Settings
) -> None:
    report = await settled(check_settings, traffic.members)
    assert report.clean, report.text()
    assert [r.rule for r in report.results if r.skipped] == []
    assert len(report.results) == 13


async def test_a_report_on_some_members_leaves_out_what_other_members_left(
    traffic: Traffic, check_settings: Settings
) -> None:
    """Activity tiers counted with no posting behind it (what a test publishing events by hand
    leaves) of a member the traffic did not make, and a balance changed behind the points
    service's back: a report on every member names both; one on the traffic's other members
    neither; one on that member its own finding alone."""
    stranger, event_id = str(uuid.uuid4()), str(uuid.uuid4())
    async with (
        tampered(
            check_settings,
            "tiers",
            "INSERT INTO activity (member_id, event_id, occurred_at, unit, spend, points, visits) "
            "VALUES ($1, $2, now(), 'mall', 100.00, 100, 1) RETURNING event_id",
            "DELETE FROM activity WHERE member_id = $1 AND event_id = $2",
            stranger,
            event_id,
        ),
        tampered(
            check_settings,
            "points",
            "UPDATE accounts SET available = available + 3 WHERE member_id = $1 RETURNING 1",
            "UPDATE accounts SET available = available - 3 WHERE member_id = $1",
            traffic.shopper,
        ),
    ):
        rules = ("tiers-activity", "balance-postings")
        everyone = await check(check_settings, Options(only=rules, limit=10_000))
        others = await only(check_settings, (traffic.payer, traffic.reward_buyer), *rules)
        strangers = await only(check_settings, (f"members/{stranger}",), *rules)
        shoppers = await only(check_settings, (traffic.shopper,), *rules)
    assert stranger in [f.member_id for f in found(everyone, "tiers-activity")]
    assert traffic.shopper in [f.member_id for f in found(everyone, "balance-postings")]
    assert others.clean, others.text()
    [counted] = found(strangers, "tiers-activity")
    assert (counted.member_id, counted.detail) == (
        stranger,
        f"counted without a posting: event {event_id}",
    )
    assert found(strangers, "balance-postings") == []
    assert found(shoppers, "tiers-activity") == []
    assert [f.member_id for f in found(shoppers, "balance-postings")] == [traffic.shopper]
    assert (await only(check_settings, traffic.members, *rules)).clean


async def test_a_balance_changed_in_the_database_is_named_with_its_postings_and_lots(
    traffic: Traffic, check_settings: Settings
) -> None:
    member = traffic.shopper
    async with tampered(
        check_settings,
        "points",
        "UPDATE accounts SET available = available + 7 WHERE member_id = $1 "
        "RETURNING available, pending",
        "UPDATE accounts SET available = available - 7 WHERE member_id = $1",
        member,
    ) as rows:
        report = await only(check_settings, traffic.members, "balance-postings", "balance-lots")
    available, pending = rows[0]["available"], rows[0]["pending"]
    assert found(report, "balance-postings") == [
        Finding("balance-postings", member, str(available + pending - 7), str(available + pending))
    ]
    assert found(report, "balance-lots") == [
        Finding(
            "balance-lots",
            member,
            f"available {available - 7}, pending {pending}",
            f"available {available}, pending {pending}",
        )
    ]
    assert (await only(check_settings, traffic.members, "balance-postings", "balance-lots")).clean


async def test_a_duplicated_earn_posting_breaks_the_balance_the_order_and_tiers(
    traffic: Traffic, check_settings: Settings
) -> None:
    member, copy = traffic.shopper, str(uuid.uuid4())
    async with tampered(
        check_settings,
        "points",
        "INSERT INTO postings (member_id, posting_id, kind, points, pending, available_at, unit, "
        "channel, order_id, occurred_at, posted_at, programme_version, breakdown, reason) "
        "SELECT member_id, $2::uuid, kind, points, pending, available_at, unit, channel, "
        "order_id, occurred_at, posted_at, programme_version, breakdown, reason FROM postings "
        "WHERE member_id = $1 AND kind = 'earn' AND unit = 'mall' ORDER BY seq LIMIT 1 "
        "RETURNING points, order_id",
        "DELETE FROM postings WHERE member_id = $1 AND posting_id = $2",
        member,
        copy,
    ) as rows:
        report = await only(
            check_settings,
            traffic.members,
            "balance-postings",
            "order-earned-once",
            "tiers-activity",
        )
    points, order = rows[0]["points"], rows[0]["order_id"]
    [balance] = found(report, "balance-postings")
    assert (balance.member_id, int(balance.expected) - int(balance.found)) == (member, points)
    assert found(report, "order-earned-once") == [
        Finding(
            "order-earned-once",
            member,
            "1 earn posting, recorded in orders",
            "2 earn postings",
            f"unit mall, order {order}",
        )
    ]
    [activity] = found(report, "tiers-activity")
    assert activity.member_id == member
    assert f"not counted: posting {copy}" in activity.detail


async def test_an_event_tiers_never_counted_is_named_by_its_posting(
    traffic: Traffic, check_settings: Settings
) -> None:
    member = traffic.payer
    async with database(check_settings, "tiers") as tiers:
        row = await tiers.fetchrow(
            "DELETE FROM activity WHERE (member_id, event_id) = (SELECT member_id, event_id "
            "FROM activity WHERE member_id = $1 ORDER BY occurred_at LIMIT 1) RETURNING *",
            member,
        )
        assert row is not None
        try:
            report = await only(check_settings, traffic.members, "tiers-activity")
        finally:
            await tiers.execute(
                "INSERT INTO activity (member_id, event_id, occurred_at, unit, spend, points, "
                "visits) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                *(row[c] for c in ("member_id", "event_id", "occurred_at", "unit")),
                *(row[c] for c in ("spend", "points", "visits")),
            )
    [finding] = found(report, "tiers-activity")
    assert finding.member_id == member
    assert finding.detail == f"not counted: posting {row['event_id']}"
    events = int(finding.expected.split()[0])
    assert (
        finding.found
        == f"{events - 1} events, {int(finding.expected.split()[2]) - row['points']} points"
    )
    assert (await only(check_settings, traffic.members, "tiers-activity")).clean


async def test_an_imported_past_order_has_no_posting_and_is_no_finding(
    traffic: Traffic, check_settings: Settings
) -> None:
    """An order brought in by an order import counts as activity without a points posting."""
    member, event_id = traffic.payer, f"order:mall/legacy-{uuid.uuid4().hex[:8]}"
    async with tampered(
        check_settings,
        "tiers",
        "INSERT INTO activity (member_id, event_id, occurred_at, unit, spend, points, visits) "
        "VALUES ($1, $2, now() - interval '400 days', 'mall', 120.00, 0, 1) RETURNING event_id",
        "DELETE FROM activity WHERE member_id = $1 AND event_id = $2",
        member,
        event_id,
    ):
        report = await only(check_settings, traffic.members, "tiers-activity")
    assert report.clean, report.text()


async def test_a_redemption_whose_lots_do_not_add_up_breaks_the_settlement(
    traffic: Traffic, check_settings: Settings
) -> None:
    async with database(check_settings, "points") as points:
        row = await points.fetchrow(
            "DELETE FROM lot_movements m USING postings p WHERE p.member_id = $1 "
            "AND p.kind = 'redeem' AND p.unit = 'mall' AND m.member_id = p.member_id "
            "AND m.posting_id = p.posting_id RETURNING m.*",
            traffic.payer,
        )
        assert row is not None
        try:
            report = await only(check_settings, traffic.members, "settlement-ledger")
        finally:
            await points.execute(
                "INSERT INTO lot_movements (member_id, posting_id, lot_id, points, earned_unit, "
                "unit, posted_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                *(row[c] for c in ("member_id", "posting_id", "lot_id", "points")),
                *(row[c] for c in ("earned_unit", "unit", "posted_at")),
            )
    [finding] = found(report, "settlement-ledger")
    redeemed = int(finding.expected.split()[0])
    assert finding.detail == "unit mall"
    assert finding.found == f"{redeemed + row['points']} points flowed from lots"
    assert (await only(check_settings, traffic.members, "settlement-ledger")).clean


async def test_a_benefit_counted_twice_is_named(traffic: Traffic, check_settings: Settings) -> None:
    async with tampered(
        check_settings,
        "benefits",
        "UPDATE quota_usage SET used = used + 1 WHERE member_id = $1 AND benefit_code = $2 "
        "RETURNING used, period_key",
        "UPDATE quota_usage SET used = used - 1 WHERE member_id = $1 AND benefit_code = $2",
        traffic.payer,
        DRINK,
    ) as rows:
        report = await only(check_settings, traffic.members, "benefit-consumed-once")
    assert found(report, "benefit-consumed-once") == [
        Finding(
            "benefit-consumed-once",
            traffic.payer,
            f"{rows[0]['used'] - 1} uses",
            f"{rows[0]['used']} counted",
            f"benefit {DRINK}, period {rows[0]['period_key']}",
        )
    ]


async def test_a_coupon_issued_again_with_its_redemption_still_on_it_is_named(
    traffic: Traffic, check_settings: Settings
) -> None:
    async with tampered(
        check_settings,
        "benefits",
        "UPDATE coupons SET state = 'issued' WHERE member_id = $1 AND state = 'redeemed' "
        "RETURNING seq, template_code",
        "UPDATE coupons SET state = 'redeemed' WHERE member_id = $1 AND state = 'issued' "
        "AND redeemed_at IS NOT NULL",
        traffic.payer,
    ) as rows:
        report = await only(check_settings, traffic.members, "coupon-redeemed-once")
    assert found(report, "coupon-redeemed-once") == [
        Finding(
            "coupon-redeemed-once",
            traffic.payer,
            "no redemption",
            "issued with a redemption",
            f"coupon seq {rows[0]['seq']}, template {rows[0]['template_code']}",
        )
    ]


async def test_a_failed_reward_whose_points_were_kept_is_named(
    traffic: Traffic, check_settings: Settings
) -> None:
    async with tampered(
        check_settings,
        "benefits",
        "UPDATE reward_redemptions SET state = 'failed' WHERE member_id = $1 "
        "AND state = 'completed' RETURNING redemption_id, points",
        "UPDATE reward_redemptions SET state = 'completed' WHERE member_id = $1 "
        "AND state = 'failed'",
        traffic.reward_buyer,
    ) as rows:
        report = await only(check_settings, traffic.members, "reward-paid-once")
    assert found(report, "reward-paid-once") == [
        Finding(
            "reward-paid-once",
            traffic.reward_buyer,
            "nothing kept",
            f"1 debits, {rows[0]['points']} points kept",
            f"reward:{rows[0]['redemption_id']}",
        )
    ]


async def test_outbox_rows_unpublished_past_the_bound_are_counted_beyond_the_limit(
    traffic: Traffic, check_settings: Settings
) -> None:
    async with database(check_settings, "points") as points:
        # The relay takes this lock for each batch: held here, nothing is published meanwhile.
        await points.execute("SELECT pg_advisory_lock($1)", RELAY_LOCK_KEY)
        try:
            seqs = [
                await points.fetchval(
                    "INSERT INTO kit_outbox (event_id, subject, event_type, payload, created_at) "
                    "VALUES ($1, 'check.test', 'loyalty.test.v1.Nothing', '', "
                    "now() - make_interval(secs => $2)) RETURNING seq",
                    uuid.uuid4(),
                    age,
                )
                for age in (3600, 7200, 10)
            ]
            report = await only(
                check_settings, traffic.members, "outbox-published", limit=1, outbox_bound=60
            )
            await points.execute("DELETE FROM kit_outbox WHERE seq = ANY($1)", seqs)
        finally:
            await points.execute("SELECT pg_advisory_unlock($1)", RELAY_LOCK_KEY)
    [result] = report.results
    assert (result.total, result.more) == (2, 1)  # the row 10 s old is within the bound
    [first] = result.findings
    assert (first.member_id, first.expected) == ("", "published within 60 s")
    assert first.found.startswith("unpublished for 36")
    assert f"outbox seq {seqs[0]}, loyalty.test.v1.Nothing" in first.detail


async def test_a_checkout_left_in_a_state_nothing_recovers_is_named(
    traffic: Traffic, check_settings: Settings
) -> None:
    stuck = str(uuid.uuid4())
    async with tampered(
        check_settings,
        "gateway",
        "INSERT INTO checkouts (checkout_id, scope, request_id, fingerprint, client_id, unit, "
        "order_id, member_id, request, attempt, state, created_at, updated_at) "
        "SELECT $2::uuid, scope, request_id || '-stuck', fingerprint, client_id, unit, order_id, "
        "member_id, request, attempt, 'paying', now() - interval '1 hour', "
        "now() - interval '1 hour' FROM checkouts WHERE member_id = $1 LIMIT 1 "
        "RETURNING unit, order_id",
        "DELETE FROM checkouts WHERE member_id = $1 AND checkout_id = $2",
        traffic.payer,
        stuck,
    ) as rows:
        report = await only(check_settings, traffic.members, "checkout-final")
    [finding] = found(report, "checkout-final")
    assert finding.member_id == traffic.payer
    assert finding.expected == "completed, open or refunded"
    assert finding.found.startswith("paying for 3")
    assert finding.detail == (
        f"checkout {stuck}, attempt 1, unit {rows[0]['unit']}, order {rows[0]['order_id']}"
    )


async def test_a_posting_insights_never_kept_is_named_by_its_id(
    traffic: Traffic, check_settings: Settings
) -> None:
    member = traffic.shopper
    async with database(check_settings, "insights") as insights:
        row = await insights.fetchrow(
            "DELETE FROM ledger_postings WHERE (member_id, posting_id) = (SELECT member_id, "
            "posting_id FROM ledger_postings WHERE member_id = $1 ORDER BY posted_at LIMIT 1) "
            "RETURNING *",
            member,
        )
        assert row is not None
        try:
            report = await only(check_settings, traffic.members, "insights-ledger")
        finally:
            await insights.execute(
                "INSERT INTO ledger_postings (member_id, posting_id, kind, unit, points, "
                "posted_at, occurred_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                *(row[c] for c in ("member_id", "posting_id", "kind", "unit", "points")),
                row["posted_at"],
                row["occurred_at"],
            )
    [finding] = found(report, "insights-ledger")
    assert finding.member_id == member
    assert finding.detail == f"not counted: posting {row['posting_id']}"
    postings = int(finding.expected.split()[0])
    assert finding.found.startswith(f"{postings - 1} postings, ")
    assert (await only(check_settings, traffic.members, "insights-ledger")).clean


async def test_a_challenge_award_lost_or_posted_without_a_record_is_named(
    traffic: Traffic, check_settings: Settings
) -> None:
    member, name = traffic.shopper, f"Challenge {uuid.uuid4().hex[:8]}"
    challenge_id, lost = uuid.uuid4().hex, str(uuid.uuid4())
    unrecorded = str(uuid.uuid4())
    async with (
        database(check_settings, "engagement") as engagement,
        database(check_settings, "points") as points,
    ):
        await engagement.execute(
            "INSERT INTO challenges (challenge_id, unit, goal_kind, spec, start_at, created_at) "
            "VALUES ($1, 'group', 'purchases', $2::jsonb, now(), now())",
            challenge_id,
            f'{{"display_name": "{name}"}}',
        )
        await engagement.execute(
            "INSERT INTO challenge_completions (challenge_id, member_id, completion_key, "
            "period, completed_at, rewards) VALUES ($1, $2, 'once', '2026-12', now(), $3)",
            challenge_id,
            member,
            f"points:{lost} badge:explorer",
        )
        await points.execute(
            "INSERT INTO postings (member_id, posting_id, kind, points, pending, unit, channel, "
            "order_id, occurred_at, posted_at, reason, unrecovered_points) "
            "VALUES ($1, $2, 'adjust', 50, false, 'group', '', '', now(), now(), $3, 0)",
            member,
            unrecorded,
            name,
        )
        try:
            report = await only(check_settings, traffic.members, "engagement-points-once")
        finally:
            await points.execute("DELETE FROM postings WHERE posting_id = $1", unrecorded)
            await engagement.execute(
                "DELETE FROM challenge_completions WHERE challenge_id = $1", challenge_id
            )
            await engagement.execute("DELETE FROM challenges WHERE challenge_id = $1", challenge_id)
    assert sorted(found(report, "engagement-points-once"), key=lambda f: f.expected) == [
        Finding(
            "engagement-points-once",
            member,
            "an adjustment on the ledger",
            "none",
            f"challenges/{challenge_id}: posting {lost}",
        ),
        Finding(
            "engagement-points-once",
            member,
            "an award engagement recorded",
            "50 points unrecorded",
            f"{name}: posting {unrecorded}",
        ),
    ]
    assert (await only(check_settings, traffic.members, "engagement-points-once")).clean
