"""The console's member pages as use cases: finding a member, their 360 (every part asked in
parallel under one deadline, as the overview does), and the operator's actions on them.

- `classify(query)`: what a search text is (a member id, a phone, an e-mail, a card number or a
  unit's legacy number); anything else is a field violation on `query`.
- `Member360.find_members`: the members a query names, each as a masked summary.
- `Member360.member_360`: profile, identities and consents (with their history), balance, lots
  with expiry, a page of the statement, tier with progress, history and grants, entitlements and
  coupons, messages received, segments, challenges and badges. A part whose service fails is
  named in `unavailable`; the member not existing is the whole answer's NOT_FOUND.
- `MemberActions`: adjust points, grant or revoke a tier, issue a coupon, suspend or reactivate,
  merge or un-merge, erase. Each needs a non-blank reason and a request id (the backends'
  idempotency key), checks the member is in the caller's reach, and calls the backend with the
  caller's metadata. The reason goes in the request's own reason field where it has one, and
  always as the `x-loyalty-reason-bin` metadata: UTF-8 bytes under a binary key, so Chinese text
  travels as it is (gRPC text metadata is ASCII only).

Reach: a unit-scoped caller (a unit other than the group) may see and act on a member
registered at its unit or with postings there; any other member is PERMISSION_DENIED with the
reason `MEMBER_OUT_OF_REACH`. Group callers reach every member; the services still apply their
own rules (`AdjustPoints.unit`, admin-only RPCs).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import grpc
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from loyalty.identity.v1 import member_pb2
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_pb
from loyalty_kit.caller import PERSONAL_DATA_READ, Caller
from loyalty_kit.errors import FieldViolation, InvalidArgument, PermissionDenied, Violations
from loyalty_kit.idempotency import validate_request_id
from loyalty_kit.kernel.units import GROUP
from loyalty_kit.resources import MEMBERS, member_id_of

from loyalty_gateway.adapters.services import Call, Metadata, Services
from loyalty_gateway.flows.parallel import AT_LEAST_SECONDS

REASON_KEY = "x-loyalty-reason-bin"  # binary metadata: the reason's UTF-8 bytes
MAX_REASON = 500
OUT_OF_REACH = "MEMBER_OUT_OF_REACH"
STATEMENT_PAGE = 20
LIST_SHOWN = 50

# What a search text can be (the identity types identity starts with, migration 0002).
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE = re.compile(r"^\+?[0-9][0-9 -]{5,18}[0-9]$")
CARD = re.compile(r"^[0-9A-Z]{6,32}$")
LEGACY = re.compile(r"^([a-z][a-z0-9_-]{1,31}):([0-9A-Za-z_-]{1,64})$")
QUERY_HINT = "a member id, a phone, an e-mail, a card number or a legacy number ('<unit>:<no>')"
# Backend answers that mean "not this identity" rather than "the service is down".
NOT_THIS = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)


@dataclass(frozen=True)
class Query:
    """A classified search: a member's name, or the identities that may name one (in order)."""

    member: str = ""
    identities: tuple[member_pb2.Identity, ...] = ()


def _identity(kind: str, value: str) -> member_pb2.Identity:
    return member_pb2.Identity(type=kind, value=value)


def classify(query: str) -> Query:
    """What `query` names, or INVALID_ARGUMENT on `query`."""
    text = query.strip()
    if not text or len(text) > 200:
        _bad_query()
    name = text if text.startswith(MEMBERS) else f"{MEMBERS}{text}"
    try:
        return Query(member=f"{MEMBERS}{member_id_of(name, 'query')}")
    except InvalidArgument:
        pass
    if EMAIL.match(text):
        return Query(identities=(_identity("email", text),))
    if legacy := LEGACY.match(text):
        unit, number = legacy.groups()
        return Query(
            identities=(_identity("unit_member_no", text), _identity(f"legacy:{unit}", number))
        )
    found: list[member_pb2.Identity] = []
    digits = re.sub(r"[ -]", "", text)
    if PHONE.match(text) and 7 <= len(digits.lstrip("+")) <= 15:
        found.append(_identity("phone", text))
    if CARD.match(text):
        found.append(_identity("store_card", text))
    if not found:
        _bad_query()
    return Query(identities=tuple(found))


def _bad_query() -> NoReturn:
    raise InvalidArgument.of([FieldViolation("query", QUERY_HINT)])


