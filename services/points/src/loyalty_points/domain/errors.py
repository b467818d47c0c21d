"""The points service's errors, in the domain's words."""

from __future__ import annotations

from loyalty_kit.errors import AlreadyExists, FailedPrecondition, NotFound
from loyalty_kit.errors import MemberNotActive as MemberNotActive


class MemberNotFound(NotFound):
    reason = "MEMBER_NOT_FOUND"

    def __init__(self, member_id: str) -> None:
        super().__init__(f"member {member_id} was not found", metadata={"member_id": member_id})


class OrderAlreadyEarned(AlreadyExists):
    reason = "ORDER_ALREADY_EARNED"

    def __init__(self, unit: str, order_id: str) -> None:
        super().__init__(
            f"order {order_id} of {unit} has already earned points",
            metadata={"unit": unit, "order_id": order_id},
        )


class PartnerReferenceUsed(AlreadyExists):
    reason = "PARTNER_REFERENCE_USED"

    def __init__(self, partner: str, reference: str, posting_id: str) -> None:
        super().__init__(
            f"{partner}'s transaction {reference} has already been credited",
            metadata={"partner": partner, "partner_reference": reference, "posting_id": posting_id},
        )


class OrderNotFound(NotFound):
    reason = "ORDER_NOT_FOUND"

    def __init__(self, unit: str, order_id: str) -> None:
        super().__init__(
            f"{unit} has no earned order {order_id} for this member",
            metadata={"unit": unit, "order_id": order_id},
        )


class PostingNotFound(NotFound):
    reason = "POSTING_NOT_FOUND"

    def __init__(self, posting_id: str) -> None:
        super().__init__(f"posting {posting_id} was not found", metadata={"posting_id": posting_id})


class NothingToReverse(FailedPrecondition):
    reason = "ALREADY_REVERSED"

    def __init__(self, order_id: str) -> None:
        super().__init__(
            f"the lines asked of order {order_id} are already reversed",
            metadata={"order_id": order_id},
        )


class RedemptionAlreadyCancelled(FailedPrecondition):
    reason = "REDEMPTION_ALREADY_CANCELLED"

    def __init__(self, posting_id: str) -> None:
        super().__init__(
            f"redemption {posting_id} was already cancelled", metadata={"posting_id": posting_id}
        )


class NoProgramme(FailedPrecondition):
    reason = "NO_PROGRAMME"

    def __init__(self) -> None:
        super().__init__("no programme rules are in force: publish them with UpdateProgramme")


class LimitExceeded(FailedPrecondition):
    reason = "LIMIT_EXCEEDED"


class AlreadyReversed(FailedPrecondition):
    reason = "ALREADY_REVERSED"

    def __init__(self, posting_id: str) -> None:
        super().__init__(
            f"exchange {posting_id} was already reversed", metadata={"posting_id": posting_id}
        )


class ActivityIdReused(AlreadyExists):
    reason = "ACTIVITY_ID_REUSED"

    def __init__(self, unit: str, activity_id: str, member_id: str, activity_type: str) -> None:
        super().__init__(
            f"activity {activity_id} of {unit} was already recorded with other details "
            f"({activity_type} of member {member_id}): an activity ID names one activity",
            metadata={
                "unit": unit,
                "activity_id": activity_id,
                "member_id": member_id,
                "activity_type": activity_type,
            },
        )
