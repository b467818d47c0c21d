"""Journeys as data, and the decisions about a member's entry that need no storage: does an
event trigger the journey, do its conditions hold, is the member in the control group, is the
member over the frequency cap. Pure Python: the service layer feeds it what it has read.

A journey's definition (`JourneySpec`) is versioned: an edit is a new version, and an entry
keeps the version it entered with. A step is one action or one wait (a delay, a daily window,
"until the next purchase or N days"), run in order; quiet hours defer messages, a budget caps
the points and coupons a journey gives in all (timing.py computes the due times)."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from loyalty_kit.errors import FieldViolation
from loyalty_kit.kernel.units import GROUP

from loyalty_engagement.domain.timing import DailyWindow, Schedule, known_zone, local_day

MAX_STEPS = 20


class TriggerKind(StrEnum):
    MEMBER_REGISTERED = "member_registered"
    PURCHASE = "purchase"
    TIER_CHANGED = "tier_changed"
    SEGMENT_ENTERED = "segment_entered"
    SEGMENT_LEFT = "segment_left"
    BIRTHDAY = "birthday"  # the member's birthday (month and day), by the daily sweep
    POINTS_EXPIRING = "points_expiring"  # points of a lot expire within `days`
    INACTIVE = "inactive"  # no purchase for `days`, once per inactivity spell
    SCHEDULE = "schedule"  # a segment's members at each occurrence of a schedule


SEGMENT_TRIGGERS = frozenset({TriggerKind.SEGMENT_ENTERED, TriggerKind.SEGMENT_LEFT})
# Entered by the service's own sweeps (the timer), not by one event.
SWEPT_TRIGGERS = frozenset(
    {TriggerKind.BIRTHDAY, TriggerKind.POINTS_EXPIRING, TriggerKind.INACTIVE, TriggerKind.SCHEDULE}
)
# Triggers that name a segment.
SEGMENT_NAMED = SEGMENT_TRIGGERS | {TriggerKind.SCHEDULE}
DAYS_TRIGGERS = frozenset({TriggerKind.POINTS_EXPIRING, TriggerKind.INACTIVE})


class JourneyState(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    PAUSED = "paused"
    ENDED = "ended"


class EntryState(StrEnum):
    PENDING = "pending"
    WAITING = "waiting"  # at a wait, deferred by quiet hours, or swept in: the timer runs it
    COMPLETED = "completed"
    HELD_OUT = "held_out"
    CAPPED = "capped"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class Trigger:
    kind: TriggerKind
    unit: str = ""  # purchase: only at this unit
    to_tier: str = ""  # tier changed: only to this tier
    segment: str = ""  # segment entered/left: "segments/{id}"
    days: int = 0  # points expiring within / inactive for this many days
    # tier changed: only for these reasons of tiers' TierChanged (empty: any), e.g. a welcome
    # gift on "qualified", not on "carried_over" (an import) or "downgraded"
    reasons: tuple[str, ...] = ()
    schedule: Schedule | None = None  # schedule: when `segment`'s members enter


@dataclass(frozen=True)
class Conditions:
    units: tuple[str, ...] = ()
    tiers: tuple[str, ...] = ()
    consents: tuple[str, ...] = ()  # consent purposes, by their contract name
    held_badges: tuple[str, ...] = ()  # the member holds every one of these
    lacking_badges: tuple[str, ...] = ()  # the member holds none of these

    @property
    def needs_badges(self) -> bool:
        return bool(self.held_badges or self.lacking_badges)

    @property
    def needs_member(self) -> bool:
        """Whether the member's consents must be read to judge them."""
        return bool(self.consents)


@dataclass(frozen=True)
class IssueCoupon:
    template: str
    unit: str = ""
    grant_key: str = ""  # at most one coupon per member under it, shared with benefits' grants

    def grant_key_at(self, at: datetime, time_zone: str) -> str:
        """The grant key for a coupon issued at `at`: `{year}` stands for the year there
        ("birthday:{year}" is one birthday coupon a year, benefits' own key for it)."""
        return self.grant_key.replace(YEAR, str(local_day(at, time_zone)[0]))


YEAR = "{year}"


@dataclass(frozen=True)
class AwardPoints:
    points: int
    funding_unit: str
    reason: str = ""


