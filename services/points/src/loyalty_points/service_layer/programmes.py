"""Publishing a new version of the programme's rules."""

from __future__ import annotations

from datetime import datetime, timedelta

from loyalty_kit.errors import FieldViolation, InvalidArgument

from loyalty_points.domain.events import ProgrammePublished
from loyalty_points.domain.programme import Programme
from loyalty_points.service_layer.ports import PointsWork


async def publish_programme(
    uow: PointsWork, programme: Programme, reason: str, now: datetime
) -> Programme:
    first = await uow.ledger.programme_version(1) is None
    # The first version may start in the past (a programme migrated from legacy systems, whose
    # offline receipts replay under it); later ones never do.
    if not first and programme.effective_from < now - timedelta(minutes=1):
        raise InvalidArgument.of(
            [
                FieldViolation(
                    "programme.effective_from",
                    "must not be in the past: rule changes never rewrite history",
                )
            ]
        )
    programme.validate()
    programme.version = await uow.ledger.add_programme(programme, reason)
    # Identity learns from it which units members may be registered at.
    uow.record(
        ProgrammePublished(
            programme.version,
            tuple(sorted(programme.units)),
            programme.effective_from,
            programme.base_currency,
            str(programme.currencies[programme.base_currency].point_value),
        )
    )
    return programme
