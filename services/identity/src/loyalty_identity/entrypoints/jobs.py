"""The identity service's background work: its member-import and order-import workers,
forgetting the uses of member codes no till accepts any more and the wrong member codes no limit
counts any more, and carrying out the members' confirmed erasure requests whose cooling-off has
passed."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from loyalty_kit.jobs import every
from loyalty_kit.server import Job

from loyalty_identity.bootstrap import Identity
from loyalty_identity.service_layer.erasure import run_due_erasures
from loyalty_identity.service_layer.member_codes import forget_old_uses, forget_old_wrong_guesses

MEMBER_CODE_USES_SECONDS = 60.0
MEMBER_CODE_GUESSES_SECONDS = 60.0


def jobs(app: Identity) -> Sequence[Job]:
    stopping = app.context.stopping

    async def forget_member_code_uses() -> None:
        async with app.uow() as uow:
            await forget_old_uses(uow, app.clock())
            await uow.commit()

    async def forget_member_code_guesses() -> None:
        async with app.uow() as uow:
            await forget_old_wrong_guesses(uow, app.clock(), app.guess_limits)
            await uow.commit()

    async def carry_out_erasures() -> None:
        await run_due_erasures(app.uow, app.clock())

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
        partial(
            every,
            MEMBER_CODE_GUESSES_SECONDS,
            stopping,
            forget_member_code_guesses,
            "member-code-guesses",
        ),
        partial(every, app.erasure_sweep_seconds, stopping, carry_out_erasures, "erasure-requests"),
    ]
