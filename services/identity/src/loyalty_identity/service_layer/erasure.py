"""Members asking to be erased themselves: a request with a cooling-off, confirmed by a code
sent to the member's phone (through engagement, as sign-in codes go), cancelled any time before
it runs, and carried out by the sweep through the one erasure (`handlers.erase`, which an
operator's EraseMember runs too).

Opening and cancelling run in the caller's unit of work (the servicer's, once per request id);
a confirmation opens its own, so a wrong code's attempt is committed before the refusal is
answered; the sweep opens one per member, so one member's failure stops no other.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from loyalty_kit.errors import FieldViolation, InvalidArgument
from loyalty_kit.idempotency import validate_request_id
from loyalty_kit.logs import get_logger

from loyalty_identity.domain.erasure import (
    MEMBER_MERGED,
    ErasureAlreadyRequested,
    ErasureRefused,
    ErasureRequest,
    ErasureRequestNotFound,
    NoPhoneToConfirm,
)
from loyalty_identity.domain.errors import MemberMerged, MemberNotFound
from loyalty_identity.domain.member import Member
from loyalty_identity.domain.sign_in import is_code, new_code
from loyalty_identity.service_layer import handlers
from loyalty_identity.service_layer.ports import IdentityWork

log = get_logger("loyalty.identity.erasure")
PHONE = "phone"
SWEEP_LIMIT = 100
MAX_SWEEP_LIMIT = 1000


class ErasureCodeSender(Protocol):
    async def send_erasure_code(self, phone: str, code: str, expires_at: datetime) -> None:
        """Send the confirmation code to the phone, or UNAVAILABLE."""
        ...


@dataclass(frozen=True)
class ErasurePorts:
    messages: ErasureCodeSender
    code_key: bytes  # the key confirmation codes are hashed under
    cooling_off: timedelta


Work = Callable[[], IdentityWork]


async def _member(uow: IdentityWork, member_id: str) -> Member:
    member = await uow.members.get(member_id, lock=True)
    if member is None:
        raise MemberNotFound(member_id)
    return member


def _phone(member: Member) -> str:
    phones = [
        linked.identity.value for linked in member.identities if linked.identity.type == PHONE
    ]
    if not phones:
        raise NoPhoneToConfirm()
    return phones[0]


async def request_erasure(
    uow: IdentityWork, ports: ErasurePorts, member_id: str, now: datetime
) -> ErasureRequest:
    """Open a request and send its code to the member's phone (engagement not answering:
    UNAVAILABLE, and the caller's transaction keeps nothing). Refused while one is open."""
    member = await _member(uow, member_id)  # locked: two requests at once take turns
    member.ensure_changeable()  # merged and erased members have nothing left to erase
    latest = await uow.erasures.latest(member_id, lock=True)
    if latest is not None:
        if latest.is_open(now):
            raise ErasureAlreadyRequested(latest)
        latest.replace(now)  # a dead one (its code expired unconfirmed) is cancelled
        await uow.erasures.save(latest)
    phone = _phone(member)
    code = new_code()
    request = ErasureRequest.open(
        str(uuid.uuid4()), member_id, ports.code_key, code, now, ports.cooling_off
    )
    await uow.erasures.add(request)
    await ports.messages.send_erasure_code(phone, code, request.code_expires_at)
    return request


async def _latest(uow: IdentityWork, member_id: str, *, lock: bool = False) -> ErasureRequest:
    found = await uow.erasures.latest(member_id, lock=lock)
    if found is None:
        if await uow.members.get(member_id) is None:
            raise MemberNotFound(member_id)
        raise ErasureRequestNotFound()
    return found


async def get_erasure_request(uow: IdentityWork, member_id: str) -> ErasureRequest:
    return await _latest(uow, member_id)


async def confirm_erasure(
    uow_factory: Work,
    ports: ErasurePorts,
    member_id: str,
    code: str,
    request_id: str,
    now: datetime,
) -> ErasureRequest:
    """Confirm the member's request with its code. A wrong code's attempt is committed before
    the refusal; a retry of the same call (its request id) counts no second attempt, and a
    confirmed request answers as it is."""
    problems: list[FieldViolation] = []
    if not is_code(code):
        problems.append(FieldViolation("code", "the 6 digits sent to the member's phone"))
    try:
        validate_request_id(request_id)
    except InvalidArgument as error:
        problems.extend(error.field_violations)
    if problems:
        raise InvalidArgument.of(problems)
    async with uow_factory() as uow:
        request = await _latest(uow, member_id, lock=True)
        refused = request.confirm(ports.code_key, code, now, request_id)
        await uow.erasures.save(request)
        await uow.commit()
    if refused is not None:
        raise refused
    return request


async def cancel_erasure(
    uow: IdentityWork, member_id: str, reason: str, now: datetime
) -> ErasureRequest:
    """Withdraw the member's request before it runs (a cancelled one answers as it is)."""
    request = await _latest(uow, member_id, lock=True)
    request.cancel(reason, now)
    await uow.erasures.save(request)
    return request


@dataclass(frozen=True)
class Sweeper:
    """Who runs the sweep, for the member audit log: the caller's unit and client, or the
    service's own job."""

    unit: str = ""
    client_id: str = "identity-erasure-sweep"


async def run_due_erasures(
    uow_factory: Work, now: datetime, limit: int = SWEEP_LIMIT, by: Sweeper = Sweeper()
) -> list[str]:
    """Carry out the confirmed requests whose cooling-off has passed, each member in a
    transaction of its own through the one erasure; the members erased. A request cancelled
    since it was listed is left alone; one whose member was merged meanwhile is cancelled."""
    if limit < 0 or limit > MAX_SWEEP_LIMIT:
        raise InvalidArgument.of([FieldViolation("limit", f"0 to {MAX_SWEEP_LIMIT}")])
    async with uow_factory() as uow:
        due = await uow.erasures.due(now, limit or SWEEP_LIMIT)
    erased: list[str] = []
    for member_id in due:
        async with uow_factory() as uow:
            request = await uow.erasures.latest(member_id, lock=True)
            if request is None:
                continue
            try:
                request.ensure_due(now)  # checked again under the lock
                await handlers.erase(uow, member_id, now)
            except ErasureRefused:
                continue
            except MemberMerged:
                request.cancel(MEMBER_MERGED, now)
                await uow.erasures.save(request)
                await uow.commit()
                continue
            await uow.members.audit(
                member_id,
                "erased",
                None,
                (by.unit, by.client_id),
                "the member's erasure request",
                {"erasure_request": request.erasure_id},
                now,
            )
            await uow.commit()
        erased.append(member_id)
        log.info("member erased on request", member_id=member_id)
    return erased