@dataclass(frozen=True)
class ChangeTags:
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class SendMessage:
    purpose: str  # the consent purpose it needs
    body: str
    channel: str = "dev"


Action = IssueCoupon | AwardPoints | ChangeTags | SendMessage


@dataclass(frozen=True)
class Delay:
    seconds: int


@dataclass(frozen=True)
class Window:
    """Go on only between two local times of day (the member's zone)."""

    window: DailyWindow


@dataclass(frozen=True)
class UntilPurchase:
    """Wait for the member's next purchase, at most `days`: a purchase goes on (or ends the
    entry, `exit_on_purchase`), the time running out goes on to the next step."""

    days: int
    exit_on_purchase: bool = False


Wait = Delay | Window | UntilPurchase
Step = Action | Wait
MAX_DELAY_SECONDS = 366 * 86400


@dataclass(frozen=True)
class Budget:
    """What a journey may give in all (0: no limit)."""

    points: int = 0
    coupons: int = 0


@dataclass(frozen=True)
class FrequencyCap:
    max_entries: int = 0  # 0: none
    period_days: int = 0

    @property
    def period(self) -> timedelta:
        return timedelta(days=self.period_days)


@dataclass(frozen=True)
class JourneySpec:
    """One version of a journey's definition."""

    display_name: str
    unit: str
    trigger: Trigger
    steps: tuple[Step, ...]
    conditions: Conditions = field(default_factory=Conditions)
    frequency_cap: FrequencyCap = field(default_factory=FrequencyCap)
    control_share: float = 0.0
    start_at: datetime | None = None
    end_at: datetime | None = None
    time_zone: str = ""  # IANA; "" : the programme's (timing.DEFAULT_TIME_ZONE)
    quiet_hours: DailyWindow | None = None
    budget: Budget = field(default_factory=Budget)

    def open_at(self, now: datetime) -> bool:
        """Entries are taken at `now` (between the start and the end)."""
        if self.start_at is not None and now < self.start_at:
            return False
        return self.end_at is None or now < self.end_at


@dataclass(frozen=True)
class TriggerEvent:
    """An event of another service as journeys see it. `key` names the event by its content
    (a posting, a tier change, a segment move), so a replay of it is the same entry."""

    kind: TriggerKind
    member_id: str
    key: str
    occurred_at: datetime
    unit: str = ""
    to_tier: str = ""
    segment: str = ""
    reason: str = ""  # a tier change's


@dataclass(frozen=True)
class MemberFacts:
    """What the conditions read of the member when the entry runs."""

    tier: str = ""
    consents: frozenset[str] = frozenset()
    badges: frozenset[str] = frozenset()


def validate(spec: JourneySpec, path: str = "journey") -> list[FieldViolation]:
    """Every problem of a definition, named by its field."""
    bad: list[FieldViolation] = []
    if not spec.display_name.strip():
        bad.append(FieldViolation(f"{path}.display_name", "is required"))
    if spec.trigger.kind in SEGMENT_NAMED and not spec.trigger.segment.startswith("segments/"):
        bad.append(FieldViolation(f"{path}.trigger.segment", 'must be "segments/{segment_id}"'))
    if not spec.steps:
        bad.append(FieldViolation(f"{path}.steps", "at least one step is required"))
    if len(spec.steps) > MAX_STEPS:
        bad.append(FieldViolation(f"{path}.steps", f"at most {MAX_STEPS} steps"))
    if not 0.0 <= spec.control_share <= 1.0 or spec.control_share != spec.control_share:
        bad.append(FieldViolation(f"{path}.control_share", "must be between 0 and 1"))
    cap = spec.frequency_cap
    if cap.max_entries < 0:
        bad.append(FieldViolation(f"{path}.frequency_cap.max_entries", "must not be negative"))
    if cap.max_entries > 0 and cap.period_days <= 0:
        bad.append(
            FieldViolation(f"{path}.frequency_cap.period_days", "must be positive with a cap")
        )
    if spec.start_at and spec.end_at and spec.end_at <= spec.start_at:
        bad.append(FieldViolation(f"{path}.end_time", "must be after start_time"))
    if spec.trigger.kind in DAYS_TRIGGERS and spec.trigger.days <= 0:
        bad.append(FieldViolation(f"{path}.trigger.days", "must be positive for this trigger"))
    if spec.trigger.kind is TriggerKind.SCHEDULE:
        bad += _schedule_violations(spec.trigger.schedule, f"{path}.trigger.schedule")
    elif spec.trigger.schedule is not None:
        bad.append(FieldViolation(f"{path}.trigger.schedule", "only for a SCHEDULE trigger"))
    for name, badges in (
        ("held_badges", spec.conditions.held_badges),
        ("lacking_badges", spec.conditions.lacking_badges),
    ):
        for i, badge in enumerate(badges):
            if not badge.strip() or len(badge) > 64:
                bad.append(
                    FieldViolation(f"{path}.conditions.{name}[{i}]", "a badge code, 1-64 chars")
                )
    if spec.time_zone and not known_zone(spec.time_zone):
        bad.append(FieldViolation(f"{path}.time_zone", "an IANA time zone, e.g. Asia/Shanghai"))
    if spec.quiet_hours is not None and spec.quiet_hours.start == spec.quiet_hours.end:
        bad.append(FieldViolation(f"{path}.quiet_hours", "start and end must differ"))
    if spec.budget.points < 0:
        bad.append(FieldViolation(f"{path}.budget.points", "must not be negative"))
    if spec.budget.coupons < 0:
        bad.append(FieldViolation(f"{path}.budget.coupons", "must not be negative"))
    for i, step in enumerate(spec.steps):
        bad += _step_violations(step, spec.unit, f"{path}.steps[{i}]")
    return bad


