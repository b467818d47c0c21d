"""The tiers service's refusals (the kit's interceptor turns them into google.rpc.Status)."""

from __future__ import annotations

from loyalty_kit.errors import AlreadyExists, FailedPrecondition, NotFound


class NoLadder(FailedPrecondition):
    reason = "NO_LADDER"

    def __init__(self) -> None:
        super().__init__("no tier ladder is in force: publish one with UpdateLadder")


class GrantNotFound(NotFound):
    reason = "GRANT_NOT_FOUND"

    def __init__(self) -> None:
        super().__init__("no such tier grant")


class MembershipOrderUsed(AlreadyExists):
    reason = "MEMBERSHIP_ORDER_USED"

    def __init__(self, unit: str, order_id: str) -> None:
        super().__init__(
            "this order already bought a membership",
            metadata={"unit": unit, "order_id": order_id},
        )


class MembershipOrderNotFound(NotFound):
    reason = "MEMBERSHIP_ORDER_NOT_FOUND"

    def __init__(self, unit: str, order_id: str) -> None:
        super().__init__(
            "no membership bought with this order by this member at this unit",
            metadata={"unit": unit, "order_id": order_id},
        )
