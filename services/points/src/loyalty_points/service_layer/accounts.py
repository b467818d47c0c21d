"""Finding a member's account (created on first touch after asking identity), the programme
in force, and the balance as the answers show it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from loyalty_kit.errors import FieldViolation, InvalidArgument
from loyalty_kit.validation import bounded

from loyalty_points.domain.account import MERGED, Account
from loyalty_points.domain.errors import MemberNotFound, NoProgramme
from loyalty_points.domain.programme import Programme
from loyalty_points.service_layer.ports import Ledger, MemberDirectory

MAX_POINTS = 10**12
MAX_MERGE_CHAIN = 16  # a merge chain longer than this is a loop made by bad data: stop


def utc_now() -> datetime:
    return datetime.now(UTC)


def check_points(points: int, field: str = "points") -> None:
    if points <= 0 or points > MAX_POINTS:
        raise InvalidArgument.of([FieldViolation(field, f"a whole number from 1 to {MAX_POINTS}")])


def check_order_id(order_id: str) -> None:
    bounded(order_id, "order_id")


async def open_account(
    ledger: Ledger, member_id: str, directory: MemberDirectory, now: datetime
) -> Account:
    """The member's account, locked; created on first touch after asking identity."""
    account = await ledger.account(member_id, lock=True)
    if account is None:
        known = await directory.state_of(member_id)
        if known is None:
            raise MemberNotFound(member_id)
        state, merged_into = known
        await ledger.create_account(Account(member_id, state, merged_into), now)
        account = await ledger.account(member_id, lock=True)
        assert account is not None
    return account


async def open_accounts(
    ledger: Ledger, member_ids: tuple[str, str], directory: MemberDirectory, now: datetime
) -> tuple[Account, Account]:
    """Two members' accounts, locked in member order (two transactions never lock in a
    cycle), answered in the order asked."""
    accounts = {m: await open_account(ledger, m, directory, now) for m in sorted(member_ids)}
    return accounts[member_ids[0]], accounts[member_ids[1]]


async def readable_account(
    ledger: Ledger, member_id: str, directory: MemberDirectory
) -> Account | None:
    """The member's account for a read (None: never touched here, but identity knows the
    member). An absorbed member is refused on reads as on writes (MEMBER_MERGED)."""
    account = await ledger.account(member_id)
    if account is None:
        known = await directory.state_of(member_id)
        if known is None:
            raise MemberNotFound(member_id)
        Account(member_id, *known).ensure_not_merged()
        return None
    account.ensure_not_merged()
    return account


async def surviving_member(ledger: Ledger, member_id: str, directory: MemberDirectory) -> str:
    """The member who speaks for `member_id` now: itself, or the survivor of the merges that
    absorbed it (followed along a chain; identity asked about a member points never saw)."""
    current = member_id
    for _ in range(MAX_MERGE_CHAIN):
        account = await ledger.account(current)
        if account is not None:
            state, merged_into = account.state, account.merged_into
        else:
            known = await directory.state_of(current)
            if known is None:
                return current
            state, merged_into = known
        if state != MERGED or not merged_into:
            return current
        current = merged_into
    return current


async def surviving_account(ledger: Ledger, member_id: str) -> Account | None:
    """The account that speaks for a member now, locked: its own, or the survivor's after a
    merge (followed along a chain of merges)."""
    account = await ledger.account(member_id, lock=True)
    for _ in range(MAX_MERGE_CHAIN):
        if account is None or account.state != MERGED or not account.merged_into:
            return account
        account = await ledger.account(account.merged_into, lock=True)
    return account


async def lock_holders(ledger: Ledger, member_ids: list[str], now: datetime) -> dict[str, Account]:
    """Each member's account of a chunk (of an import), locked (made if new); a member merged
    meanwhile (a replayed event) is held by its survivor, whose account is credited instead.
    One account object per member, however many of the chunk's members it holds."""
    loaded = await ledger.lock_accounts(member_ids, now)
    holders = {m: loaded[m] for m in member_ids}
    for _ in range(MAX_MERGE_CHAIN):
        absorbed = {m: a.merged_into for m, a in holders.items() if a.state == MERGED}
        survivors = {s for s in absorbed.values() if s}
        if not survivors:
            break
        missing = sorted(survivors - loaded.keys())
        if missing:
            loaded.update(await ledger.lock_accounts(missing, now))
        holders.update({m: loaded[s] for m, s in absorbed.items() if s})
    return holders


async def tier_at(ledger: Ledger, account: Account, at: datetime) -> str:
    """The tier whose multiplier a purchase made at `at` earns at: the one the member held then,
    as the programme's rules are the ones in force then (a receipt recorded late, an offline
    till replaying). The current tier, without a look-up, for anything since its change."""
    known = account.tier_known_at(at)
    return known if known is not None else await ledger.tier_at(account.member_id, at)


async def programme_at(ledger: Ledger, at: datetime) -> Programme:
    programme = await ledger.programme_at(at)
    if programme is None:
        raise NoProgramme()
    return programme


@dataclass
class BalanceView:
    account: Account
    expiring_soon: int
    until: datetime


async def balance(
    ledger: Ledger, member_id: str, within_days: int, directory: MemberDirectory, now: datetime
) -> BalanceView:
    if within_days < 0 or within_days > 3660:
        raise InvalidArgument.of([FieldViolation("expiring_within_days", "0 to 3660")])
    until = now + timedelta(days=within_days or 30)
    account = await readable_account(ledger, member_id, directory)
    if account is None:
        return BalanceView(Account(member_id), 0, until)
    return BalanceView(account, await ledger.expiring_soon(member_id, until), until)


async def view(ledger: Ledger, account: Account, now: datetime) -> BalanceView:
    """The balance a mutation answers with (points expiring within 30 days)."""
    until = now + timedelta(days=30)
    return BalanceView(account, await ledger.expiring_soon(account.member_id, until), until)