def mask(value: str) -> str:
    """A value shown without giving it away: its last characters only."""
    if "@" in value:
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    keep = 4 if len(value) > 6 else 1
    return "*" * (len(value) - keep) + value[-keep:]


def masked(member: member_pb2.Member) -> member_pb2.Member:
    """`member` as a caller without personal_data:read sees it (identity's masking, applied
    again here when the answer came unmasked)."""
    if member.personal_data_masked:
        return member
    copy = member_pb2.Member()
    copy.CopyFrom(member)
    for identity in copy.identities:
        identity.value = mask(identity.value)
    full_name = copy.profile.full_name
    copy.profile.Clear()
    if full_name:
        copy.profile.full_name = full_name[:1] + "*" * (len(full_name) - 1)
    copy.personal_data_masked = True
    return copy


@dataclass(frozen=True)
class MemberSummary:
    """One search hit: the member's id and what identifies them, masked."""

    member: str
    member_id: str
    state: int
    registered_unit: str
    identities: tuple[tuple[str, str], ...]  # (type, masked value)
    full_name: str  # masked


def summary_of(member: member_pb2.Member) -> MemberSummary:
    shown = masked(member)
    return MemberSummary(
        member=shown.name,
        member_id=shown.member_id,
        state=shown.state,
        registered_unit=shown.registered_unit,
        identities=tuple((i.type, i.value) for i in shown.identities),
        full_name=shown.profile.full_name,
    )


@dataclass
class View360:
    """A member's 360: each part's answer by name, and the parts whose service failed."""

    member: member_pb2.Member
    parts: dict[str, Any] = field(default_factory=dict)
    unavailable: list[str] = field(default_factory=list)


def unit_scoped(caller: Caller) -> bool:
    return bool(caller.unit) and caller.unit != GROUP


