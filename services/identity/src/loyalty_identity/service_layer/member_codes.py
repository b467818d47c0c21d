"""Use cases of the member code (会员码): a member's code for now (its secret made on first use),
a rotation (a new secret and handle: every earlier code stops resolving), a till's scan
resolved once, and the uses of codes no longer accepted and the wrong guesses no longer counted
forgotten.

`rotate_member_code` is also what signing out everywhere runs; erasure deletes the secret with
the member's personal data (`Members.erase_personal_data`).
"""

from __future__ import annotations

from datetime import datetime

from loyalty_kit.errors import FieldViolation, InvalidArgument

from loyalty_identity.domain.errors import MemberNotFound
from loyalty_identity.domain.member import Member, MemberState
from loyalty_identity.domain.member_code import (
    ACCEPTED_STEPS,
    GUESS_CLOCK_SLACK,
    GuessLimits,
    IssuedCode,
    MemberCodeSecret,
    MemberCodeUnknown,
    MemberCodeUsed,
    parse,
    step_of,
)
from loyalty_identity.service_layer.ports import MemberCodeWork

MAX_REASON = 512
# A handle is 10 random digits: drawn again when taken (one chance in ten billion per member).
HANDLE_ATTEMPTS = 5
DEFAULT_GUESS_LIMITS = GuessLimits()


async def _member(uow: MemberCodeWork, member_id: str, *, lock: bool = False) -> Member:
    member = await uow.members.get(member_id, lock=lock)
    if member is None:
        raise MemberNotFound(member_id)
    member.ensure_changeable()  # merged and erased members have no code
    return member


async def _new_secret(uow: MemberCodeWork, member_id: str, now: datetime) -> MemberCodeSecret:
    """A new secret stored for a member who has none; the one stored meanwhile by a concurrent
    call, if any."""
    for _ in range(HANDLE_ATTEMPTS):
        secret = MemberCodeSecret.new(member_id)
        if await uow.member_codes.add(secret, now):
            return secret
        stored = await uow.member_codes.of_member(member_id)
        if stored is not None:
            return stored
    raise RuntimeError("no free member code handle found")  # ten billion handles: never


async def member_code(uow: MemberCodeWork, member_id: str, now: datetime) -> IssuedCode:
    """The member's code for now (a suspended member's too: a till sees the suspension, as
    with any identity); the secret is made on first use."""
    await _member(uow, member_id)
    secret = await uow.member_codes.of_member(member_id)
    if secret is None:
        secret = await _new_secret(uow, member_id, now)
    return secret.issue(now)


async def rotate_member_code(
    uow: MemberCodeWork, member_id: str, reason: str, now: datetime
) -> IssuedCode:
    """A new secret and handle for the member: codes made before stop resolving at once (an
    old handle is unknown). The member's code under the new secret."""
    if not reason.strip() or len(reason) > MAX_REASON:
        raise InvalidArgument.of(
            [FieldViolation("reason", f"required, at most {MAX_REASON} characters")]
        )
    await _member(uow, member_id, lock=True)  # one rotation of a member at a time
    await uow.member_codes.forget(member_id)
    secret = await _new_secret(uow, member_id, now)
    return secret.issue(now)


async def resolve_member_code(
    uow: MemberCodeWork,
    value: str,
    now: datetime,
    client: str = "",
    limits: GuessLimits = DEFAULT_GUESS_LIMITS,
) -> Member:
    """The member a scanned code names, once: MEMBER_CODE_MALFORMED (a field violation on
    `identity.value`), MEMBER_CODE_UNKNOWN (no such handle, or a code its secret never made),
    MEMBER_CODE_EXPIRED (right, but for a step no longer accepted), MEMBER_CODE_USED (scanned
    before), MEMBER_CODE_LOCKED (too many wrong codes lately for the handle, or from `client`,
    the calling client: nothing judged). The caller commits: the use is recorded in its
    transaction. A wrong code is counted for the handle and the client, committed here before
    the refusal is raised."""
    scanned = parse(value, "identity.value")
    # One read: the secret, held until the commit (the handle's scans take turns), and the
    # wrong guesses counted against the handle and the client.
    since, until = now - limits.longest, now + GUESS_CLOCK_SLACK
    found = await uow.member_codes.lookup(scanned.handle, client, since, until)
    limits.check(found.handle_wrong, found.client_wrong, now)
    secret = found.secret
    try:
        if secret is None:
            raise MemberCodeUnknown()
        step = secret.step_scanned(scanned, now)
    except MemberCodeUnknown:
        handles: list[str] = []
        if secret is not None:  # read again now that the handle is held: none is missed
            handle_wrong, _ = await uow.member_codes.wrong_guesses(
                scanned.handle, client, since, until
            )
            limits.check(handle_wrong, found.client_wrong, now)
            handles.append(scanned.handle)
        # A handle nobody holds counts for the client only (it locks nothing of anyone's).
        await uow.member_codes.add_wrong_guess(handles, client, now)
        await uow.commit()
        raise
    # The use is claimed unless the handle's wrong guesses, read again now that it is held,
    # reached the limit (guesses committed while this scan waited its turn count too). The
    # primary key decides between concurrent scans of one code: the second conflicts.
    per_handle = limits.per_handle
    claimed, handle_wrong = await uow.member_codes.claim(
        secret.handle, step, now, (now - per_handle.window, until), per_handle.count
    )
    if not claimed:
        limits.check(handle_wrong, [], now)
        raise MemberCodeUsed()
    member = await uow.members.get(secret.member_id)
    if member is None or member.state in (MemberState.MERGED, MemberState.ERASED):
        raise MemberCodeUnknown()
    return member


async def forget_old_uses(uow: MemberCodeWork, now: datetime) -> int:
    """Uses of codes no till accepts any more are forgotten (a handle and a step), with a step
    to spare for replicas whose clocks differ by a little."""
    return await uow.member_codes.prune(step_of(now) - ACCEPTED_STEPS)


async def forget_old_wrong_guesses(
    uow: MemberCodeWork, now: datetime, limits: GuessLimits = DEFAULT_GUESS_LIMITS
) -> int:
    """Wrong guesses that count for no scan any more (older than the longest window, with the
    clocks' slack) are forgotten."""
    return await uow.member_codes.forget_wrong_guesses(limits.forgettable_before(now))
