"""The identity service's background work: its member-import and order-import workers, and
forgetting the uses of member codes no till accepts any more."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from loyalty_kit.jobs import every
from loyalty_kit.server import Job

from loyalty_identity.bootstrap import Identity
from loyalty_identity.service_layer.member_codes import forget_old_uses

MEMBER_CODE_USES_SECONDS = 60.0


def jobs(app: Identity) -> Sequence[Job]:
    stopping = app.context.stopping

    async def forget_member_code_uses() -> None:
        async with app.uow() as uow:
            await forget_old_uses(uow, app.clock())
            await uow.commit()

    return [
        *(partial(worker.serve, stopping) for worker in app.importers),
        *(partial(worker.serve, stopping) for worker in app.order_importers),
        partial(
            every,
            MEMBER_CODE_USES_SECONDS,
            stopping,
            forget_member_code_uses,
            "member-code-uses",
        ),
    ]
