"""The identity service's errors, in the domain's words. Each has a stable ErrorInfo reason."""

from __future__ import annotations

from loyalty_kit.errors import AlreadyExists, FailedPrecondition, NotFound


class MemberNotFound(NotFound):
    reason = "MEMBER_NOT_FOUND"

    def __init__(self, member_id: str) -> None:
        super().__init__(f"member {member_id} was not found", metadata={"member_id": member_id})


class NoMemberWithIdentity(NotFound):
    reason = "MEMBER_NOT_FOUND"

    def __init__(self, identity_type: str) -> None:
        super().__init__(
            f"no member has this {identity_type}", metadata={"identity_type": identity_type}
        )


class IdentityNotLinked(NotFound):
    reason = "IDENTITY_NOT_FOUND"

    def __init__(self, member_id: str, identity_type: str) -> None:
        super().__init__(
            f"member {member_id} has no such {identity_type}",
            metadata={"member_id": member_id, "identity_type": identity_type},
        )


class IdentityAlreadyBound(AlreadyExists):
    """The identity belongs to another member (Link), or to several members (Register)."""

    reason = "IDENTITY_ALREADY_BOUND"


class MemberMerged(FailedPrecondition):
    reason = "MEMBER_MERGED"

    def __init__(self, member_id: str, merged_into: str) -> None:
        super().__init__(
            f"member {member_id} was merged into {merged_into}; use that member",
            metadata={"member_id": member_id, "merged_into": merged_into},
        )


class MemberErased(FailedPrecondition):
    reason = "MEMBER_ERASED"

    def __init__(self, member_id: str) -> None:
        super().__init__(f"member {member_id} was erased", metadata={"member_id": member_id})


class MemberSuspended(FailedPrecondition):
    reason = "MEMBER_SUSPENDED"

    def __init__(self, member_id: str) -> None:
        super().__init__(f"member {member_id} is suspended", metadata={"member_id": member_id})


class MemberNotSuspended(FailedPrecondition):
    reason = "MEMBER_NOT_SUSPENDED"

    def __init__(self, member_id: str) -> None:
        super().__init__(f"member {member_id} is not suspended", metadata={"member_id": member_id})


class LastIdentity(FailedPrecondition):
    reason = "LAST_IDENTITY"

    def __init__(
        self,
        member_id: str,
        message: str = "a member keeps at least one identity: link another before unlinking "
        "this one",
    ) -> None:
        super().__init__(message, metadata={"member_id": member_id})


class CannotMergeIntoItself(FailedPrecondition):
    reason = "MERGE_INTO_ITSELF"

    def __init__(self, member_id: str) -> None:
        super().__init__("a member cannot be merged into itself", metadata={"member_id": member_id})


class NotMergedInto(FailedPrecondition):
    """An unmerge names a member that is not (or no longer) merged into the survivor given."""

    reason = "NOT_MERGED_INTO"

    def __init__(self, member_id: str, survivor_id: str, merged_into: str) -> None:
        super().__init__(
            f"member {member_id} is not merged into {survivor_id}",
            metadata={"member_id": member_id, "survivor": survivor_id, "merged_into": merged_into},
        )