KEY = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def key_violations(key: str, path: str = "journey.key") -> list[FieldViolation]:
    """A journey's key (the programme file's name for it): empty (none) or lowercase letters,
    digits and "-", at most 63."""
    if key and not KEY.match(key):
        return [FieldViolation(path, 'lowercase letters, digits and "-", at most 63')]
    return []


def _schedule_violations(schedule: Schedule | None, path: str) -> list[FieldViolation]:
    if schedule is None or (schedule.at is None and schedule.once_at is None):
        return [FieldViolation(path, "a time_of_day or a once_time is required")]
    bad: list[FieldViolation] = []
    if schedule.once_at is not None and (schedule.at is not None or schedule.weekdays):
        bad.append(FieldViolation(f"{path}.once_time", "either once_time or time_of_day, not both"))
    for i, day in enumerate(schedule.weekdays):
        if not 1 <= day <= 7:
            bad.append(FieldViolation(f"{path}.days_of_week[{i}]", "MONDAY to SUNDAY"))
    return bad


def _acts_for(journey_unit: str, unit: str) -> bool:
    """A unit's journey acts for its own unit only; the group's for any."""
    return journey_unit == GROUP or unit == journey_unit


def _step_violations(step: Step, unit: str, path: str) -> list[FieldViolation]:
    bad: list[FieldViolation] = []
    match step:
        case Delay(seconds=seconds):
            if not 0 < seconds <= MAX_DELAY_SECONDS:
                bad.append(FieldViolation(f"{path}.delay.seconds", "between 1 s and 366 days"))
        case Window(window=window):
            if window.start == window.end:
                bad.append(FieldViolation(f"{path}.window", "start and end must differ"))
        case UntilPurchase(days=days):
            if not 0 < days <= 366:
                bad.append(FieldViolation(f"{path}.until_purchase.days", "between 1 and 366"))
        case IssueCoupon(template=template, unit=issuer, grant_key=grant_key):
            if not template.strip():
                bad.append(FieldViolation(f"{path}.issue_coupon.template", "is required"))
            if len(grant_key) > 100:
                bad.append(FieldViolation(f"{path}.issue_coupon.grant_key", "100 characters"))
            elif "{" in grant_key.replace(YEAR, "") or "}" in grant_key.replace(YEAR, ""):
                bad.append(
                    FieldViolation(f"{path}.issue_coupon.grant_key", "{year} is its only field")
                )
            if issuer and not _acts_for(unit, issuer):
                bad.append(
                    FieldViolation(
                        f"{path}.issue_coupon.unit", f"a {unit} journey issues as {unit}"
                    )
                )
        case AwardPoints(points=points, funding_unit=funding):
            if points <= 0:
                bad.append(FieldViolation(f"{path}.award_points.points", "must be positive"))
            if not funding.strip():
                bad.append(FieldViolation(f"{path}.award_points.funding_unit", "is required"))
            elif not _acts_for(unit, funding):
                bad.append(
                    FieldViolation(
                        f"{path}.award_points.funding_unit", f"a {unit} journey funds as {unit}"
                    )
                )
        case ChangeTags(add=add, remove=remove):
            if not add and not remove:
                bad.append(FieldViolation(f"{path}.change_tags", "add or remove a tag"))
            for tag in (*add, *remove):
                if ":" not in tag:
                    bad.append(FieldViolation(f"{path}.change_tags", f'"{tag}": namespace:value'))
        case SendMessage(purpose=purpose, body=body, channel=channel):
            if not purpose:
                bad.append(FieldViolation(f"{path}.send_message.purpose", "is required"))
            if not body.strip():
                bad.append(FieldViolation(f"{path}.send_message.body", "is required"))
            if channel not in CHANNELS:
                bad.append(
                    FieldViolation(
                        f"{path}.send_message.channel", f"one of {', '.join(sorted(CHANNELS))}"
                    )
                )
    return bad


