"""What a member import tells insights beyond the members (identity's `MembersImported`): the
consents its rows gave (a legacy member who had withdrawn the personalised-offers consent is
left out of targeting, `member_figures.offers_consent` false, from the import on; the latest
decision wins whichever way round the import and the member's own change arrive), and when each
legacy account joined its unit's programme (the member's registration, so its cohort, is the
earliest of its own and its legacy accounts')."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from loyalty.identity.v1 import events_pb2 as identity_events
from loyalty_insights.bootstrap import Insights
from loyalty_insights.entrypoints.consumers import consent_changed, members_imported
from loyalty_kit.db import driver_connection
from loyalty_kit.server import RunningService
from loyalty_kit.timestamps import timestamp

from tests.insights.conftest import Suite

pytestmark = pytest.mark.asyncio(loop_scope="session")

OFFERS = "CONSENT_PURPOSE_PERSONALISED_OFFERS"
SMS = "CONSENT_PURPOSE_MARKETING_SMS"


async def registered(service: RunningService, member_id: str) -> tuple[datetime, str] | None:
    async with service.context.uow() as uow:
        conn = await driver_connection(uow.session)
        found = await conn.fetchrow(
            "SELECT registered_at, registered_unit FROM member_figures WHERE member_id = $1",
            member_id,
        )
    return (found["registered_at"], found["registered_unit"]) if found else None


async def offers_consent(service: RunningService, member_id: str) -> bool | None:
    async with service.context.uow() as uow:
        conn = await driver_connection(uow.session)
        found: bool | None = await conn.fetchval(
            "SELECT offers_consent FROM member_figures WHERE member_id = $1", member_id
        )
    return found


async def imported(
    app: Insights, now: datetime, *members: identity_events.ImportedMember, unit: str = "mall"
) -> None:
    chunk = identity_events.MembersImported(
        member_import=f"memberImports/{uuid.uuid4()}", unit=unit, members=members
    )
    chunk.imported_at.CopyFrom(timestamp(now))
    async with app.uow() as uow:
        await members_imported(app, uow, chunk)
        await uow.commit()


def consent(purpose: str, granted: bool, at: datetime) -> identity_events.ImportedConsent:
    return identity_events.ImportedConsent(
        purpose=purpose, granted=granted, changed_at=timestamp(at)
    )


async def test_an_imported_withdrawal_leaves_the_member_out_of_targeting(
    suite: Suite, insights_service: RunningService
) -> None:
    app: Insights = insights_service.root
    now = suite.clock()
    withdrew, granted, silent = (f"imported-{uuid.uuid4().hex[:12]}" for _ in range(3))
    await imported(
        app,
        now,
        identity_events.ImportedMember(
            member_id=withdrew,
            created=True,
            consents=[consent(OFFERS, False, now - timedelta(days=30)), consent(SMS, True, now)],
        ),
        identity_events.ImportedMember(
            member_id=granted, created=True, consents=[consent(OFFERS, True, now)]
        ),
        identity_events.ImportedMember(member_id=silent, created=True),
    )
    assert await offers_consent(insights_service, withdrew) is False
    assert await offers_consent(insights_service, granted) is True
    assert await offers_consent(insights_service, silent) is True  # no decision: not withdrawn

    # The member's own later decision wins; an import's older one arriving late does not undo it.
    change = identity_events.ConsentChanged(
        member_id=withdrew, purpose=OFFERS, granted=True, source="app"
    )
    change.changed_at.CopyFrom(timestamp(now))
    async with app.uow() as uow:
        await consent_changed(app, uow, change)
        await uow.commit()
    assert await offers_consent(insights_service, withdrew) is True
    await imported(
        app,
        now,
        identity_events.ImportedMember(
            member_id=withdrew, consents=[consent(OFFERS, False, now - timedelta(days=1))]
        ),
    )
    assert await offers_consent(insights_service, withdrew) is True


async def test_a_legacy_join_date_is_the_members_registration(
    suite: Suite, insights_service: RunningService
) -> None:
    app: Insights = insights_service.root
    now = suite.clock().replace(microsecond=0)
    since_2019, undated = (f"imported-{uuid.uuid4().hex[:12]}" for _ in range(2))
    joined = datetime(2019, 8, 15, tzinfo=UTC)
    await imported(
        app,
        now,
        identity_events.ImportedMember(
            member_id=since_2019, created=True, joined_at=timestamp(joined)
        ),
        identity_events.ImportedMember(member_id=undated, created=True),
    )
    assert await registered(insights_service, since_2019) == (joined, "mall")
    assert await registered(insights_service, undated) == (now, "mall")

    # The hotel's account of the same person joined earlier: the member joined then, there; a
    # later date (the cinema's) moves nothing.
    earlier = datetime(2017, 3, 1, tzinfo=UTC)
    await imported(
        app,
        now,
        identity_events.ImportedMember(member_id=since_2019, joined_at=timestamp(earlier)),
        identity_events.ImportedMember(member_id=undated, joined_at=timestamp(earlier)),
        unit="hotel",
    )
    await imported(
        app,
        now,
        identity_events.ImportedMember(
            member_id=since_2019, joined_at=timestamp(datetime(2021, 1, 1, tzinfo=UTC))
        ),
        unit="cinema",
    )
    assert await registered(insights_service, since_2019) == (earlier, "hotel")
    assert await registered(insights_service, undated) == (earlier, "hotel")


async def birthday_month(service: RunningService, member_id: str) -> int | None:
    async with service.context.uow() as uow:
        conn = await driver_connection(uow.session)
        found: int | None = await conn.fetchval(
            "SELECT month FROM birthdays WHERE member_id = $1", member_id
        )
    return found


async def test_one_import_naming_a_person_twice_keeps_the_last_rows_birthday(
    suite: Suite, insights_service: RunningService
) -> None:
    """Two legacy rows of one person in one chunk (the unit's file listed them twice): the
    chunk is taken (not dead-lettered), and the last row's birthday month stands."""
    app: Insights = insights_service.root
    twice = f"imported-{uuid.uuid4().hex[:12]}"
    await imported(
        app,
        suite.clock(),
        identity_events.ImportedMember(member_id=twice, created=True, birthday_month=3),
        identity_events.ImportedMember(member_id=twice, birthday_month=7),
    )
    assert await birthday_month(insights_service, twice) == 7
