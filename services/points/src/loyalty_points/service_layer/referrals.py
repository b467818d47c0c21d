"""Referral codes and the referrals a member made: the code made on the first ask, a code
resolved to its member for RecordReferral, and a referrer's referrals with what they paid.

A code stays with the member it was made for; a merge does not move it. While that member is
merged into another, the code speaks for the survivor: a referral by it is the survivor's,
and a survivor without a code of its own answers the one it absorbed. An unmerge gives the
code back with the member."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from loyalty_points.adapters.referral_codes import ReferralCodes, ReferralMade
from loyalty_points.domain.referral_codes import ReferralCodeNotFound, new_code
from loyalty_points.service_layer.accounts import readable_account, surviving_member
from loyalty_points.service_layer.ports import Ledger, MemberDirectory

# A fresh code collides with one of the 6.6 * 10^11 only by a rare chance; a few tries suffice.
ATTEMPTS = 5


class ReferralWork(Protocol):
    @property
    def ledger(self) -> Ledger: ...
    @property
    def referral_codes(self) -> ReferralCodes: ...


async def referral_code(
    uow: ReferralWork, member_id: str, directory: MemberDirectory, now: datetime
) -> tuple[str, datetime]:
    """The member's code, made now if it has none (the caller commits): its own, or else the
    oldest code of a member merged into it. A member identity does not know is
    MEMBER_NOT_FOUND, an absorbed one MEMBER_MERGED."""
    await readable_account(uow.ledger, member_id, directory)
    for _ in range(ATTEMPTS):
        found = await uow.referral_codes.code_of(member_id)
        if found is None:
            found = await uow.referral_codes.absorbed_code_of(member_id)
        if found is not None:
            return found
        code = new_code()
        if await uow.referral_codes.add(member_id, code, now):
            return code, now
    raise RuntimeError("no free referral code after several attempts")


async def referrer_of(uow: ReferralWork, code: str, directory: MemberDirectory) -> str:
    """The member a code refers for: the one it was made for, or the survivor of a merge
    that absorbed that member."""
    found = await uow.referral_codes.member_of(code)
    if found is None:
        raise ReferralCodeNotFound(code)
    return await surviving_member(uow.ledger, found, directory)


async def referrals_by(
    uow: ReferralWork,
    member_id: str,
    directory: MemberDirectory,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[ReferralMade]:
    await readable_account(uow.ledger, member_id, directory)
    return await uow.referral_codes.referrals_by(member_id, before, limit)
