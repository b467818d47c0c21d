"""Property-based (hypothesis, stateful) tests of the ledger over real PostgreSQL.

Random sequences of earns (any unit, any past date), behaviour points (activities at any unit,
some over their limits), redemptions, refunds (whole or some lines),
cancelled redemptions, adjustments, transfers to a family member, partner exchanges both ways and
their reversal, legacy balances carried over from an import (any unit's rate, some expiring soon,
some legacy accounts imported again), pending activation and expiry, the family member's erasure
(once or again), with time moving forward. After every step, for
both members:
- available equals the sum of the open lots' remaining points; pending the pending lots';
- available + pending equals the sum of the member's postings;
- nothing is negative;
- settlement totals (issued - redeemed - expired - forfeited) equal the ledger's sum.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from loyalty_devstack.demo import huayue_programme
from loyalty_kit import db, migrations
from loyalty_kit.errors import DomainError
from loyalty_kit.jobs import Chunks
from loyalty_kit.kernel.members import MemberState
from loyalty_kit.settings import Settings
from loyalty_points.domain.migration import ImportedChunk, LegacyBalance
from loyalty_points.domain.money import Amount
from loyalty_points.domain.programme import Line
from loyalty_points.entrypoints.convert import programme_from
from loyalty_points.service_layer import (
    activities,
    consumers,
    earning,
    jobs,
    migration,
    moves,
    programmes,
    settlement,
    spending,
)
from loyalty_points.service_layer.uow import PointsUnitOfWork
from sqlalchemy import text

START = datetime(2026, 1, 1, tzinfo=UTC)


class AlwaysActive:
    """Stands in for the identity service: every member asked about exists and is active."""

    async def state_of(self, member_id: str) -> tuple[MemberState, str] | None:
        return (MemberState.ACTIVE, "")


class World:
    """A private event loop and a fresh points database for the whole property run."""

    def __init__(self, settings: Settings) -> None:
        self.loop = asyncio.new_event_loop()
        name = f"props{uuid.uuid4().hex[:6]}"
        self.run(db.ensure_database(settings.server_url, settings.database_for(name)))
        self.engine = db.create_engine(settings.service_database_url(name), pool_size=2)
        self.sessions = db.session_factory(self.engine)
        self.run(migrations.upgrade(self.engine, "loyalty_points:migrations"))
        self.run(
            self.transaction(
                lambda uow: programmes.publish_programme(
                    uow, programme_from(huayue_programme(), START), "properties", START
                )
            )
        )

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    async def transaction(self, work: Callable[[PointsUnitOfWork], Any]) -> Any:
        async with PointsUnitOfWork(self.sessions, "props") as uow:
            result = await work(uow)
            await uow.commit()
            return result

    def close(self) -> None:
        self.run(self.engine.dispose())
        self.loop.close()


@pytest.fixture(scope="module")
def world(settings: Settings) -> Any:
    created = World(settings)
    yield created
    created.close()


def test_the_ledger_always_reconciles(world: World) -> None:
    directory = AlwaysActive()

    class Ledger(RuleBasedStateMachine):
        @initialize()
        def new_member(self) -> None:
            self.member = str(uuid.uuid4())
            self.family = str(uuid.uuid4())
            self.now = START
            self.orders: list[tuple[str, str, list[str]]] = []
            self.redemptions: list[str] = []
            self.exchanges: list[str] = []

        def attempt(self, work: Callable[[PointsUnitOfWork], Any]) -> Any:
            try:
                return world.run(world.transaction(work))
            except DomainError:
                return None  # refused (insufficient points, already reversed...): fine

        @rule(
            unit=st.sampled_from(["mall", "hotel", "cinema", "estate"]),
            cents=st.lists(st.integers(1, 500_000), min_size=1, max_size=4),
            days_ago=st.integers(0, 900),
        )
        def earn(self, unit: str, cents: list[int], days_ago: int) -> None:
            order_id = uuid.uuid4().hex
            lines = [Line(str(i), Amount("CNY", Decimal(c) / 100)) for i, c in enumerate(cents)]
            command = earning.Earn(
                self.member,
                unit,
                "CHANNEL_POS",
                order_id,
                lines,
                self.now - timedelta(days=days_ago),
            )
            if self.attempt(lambda uow: earning.earn(uow, command, directory, self.now)):
                self.orders.append((unit, order_id, [line.line_id for line in lines]))

        @rule(
            kind=st.sampled_from(["check_in", "review", "profile_completed", "survey_answered"]),
            unit=st.sampled_from(["mall", "hotel", "cinema"]),
            hours_ago=st.integers(0, 24 * 60),
        )
        def activity_recorded(self, kind: str, unit: str, hours_ago: int) -> None:
            command = activities.Record(
                self.member,
                unit,
                kind,
                uuid.uuid4().hex,
                self.now - timedelta(hours=hours_ago),
                uuid.uuid4().hex,
                {"survey_id": str(hours_ago % 3)},
            )
            self.attempt(lambda uow: activities.record(uow, command, directory, self.now))

        @rule(points=st.integers(1, 5_000), unit=st.sampled_from(["mall", "cinema"]))
        def redeem(self, points: int, unit: str) -> None:
            done = self.attempt(
                lambda uow: spending.redeem(
                    uow, self.member, unit, "CHANNEL_APP", points, "", directory, self.now
                )
            )
            if done:
                self.redemptions.append(done[0].posting_id)

        @rule(data=st.data())
        def refund(self, data: st.DataObject) -> None:
            if not self.orders:
                return
            unit, order_id, line_ids = data.draw(st.sampled_from(self.orders))
            chosen = data.draw(
                st.lists(st.sampled_from(line_ids), unique=True, max_size=len(line_ids))
            )
            self.attempt(
                lambda uow: earning.reverse(
                    uow, self.member, unit, order_id, chosen, "refund", self.now
                )
            )

        @rule(data=st.data())
        def cancel_redemption(self, data: st.DataObject) -> None:
            if not self.redemptions:
                return
            posting_id = data.draw(st.sampled_from(self.redemptions))
            self.attempt(
                lambda uow: spending.cancel_redemption(uow, self.member, posting_id, "", self.now)
            )

        @rule(points=st.integers(-3_000, 3_000).filter(bool))
        def adjust(self, points: int) -> None:
            self.attempt(
                lambda uow: spending.adjust(
                    uow, self.member, "mall", points, "property test", directory, self.now
                )
            )

        @rule(points=st.integers(1, 20_000), back=st.booleans())
        def transfer(self, points: int, back: bool) -> None:
            sender, receiver = (self.family, self.member) if back else (self.member, self.family)
            self.attempt(
                lambda uow: moves.transfer(
                    uow, sender, receiver, points, "family", directory, self.now
                )
            )

        @rule(units=st.integers(100, 600))
        def exchange_out(self, units: int) -> None:
            done = self.attempt(
                lambda uow: moves.exchange_to_partner(
                    uow, self.member, "skyair", units * 10, "SA-1", directory, self.now
                )
            )
            if done:
                self.exchanges.append(done[0].posting_id)

        @rule(units=st.integers(1, 500))
        def exchange_in(self, units: int) -> None:
            done = self.attempt(
                lambda uow: moves.exchange_from_partner(
                    uow, self.member, "skyair", units, uuid.uuid4().hex, directory, self.now
                )
            )
            if done:
                self.exchanges.append(done[0].posting_id)

        @rule(data=st.data())
        def reverse_exchange(self, data: st.DataObject) -> None:
            if not self.exchanges:
                return
            posting_id = data.draw(st.sampled_from(self.exchanges))
            self.attempt(
                lambda uow: moves.reverse_partner_exchange(
                    uow, self.member, posting_id, "", self.now
                )
            )

        @rule(
            unit=st.sampled_from(["mall", "hotel", "cinema"]),
            legacy_points=st.integers(1, 200_000),
            account=st.integers(0, 5),  # a few legacy accounts: some come in twice
            family=st.booleans(),
            expires_in_days=st.none() | st.integers(-30, 400),
        )
        def legacy_balance_imported(
            self,
            unit: str,
            legacy_points: int,
            account: int,
            family: bool,
            expires_in_days: int | None,
        ) -> None:
            expires = None
            if expires_in_days is not None:
                expires = self.now + timedelta(days=expires_in_days)
            member = self.family if family else self.member
            balance = LegacyBalance(member, f"{self.member}:{account}", legacy_points, expires)
            chunk = ImportedChunk("memberImports/props", unit, self.now, (balance,))
            self.attempt(lambda uow: migration.carry_over(uow, chunk, self.now))

        @rule()
        def family_member_erased(self) -> None:
            world.run(
                world.transaction(
                    lambda uow: consumers.on_member_erased(uow, self.family, self.now)
                )
            )

        @rule(days=st.integers(1, 400))
        def time_passes(self, days: int) -> None:
            self.now += timedelta(days=days)
            world.run(
                jobs.run_in_chunks(
                    lambda: PointsUnitOfWork(world.sessions, "props"),
                    lambda uow, size: jobs.activate_pending_chunk(uow, self.now, size, self.now),
                    Chunks(50),
                )
            )
            world.run(
                jobs.run_in_chunks(
                    lambda: PointsUnitOfWork(world.sessions, "props"),
                    lambda uow, size: jobs.expire_chunk(uow, self.now, size, self.now),
                    Chunks(50),
                )
            )

        @invariant()
        def balances_reconcile(self) -> None:
            for member in (self.member, self.family):
                figures = world.run(self.figures(member))
                if figures is None:
                    continue
                available, pending, open_lots, pending_lots, postings = figures
                assert available == open_lots
                assert pending == pending_lots
                assert available + pending == postings
                assert available >= 0 and pending >= 0

        async def figures(self, member: str) -> tuple[int, ...] | None:
            async with world.engine.connect() as conn:
                account = (
                    await conn.execute(
                        text("SELECT available, pending FROM accounts WHERE member_id = :m"),
                        {"m": member},
                    )
                ).first()
                if account is None:
                    return None
                sums = (
                    await conn.execute(
                        text(
                            """
                            SELECT
                              (SELECT coalesce(sum(remaining), 0) FROM lots
                                WHERE member_id = :m AND status = 'open'),
                              (SELECT coalesce(sum(remaining), 0) FROM lots
                                WHERE member_id = :m AND status = 'pending'),
                              (SELECT coalesce(sum(points), 0) FROM postings WHERE member_id = :m)
                            """
                        ),
                        {"m": member},
                    )
                ).one()
                return (account.available, account.pending, *map(int, sums))

        @invariant()
        def settlement_matches_the_ledger(self) -> None:
            report = world.run(
                world.transaction(
                    lambda uow: settlement.settlement(
                        uow, START - timedelta(days=1), self.now + timedelta(days=1), self.now
                    )
                )
            )
            issued = sum(f.issued for f in report.units.values())
            redeemed = sum(f.redeemed for f in report.units.values())
            expired = sum(f.expired for f in report.units.values())
            forfeited = sum(f.forfeited for f in report.units.values())
            assert issued - redeemed - expired - forfeited == report.ledger_points

    Ledger.TestCase.settings = settings(
        max_examples=25,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    Ledger.TestCase().runTest()
