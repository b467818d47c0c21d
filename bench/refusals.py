"""Why the soak's valid calls were refused: refusals its own admin traffic explains, apart from
the rest.

The soak's random part calls every method, most of them as an admin, with member ids and phones
drawn from the same vocabulary as its valid part: it suspends, merges, erases and unlinks the
very members the valid calls then use. A valid call refused because of that was refused
rightly. `Refusals` tells such a refusal from one nothing in the soak explains, and checks
rather than assumes: a refusal is `expected` when it names the member's state or absence
(`MEMBER_REASONS`, as FAILED_PRECONDITION or NOT_FOUND) and either the random part changed that
member or phone in a call that succeeded (`CHANGING_METHODS`), or the identity service, asked
right after the refusal, says the member is no longer active. Every other refusal is
`unexpected`. Both are counted by the valid call's kind, the status code and the ErrorInfo
reason ("earn FAILED_PRECONDITION MEMBER_MERGED").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import Message
from loyalty_kit.status import error_info, from_rpc_error

# Calls of the random part that change who a member is or which identities it holds.
CHANGING_METHODS = frozenset(
    {
        "SuspendMember",
        "ReactivateMember",
        "MergeMembers",
        "UnmergeMembers",
        "EraseMember",
        "UnlinkIdentity",
    }
)
# What a service answers for a member that is not active, or no longer found by an identity.
MEMBER_REASONS = frozenset(
    {"MEMBER_SUSPENDED", "MEMBER_MERGED", "MEMBER_ERASED", "MEMBER_NOT_FOUND"}
)
MEMBER_CODES = frozenset({grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND})
LONGEST_NAME = 64  # longer strings of a request are no member id or phone


@dataclass(frozen=True)
class Subject:
    """A valid call: its kind, and the member (and phone, for a resolve) it concerns; empty
    for calls about no member (a ladder, an identity type, a registration)."""

    kind: str
    member_id: str = ""
    phone: str = ""


def reason_of(error: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason of a refusal ("" when it carries none)."""
    status = from_rpc_error(error)
    info = error_info(status) if status is not None else None
    return info.reason if info is not None else ""


def strings_of(message: Message) -> Iterator[str]:
    """Every string value of a message, nested messages and repeated fields included."""
    for descriptor, value in message.ListFields():
        values = value if descriptor.is_repeated else [value]
        for item in values:
            if isinstance(item, str):
                yield item
            elif isinstance(item, Message):
                yield from strings_of(item)


@dataclass
class Refusals:
    """`state_of(member_id)`: the member's state as the identity service tells it now
    (e.g. "MEMBER_STATE_ACTIVE"), or "" when it cannot be read."""

    state_of: Callable[[str], Awaitable[str]]
    changed: set[str] = field(default_factory=set)  # member ids and phones the soak changed
    expected: Counter[str] = field(default_factory=Counter)
    unexpected: Counter[str] = field(default_factory=Counter)

    def random_call_succeeded(self, method: str, request: Message) -> None:
        """Note the members and phones a successful call of the random part may have changed."""
        if method.rsplit("/", 1)[-1] not in CHANGING_METHODS:
            return
        for text in strings_of(request):
            if len(text) <= LONGEST_NAME:
                self.changed.add(text.strip().removeprefix("members/"))

    async def judge(self, subject: Subject, error: grpc.aio.AioRpcError) -> bool:
        """Count a refused valid call as expected or not; True when expected."""
        reason = reason_of(error)
        key = f"{subject.kind} {error.code().name} {reason}".rstrip()
        explained = (
            error.code() in MEMBER_CODES
            and reason in MEMBER_REASONS
            and subject.member_id != ""
            and await self._explained(subject)
        )
        (self.expected if explained else self.unexpected)[key] += 1
        return explained

    async def _explained(self, subject: Subject) -> bool:
        if subject.member_id in self.changed or (subject.phone and subject.phone in self.changed):
            return True
        state = await self.state_of(subject.member_id)
        return state not in ("", "MEMBER_STATE_ACTIVE")

    def report(self) -> dict[str, Any]:
        """What the soak's result holds: totals, and each side by kind, code and reason."""
        return {
            "expected": sum(self.expected.values()),
            "unexpected": sum(self.unexpected.values()),
            "expected_by_reason": dict(self.expected.most_common()),
            "unexpected_by_reason": dict(self.unexpected.most_common()),
        }
