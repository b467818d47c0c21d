"""The consents a member import gave its members (identity's `MembersImported` carries them)
reach insights' facts: a legacy member who had withdrawn the personalised-offers consent is left
out of targeting (`member_figures.offers_consent` false) from the import on, and the latest
decision wins whichever way round the import and the member's own change arrive."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

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


async def offers_consent(service: RunningService, member_id: str) -> bool | None:
    async with service.context.uow() as uow:
        conn = await driver_connection(uow.session)
        found: bool | None = await conn.fetchval(
            "SELECT offers_consent FROM member_figures WHERE member_id = $1", member_id
        )
    return found


async def imported(app: Insights, now: datetime, *members: identity_events.ImportedMember) -> None:
    chunk = identity_events.MembersImported(
        member_import=f"memberImports/{uuid.uuid4()}", unit="mall", members=members
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
