"""What the points service does with other services' events: identity's (a member suspended,
reactivated, erased, merged, unmerged), tiers' (a tier changed) and engagement's (a badge
earned or revoked)."""

from __future__ import annotations

from datetime import datetime

from loyalty_points.domain import moves
from loyalty_points.domain.account import ERASED, Account
from loyalty_points.domain.ledger import LotStatus
from loyalty_points.service_layer.ports import Ledger, PointsWork


async def on_member_state(uow: PointsWork, member_id: str, state: str, now: datetime) -> None:
    account = await uow.ledger.account(member_id, lock=True)
    if account is None:
        await uow.ledger.create_account(Account(member_id, state), now)
    elif account.follow_state(state):
        await uow.ledger.save(account, now)


async def on_member_erased(uow: PointsWork, member_id: str, now: datetime) -> int:
    """The whole balance is forfeited (`Account.erase`); the account stays, erased, with the
    ledger (ids and amounts only). A redelivered event forfeits nothing. Answers the points
    forfeited."""
    account = await uow.ledger.account(member_id, lock=True)
    if account is None:
        await uow.ledger.create_account(Account(member_id, ERASED), now)
        return 0
    lots = await uow.ledger.lots(member_id, [LotStatus.OPEN, LotStatus.PENDING])
    forfeited = account.erase(lots, now)
    await uow.ledger.save(account, now)
    return forfeited


async def on_tier_changed(
    uow: PointsWork, member_id: str, tier: str, effective_at: datetime, now: datetime
) -> None:
    await uow.ledger.record_tier_change(member_id, effective_at, tier)  # late ones too
    account = await uow.ledger.account(member_id, lock=True)
    if account is None:
        await uow.ledger.create_account(
            Account(member_id, tier=tier, tier_effective_at=effective_at), now
        )
    elif account.change_tier(tier, effective_at):
        await uow.ledger.save(account, now)


async def on_badge_earned(uow: PointsWork, member_id: str, badge: str, at: datetime) -> None:
    """The member holds `badge` from `at`: campaigns for its holders apply to its orders since."""
    await uow.ledger.record_badge_earned(member_id, badge, at)  # late ones too


async def on_badge_revoked(uow: PointsWork, member_id: str, badge: str, at: datetime) -> None:
    """The member holds `badge` no more from `at` (orders before still count as held)."""
    await uow.ledger.record_badge_revoked(member_id, badge, at)


async def _both(
    ledger: Ledger, survivor_id: str, other_id: str, now: datetime
) -> tuple[Account, Account]:
    """Both accounts (created if new), locked in member order: no deadlocks."""
    for member_id in sorted((survivor_id, other_id)):
        await ledger.create_account(Account(member_id), now)
    accounts = {m: await ledger.account(m, lock=True) for m in sorted((survivor_id, other_id))}
    survivor, other = accounts[survivor_id], accounts[other_id]
    assert survivor is not None and other is not None
    return survivor, other


async def on_member_merged(
    uow: PointsWork, survivor_id: str, absorbed_id: str, now: datetime
) -> None:
    """The absorbed member's balances and lots move to the survivor (`moves.merge`)."""
    survivor, absorbed = await _both(uow.ledger, survivor_id, absorbed_id, now)
    # Engagement moves the absorbed member's badges to the survivor without announcing them:
    # the survivor holds them here too, since when the absorbed member did.
    await uow.ledger.copy_badges(absorbed_id, survivor_id)
    if moves.merge(survivor, absorbed, now):
        await uow.ledger.save(absorbed, now)
        await uow.ledger.save(survivor, now)


async def on_member_unmerged(
    uow: PointsWork, survivor_id: str, restored_id: str, now: datetime
) -> None:
    """What is left of the restored member's lots goes back to it (`moves.unmerge`); a
    redelivery changes nothing."""
    survivor, restored = await _both(uow.ledger, survivor_id, restored_id, now)
    taken_over = await uow.ledger.lots_from(survivor_id, restored_id)
    if moves.unmerge(survivor, restored, taken_over, now):
        await uow.ledger.save(survivor, now)
        await uow.ledger.save(restored, now)
