"""What the checkout saga answers when it cannot answer yet."""

from __future__ import annotations

from loyalty_kit.errors import Aborted, DomainError, ErrorKind


class UndoPending(DomainError):
    kind = ErrorKind.UNAVAILABLE
    reason = "CHECKOUT_UNDO_PENDING"

    def __init__(self, checkout_id: str) -> None:
        super().__init__(
            "a part of this checkout could not be given back yet; the gateway will give it "
            "back shortly, then the request can be retried",
            metadata={"checkout_id": checkout_id, "retry_after_seconds": "5"},
        )


class InProgress(Aborted):
    reason = "CHECKOUT_IN_PROGRESS"

    def __init__(self, checkout_id: str, state: str) -> None:
        super().__init__(
            "this checkout is still being worked on (or given back): retry shortly",
            metadata={"checkout_id": checkout_id, "state": state, "retry_after_seconds": "2"},
        )
