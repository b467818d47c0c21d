"""Behaviour points: a member's activity recorded once per unit and activity ID, awarding the
programme's points within its limits.

The member's account is locked before the limits are counted, so two activities of one member
are decided one after the other and a limit of N awards N times however many arrive at once.
The activity is claimed (its unit and ID) before the account changes: a duplicate running at
the same time waits for the first to end and answers with what the first recorded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg
from loyalty_kit.clock import Clock
from loyalty_kit.errors import Violations
from loyalty_kit.idempotency import is_transient_conflict
from loyalty_kit.validation import bounded
from sqlalchemy.exc import DBAPIError

from loyalty_points.domain.account import Account
from loyalty_points.domain.activities import (
    RecordedActivity,
    check_activity,
    counts_for,
    decide,
    rule_for,
)
from loyalty_points.domain.errors import ActivityIdReused
from loyalty_points.domain.ledger import new_id
from loyalty_points.service_layer.accounts import open_account, programme_at
from loyalty_points.service_layer.ports import MemberDirectory, PointsWork

# A till's clock may run a little ahead of ours; an activity further in the future is refused.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class Record:
    member_id: str
    unit: str
    activity_type: str
    activity_id: str
    occurred_at: datetime | None  # None: now
    fingerprint: str  # of the request as sent
    attributes: dict[str, str] = field(default_factory=dict)


class ActivityTaken(Exception):
    """The activity ID was claimed by a transaction that ended meanwhile: answer with its."""


async def record_once(
    uow: Callable[[], PointsWork],
    command: Record,
    directory: MemberDirectory,
    clock: Clock,
    attempts: int = 3,
) -> RecordedActivity:
    """`record` in a transaction of its own, again when the activity ID was taken meanwhile
    (the run that took it has committed: this one answers with its outcome) or a concurrent
    transaction conflicted."""
    for attempt in range(1, attempts + 1):
        try:
            async with uow() as work:
                recorded, _ = await record(work, command, directory, clock())
                await work.commit()
            return recorded
        except ActivityTaken:
            continue
        except (DBAPIError, asyncpg.PostgresError) as error:
            if attempt == attempts or not is_transient_conflict(error):
                raise
    raise AssertionError(f"activity {command.activity_id} taken {attempts} times over")


async def record(
    uow: PointsWork, command: Record, directory: MemberDirectory, now: datetime
) -> tuple[RecordedActivity, Account | None]:
    """The activity as recorded (the first time, or as a retry finds it) and the account it
    credited (None for a retry)."""
    problems = Violations()
    bounded(command.activity_id, "activity_id")
    if command.occurred_at is not None and command.occurred_at > now + CLOCK_SKEW:
        problems.add("occur_time", "must not be in the future")
    problems.raise_if_any()
    first = await uow.ledger.activity(command.unit, command.activity_id)
    if first is not None:
        return same_activity(first, command), None
    occurred_at = command.occurred_at or now
    programme = await programme_at(uow.ledger, occurred_at)
    if command.unit not in programme.units:
        problems.add("unit", f"unknown unit {command.unit!r}")
    else:
        check_activity(
            command.activity_type, command.attributes, programme.activities, command.unit, problems
        )
    problems.raise_if_any()

    account = await open_account(uow.ledger, command.member_id, directory, now)
    account.ensure_active()
    rule = rule_for(programme.activities, command.activity_type, command.unit)
    counted = []
    if rule is not None:
        asked = counts_for(rule, command.unit, occurred_at, command.attributes, programme.zone())
        for limit, count in asked:
            counted.append((limit, await uow.ledger.count_awarded(command.member_id, count)))
    award = decide(rule, command.unit, counted)
    activity = RecordedActivity(
        member_id=command.member_id,
        unit=command.unit,
        activity_type=command.activity_type,
        activity_id=command.activity_id,
        occurred_at=occurred_at,
        attributes=dict(command.attributes),
        fingerprint=command.fingerprint,
        recorded_at=now,
        programme_version=programme.version,
    )
    posting_id = new_id() if award.points > 0 else ""
    activity.settle(award, posting_id)
    if not await uow.ledger.claim_activity(activity):
        raise ActivityTaken()
    account.record_activity(activity, award, programme, now, posting_id)
    await uow.ledger.save(account, now)
    return activity, account


def same_activity(first: RecordedActivity, command: Record) -> RecordedActivity:
    """A retry of the first activity gets its answer; another activity under its ID is
    refused."""
    if first.fingerprint != command.fingerprint:
        raise ActivityIdReused(first.unit, first.activity_id, first.member_id, first.activity_type)
    return first