class _Fatal(Exception):
    """A part's failure that is the whole answer's (the member is unknown, say)."""

    def __init__(self, error: grpc.aio.AioRpcError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class ReasonedCall(Call):
    """A call that also carries the operator's reason as binary metadata."""

    reason: str = ""

    async def ask(self, rpc: Callable[..., Awaitable[Any]], request: Message) -> Any:
        metadata = (*self.metadata, (REASON_KEY, self.reason.encode()))
        return await rpc(request, metadata=metadata, timeout=self.timeout())


@dataclass(frozen=True)
class Member360:
    services: Services
    deadline: float  # seconds, for all the parts together

    async def find_members(self, md: Metadata, query: str) -> list[MemberSummary]:
        """The members `query` names (none, one, or one per identity type it may be)."""
        wanted = classify(query)
        call = Call.within(md, self.deadline, AT_LEAST_SECONDS)
        if wanted.member:
            try:
                found = [(await self.services.get_member(call, wanted.member)).member]
            except grpc.aio.AioRpcError as error:
                if error.code() in NOT_THIS:
                    return []
                raise
        else:
            results = await asyncio.gather(
                *(self.services.resolve(call, i) for i in wanted.identities),
                return_exceptions=True,
            )
            found = []
            for result in results:
                if isinstance(result, grpc.aio.AioRpcError) and result.code() in NOT_THIS:
                    continue
                if isinstance(result, BaseException):
                    raise result
                found.append(result)
        seen: dict[str, MemberSummary] = {}
        for member in found:
            seen.setdefault(member.name, summary_of(member))
        return list(seen.values())

    async def check_reach(
        self, call: Call, caller: Caller, member: str, registered_unit: str | None
    ) -> None:
        """PERMISSION_DENIED unless a unit-scoped caller's unit registered the member or has
        postings of theirs (group callers reach everyone). `registered_unit` None: identity
        could not say, so only the postings count."""
        if not unit_scoped(caller) or registered_unit == caller.unit:
            return
        postings = await self.services.list_postings_at(call, member, caller.unit, 1)
        if postings.postings:
            return
        raise PermissionDenied(
            f"this member is not one of {caller.unit}'s: registered elsewhere, no postings there",
            reason=OUT_OF_REACH,
            metadata={"member": member, "unit": caller.unit},
        )

    async def member_360(
        self, md: Metadata, caller: Caller, member: str, statement_page_token: str = ""
    ) -> View360:
        """Every part of the member's 360 at once, under one deadline."""
        member_id = member_id_of(member, "member")
        services, call = self.services, Call.within(md, self.deadline, AT_LEAST_SECONDS)

        async def profile() -> Any:
            try:
                return await services.get_member(call, member)
            except grpc.aio.AioRpcError as error:
                if error.code() in (*NOT_THIS, grpc.StatusCode.PERMISSION_DENIED):
                    raise _Fatal(error) from error
                raise

        asks: dict[str, Callable[[], Awaitable[Any]]] = {
            "profile": profile,
            "consent_history": lambda: services.list_consent_events(call, member, LIST_SHOWN),
            "balance": lambda: services.get_balance(call, member),
            "lots": lambda: services.list_lots(call, member, LIST_SHOWN),
            "statement": lambda: services.list_postings(
                call, member, STATEMENT_PAGE, statement_page_token
            ),
            "tier": lambda: services.get_member_tier(call, member),
            "tier_history": lambda: services.list_tier_history(call, member, LIST_SHOWN, ""),
            "tier_grants": lambda: services.list_tier_grants(call, member, LIST_SHOWN, ""),
            "entitlements": lambda: services.list_entitlements(call, member, LIST_SHOWN),
            "coupons": lambda: services.list_coupons(call, member, LIST_SHOWN),
            "messages": lambda: services.list_messages(call, member_id, LIST_SHOWN),
            "segments": lambda: services.list_member_segments(call, member, LIST_SHOWN),
            "challenges": lambda: services.get_member_progress(call, member),
            "badges": lambda: services.list_member_badges(call, member),
        }
        names = list(asks)
        results = await asyncio.gather(*(asks[n]() for n in names), return_exceptions=True)
        view = View360(member=member_pb2.Member())
        for name, result in zip(names, results, strict=True):
            if isinstance(result, _Fatal):
                raise result.error
            if isinstance(result, grpc.aio.AioRpcError):
                view.unavailable.append(name)
            elif isinstance(result, BaseException):
                raise result
            else:
                view.parts[name] = result
        if "profile" in view.parts:
            found = view.parts["profile"].member
            await self.check_reach(call, caller, member, found.registered_unit)
            shown = found if caller.may(PERSONAL_DATA_READ) else masked(found)
            view.member = shown
            view.parts["profile"] = shown
            view.parts["identities"] = list(shown.identities)
            view.parts["consents"] = list(shown.consents)
        else:
            view.unavailable += ["identities", "consents"]
            await self.check_reach(call, caller, member, None)
        return view

    async def statement(
        self,
        md: Metadata,
        caller: Caller,
        member: str,
        page_token: str = "",
        *,
        unit: str = "",
        kind: points_pb.PostingKind.ValueType = points_pb.POSTING_KIND_UNSPECIFIED,
    ) -> points_pb.ListPostingsResponse:
        """One page of the member's statement (newest first), at one unit or all, of one kind
        or all."""
        member_id_of(member, "member")
        call = Call.within(md, self.deadline, AT_LEAST_SECONDS)
        found = (await self.services.get_member(call, member)).member
        await self.check_reach(call, caller, member, found.registered_unit)
        return await self.services.list_postings_at(
            call, member, unit, STATEMENT_PAGE, page_token, kind=kind
        )


def check_action(request_id: str, reason: str, *members: tuple[str, str]) -> Violations:
    """The problems every action shares: its request id, its reason and the members it names
    (field, name)."""
    problems = Violations()
    try:
        validate_request_id(request_id)
    except InvalidArgument as error:
        problems.items.extend(error.field_violations)
    if not reason.strip():
        problems.add("reason", "required: why this is done (kept with the change)")
    elif len(reason) > MAX_REASON:
        problems.add("reason", f"at most {MAX_REASON} characters")
    for name, member in members:
        try:
            member_id_of(member, name)
        except InvalidArgument as error:
            problems.items.extend(error.field_violations)
    return problems


def new_request_id() -> str:
    """A request id for a console action (kept in its form, so a double submit is one)."""
    return f"console.{uuid.uuid4()}"


@dataclass(frozen=True)
class MemberActions:
    """The operator's actions on a member, each with a reason and a request id."""

    reads: Member360

    @property
    def services(self) -> Services:
        return self.reads.services

    async def _prepare(
        self, md: Metadata, caller: Caller, reason: str, *members: str
    ) -> ReasonedCall:
        """The call for an action, once every named member is in the caller's reach."""
        base = Call.within(md, self.reads.deadline, AT_LEAST_SECONDS)
        call = ReasonedCall(base.metadata, base.timeout, reason.strip())
        for member in members:
            found = (await self.services.get_member(call, member)).member
            await self.reads.check_reach(call, caller, member, found.registered_unit)
        return call

    async def adjust_points(
        self,
        md: Metadata,
        caller: Caller,
        member: str,
        *,
        unit: str,
        points: int,
        request_id: str,
        reason: str,
    ) -> Any:
        problems = check_action(request_id, reason, ("member", member))
        if points == 0:
            problems.add("points", "a signed, non-zero number of points")
        if not unit.strip():
            problems.add("unit", "the unit bearing the adjustment")
        problems.raise_if_any()
        call = await self._prepare(md, caller, reason, member)
        return await self.services.adjust_points(
            call, member, unit.strip(), points, request_id, reason.strip()
        )

    async def grant_tier(
        self,
        md: Metadata,
        caller: Caller,
        member: str,
        *,
        tier: str,
        kind: tiers_pb.GrantKind.ValueType,
        end_time: Timestamp,
        request_id: str,
        reason: str,
    ) -> Any:
        problems = check_action(request_id, reason, ("member", member))
        if not tier.strip():
            problems.add("tier", "the tier granted")
        problems.raise_if_any()
        call = await self._prepare(md, caller, reason, member)
        grant = tiers_pb.TierGrant(
            tier=tier.strip(), kind=kind, reason=reason.strip(), end_time=end_time
        )
        return await self.services.create_tier_grant(call, member, grant, request_id)

    async def revoke_tier(
        self, md: Metadata, caller: Caller, grant: str, *, request_id: str, reason: str
    ) -> Any:
        member = "/".join(grant.split("/")[:2])
        problems = check_action(request_id, reason)
        if not grant.startswith(MEMBERS) or "/tierGrants/" not in grant:
            problems.add("grant", "a tier grant: members/{id}/tierGrants/{grant_id}")
        problems.raise_if_any()
        call = await self._prepare(md, caller, reason, member)
        return await self.services.revoke_tier_grant(call, grant, request_id, reason.strip())

    async def issue_coupon(
        self,
        md: Metadata,
        caller: Caller,
        member: str,
        *,
        template: str,
        request_id: str,
        reason: str,
    ) -> Any:
        """One coupon of `template` to the member (the request has no reason field: the
        reason travels in the metadata only)."""
        problems = check_action(request_id, reason, ("member", member))
        if not template.strip():
            problems.add("template", "the coupon template's code")
        problems.raise_if_any()
        call = await self._prepare(md, caller, reason, member)
        return await self.services.issue_coupons(call, template.strip(), [member], request_id)

    async def suspend(
        self, md: Metadata, caller: Caller, member: str, *, request_id: str, reason: str
    ) -> Any:
        check_action(request_id, reason, ("member", member)).raise_if_any()
        call = await self._prepare(md, caller, reason, member)
        return await self.services.suspend_member(call, member, request_id, reason.strip())

    async def reactivate(
        self, md: Metadata, caller: Caller, member: str, *, request_id: str, reason: str
    ) -> Any:
        check_action(request_id, reason, ("member", member)).raise_if_any()
        call = await self._prepare(md, caller, reason, member)
        return await self.services.reactivate_member(call, member, request_id, reason.strip())

    async def merge(
        self,
        md: Metadata,
        caller: Caller,
        survivor: str,
        absorbed: str,
        *,
        request_id: str,
        reason: str,
    ) -> Any:
        problems = check_action(request_id, reason, ("survivor", survivor), ("absorbed", absorbed))
        if survivor == absorbed:
            problems.add("absorbed", "another member than the survivor")
        problems.raise_if_any()
        call = await self._prepare(md, caller, reason, survivor, absorbed)
        return await self.services.merge_members(
            call, survivor, absorbed, request_id, reason.strip()
        )

    async def unmerge(
        self,
        md: Metadata,
        caller: Caller,
        survivor: str,
        restored: str,
        identities: Sequence[member_pb2.Identity],
        *,
        request_id: str,
        reason: str,
    ) -> Any:
        problems = check_action(request_id, reason, ("survivor", survivor), ("restored", restored))
        if not identities:
            problems.add("identities", "at least one identity going back to the restored member")
        problems.raise_if_any()
        call = await self._prepare(md, caller, reason, survivor)
        return await self.services.unmerge_members(
            call, survivor, restored, identities, request_id, reason.strip()
        )

    async def erase(
        self, md: Metadata, caller: Caller, member: str, *, request_id: str, reason: str
    ) -> Any:
        check_action(request_id, reason, ("member", member)).raise_if_any()
        call = await self._prepare(md, caller, reason, member)
        return await self.services.erase_member(call, member, request_id, reason.strip())
