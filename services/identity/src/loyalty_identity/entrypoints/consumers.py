"""The events the identity service learns from, as a handler table: the programme's business
units, from the points service's ProgrammePublished."""

from __future__ import annotations

from collections.abc import Sequence

from loyalty.points.v1 import events_pb2 as points_events
from loyalty_kit.inbox import EventConsumer, Subscription, consumers_of

from loyalty_identity.bootstrap import Identity
from loyalty_identity.service_layer import handlers
from loyalty_identity.service_layer.uow import IdentityUnitOfWork


async def programme_published(
    app: Identity, uow: IdentityUnitOfWork, e: points_events.ProgrammePublished
) -> None:
    await handlers.learn_programme(uow, list(e.units), e.version, app.clock())


TABLE: Sequence[Subscription[Identity]] = (
    Subscription(
        "identity-programme", "points", {points_events.ProgrammePublished: programme_published}
    ),
)


def consumers(app: Identity) -> list[EventConsumer]:
    return consumers_of(TABLE, app, app.uow, app.context.settings.event_namespace)
