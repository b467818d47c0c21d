"""The identity service's background work: its member-import and order-import workers."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from loyalty_kit.server import Job

from loyalty_identity.bootstrap import Identity


def jobs(app: Identity) -> Sequence[Job]:
    stopping = app.context.stopping
    return [partial(worker.serve, stopping) for worker in app.importers] + [
        partial(worker.serve, stopping) for worker in app.order_importers
    ]