CHANNELS = frozenset({"dev", "webhook"})  # the development sink; a unit's signed webhook


def triggered_by(trigger: Trigger, event: TriggerEvent) -> bool:
    """Does `event` trigger a journey with `trigger` (its kind and filter)?"""
    if trigger.kind is not event.kind:
        return False
    match trigger.kind:
        case TriggerKind.PURCHASE:
            return not trigger.unit or trigger.unit == event.unit
        case TriggerKind.TIER_CHANGED:
            return (not trigger.to_tier or trigger.to_tier == event.to_tier) and (
                not trigger.reasons or event.reason in trigger.reasons
            )
        case TriggerKind.SEGMENT_ENTERED | TriggerKind.SEGMENT_LEFT:
            return trigger.segment == event.segment
    return True


def conditions_hold(conditions: Conditions, event_unit: str, member: MemberFacts) -> bool:
    """Every set condition holds for the member and the triggering event's unit."""
    if conditions.units and event_unit not in conditions.units:
        return False
    if conditions.tiers and member.tier not in conditions.tiers:
        return False
    if any(badge not in member.badges for badge in conditions.held_badges):
        return False
    if any(badge in member.badges for badge in conditions.lacking_badges):
        return False
    return all(purpose in member.consents for purpose in conditions.consents)


def control_position(journey_id: str, member_id: str) -> float:
    """Where the member falls in [0, 1) for the journey: the same for every event, replica and
    version, and independent between journeys (a member held out of one is not held out of
    every one)."""
    digest = hashlib.sha256(f"{journey_id}:{member_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def held_out(journey_id: str, member_id: str, share: float) -> bool:
    """The member is in the journey's control group."""
    return control_position(journey_id, member_id) < share


def over_cap(cap: FrequencyCap, earlier: Sequence[datetime], now: datetime) -> bool:
    """The member has had `cap.max_entries` entries (acted on or held out) within the period
    before `now` already."""
    if cap.max_entries <= 0:
        return False
    since = now - cap.period
    return sum(1 for at in earlier if since < at <= now) >= cap.max_entries


def is_wait(step: Step) -> bool:
    return isinstance(step, Delay | Window | UntilPurchase)


def budget_cost(step: Step) -> tuple[int, int]:
    """The (points, coupons) a step gives, counted against the journey's budget."""
    match step:
        case AwardPoints(points=points):
            return points, 0
        case IssueCoupon():
            return 0, 1
    return 0, 0


def entry_id(journey_id: str, version: int, member_id: str, trigger_key: str) -> str:
    """The entry's ID from what makes it unique: a redelivered or replayed event, or one
    handled twice after a crash, is the same entry (and its steps' idempotency keys the same
    keys at benefits, points and identity)."""
    return str(
        uuid.uuid5(uuid.NAMESPACE_URL, f"journey:{journey_id}:{version}:{member_id}:{trigger_key}")
    )


def step_key(entry: str, step: int) -> str:
    """The idempotency key a step's call carries to the service that acts."""
    return f"journey-{entry}-{step}"
