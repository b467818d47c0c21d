"""The engagement service's tables (SQLAlchemy Core), as migrations create them.

`journeys` is a journey's head (its state, latest version and the programme file's key for
it, unique when set, not versioned), `journey_versions` each
definition as the API gave it (a JSON document; an entry runs the version it entered with).
`journey_entries` is unique per journey, version, member and triggering event (its ID is derived
from them), `step_runs` per entry and step: what makes a step run once however often its event
arrives. `messages` is the development sink. `member_tiers` is each member's tier as tiers
announced it (a condition reads it). Member IDs, units and tiers only: no personal data.

A waiting entry (at a wait, deferred by quiet hours, or entered by a sweep) keeps the step it
goes on from (`next_step`) and when (`due_at`); the timer takes due ones. `journey_budgets` is
what each journey gave in all (points, coupons), spent by an UPDATE that checks the limit.
`member_activity` is each member's last purchase (the inactivity sweep) and birthday's month
and day (the birthday sweep); `member_lots` the points of each lot and when they expire (the
expiring-points sweep). `journey_sweeps` is how far each sweep of a journey has gone.
`member_activity.time_zone` is the member's zone from identity's profile (quiet hours in it).
`segment_members` is who is in each insights segment now, from its SegmentEntered/SegmentLeft
(a row per segment and member, `present` as of the latest move: a replayed older move changes
nothing); a journey on a schedule over a segment enters its present members.

`transactional_messages` is the development sink of transactional messages (sign-in codes):
the phone and the text sealed (bound to the message), found by the phone's keyed hash, kept
until they expire.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

metadata = MetaData()

journeys = Table(
    "journeys",
    metadata,
    Column("journey_id", Text, primary_key=True),
    Column("unit", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("trigger_kind", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("key", Text),  # the programme file's name for it (unique when set)
    Index("journeys_trigger", "trigger_kind", postgresql_where=text("state <> 'draft'")),
    Index("journeys_key", "key", unique=True, postgresql_where=text("key IS NOT NULL")),
)

journey_versions = Table(
    "journey_versions",
    metadata,
    Column("journey_id", Text, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("spec", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

journey_entries = Table(
    "journey_entries",
    metadata,
    Column("entry_id", Text, primary_key=True),
    Column("journey_id", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("member_id", Text, nullable=False),
    Column("trigger_key", Text, nullable=False),
    Column("unit", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("entered_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("next_step", Integer, nullable=False, server_default=text("0")),
    Column("due_at", DateTime(timezone=True)),
    Column("waiting", Text, nullable=False, server_default=text("''")),
    Column("purchased_at", DateTime(timezone=True)),
    UniqueConstraint("journey_id", "version", "member_id", "trigger_key"),
    Index("journey_entries_member", "journey_id", "member_id", "entered_at"),
    Index("journey_entries_listed", "journey_id", "entered_at", "entry_id"),
    Index(
        "journey_entries_pending",
        "journey_id",
        "entered_at",
        postgresql_where=text("state = 'pending'"),
    ),
    Index("journey_entries_due", "due_at", postgresql_where=text("state = 'waiting'")),
    Index(
        "journey_entries_purchase",
        "member_id",
        postgresql_where=text("state = 'waiting' AND waiting = 'purchase'"),
    ),
)

step_runs = Table(
    "step_runs",
    metadata,
    Column("entry_id", Text, primary_key=True),
    Column("step", Integer, primary_key=True),
    Column("outcome", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("ran_at", DateTime(timezone=True), nullable=False),
)

messages = Table(
    "messages",
    metadata,
    Column("message_id", Text, primary_key=True),
    Column("entry_id", Text, nullable=False),
    Column("step", Integer, nullable=False),
    Column("journey_id", Text, nullable=False),
    Column("member_id", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("purpose", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("unsubscribe_token", Text, nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("entry_id", "step"),
    Index("messages_member", "member_id", "sent_at"),
    Index("messages_sent", "sent_at", "message_id"),
)

member_tiers = Table(
    "member_tiers",
    metadata,
    Column("member_id", Text, primary_key=True),
    Column("tier", Text, nullable=False),
    Column("effective_at", DateTime(timezone=True), nullable=False),
)

journey_budgets = Table(
    "journey_budgets",
    metadata,
    Column("journey_id", Text, primary_key=True),
    Column("points_spent", BigInteger, nullable=False),
    Column("coupons_spent", BigInteger, nullable=False),
)

journey_sweeps = Table(
    "journey_sweeps",
    metadata,
    Column("journey_id", Text, primary_key=True),
    Column("swept_until", DateTime(timezone=True), nullable=False),
)

member_activity = Table(
    "member_activity",
    metadata,
    Column("member_id", Text, primary_key=True),
    Column("last_purchase_at", DateTime(timezone=True)),
    Column("birthday_month", Integer, nullable=False, server_default=text("0")),
    Column("birthday_day", Integer, nullable=False, server_default=text("0")),
    Column("time_zone", Text, nullable=False, server_default=text("''")),
    Index("member_activity_last_purchase", "last_purchase_at"),
    Index("member_activity_birthday", "birthday_month", "birthday_day"),
)

segment_members = Table(
    "segment_members",
    metadata,
    Column("segment", Text, primary_key=True),
    Column("member_id", Text, primary_key=True),
    Column("present", Boolean, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Index("segment_members_member", "member_id"),
)

member_lots = Table(
    "member_lots",
    metadata,
    Column("lot_id", Text, primary_key=True),
    Column("member_id", Text, nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("member_lots_expiring", "expires_at", postgresql_where=text("points > 0")),
)

# The webhook channel (adapters/webhooks.py): a unit's endpoint per purpose (the secret sealed),
# the deliveries as an outbox (a row per message, taken with FOR UPDATE SKIP LOCKED by the
# delivery loop of any replica), and the unsubscribe tokens of every message, by their hash.
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("unit", Text, primary_key=True),
    Column("purpose", Text, primary_key=True),
    Column("url", Text, nullable=False),
    Column("secret_sealed", LargeBinary, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("message_id", Text, primary_key=True),
    Column("member_id", Text, nullable=False),
    Column("unit", Text, nullable=False),
    Column("purpose", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    Index("deliveries_due", "next_attempt_at", postgresql_where=text("state = 'pending'")),
    Index("deliveries_listed", "created_at", "message_id"),
    Index("deliveries_member", "member_id"),
)

unsubscribe_tokens = Table(
    "unsubscribe_tokens",
    metadata,
    Column("token_hash", Text, primary_key=True),
    Column("message_id", Text, nullable=False),
    Column("member_id", Text, nullable=False),
    Column("purpose", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True), nullable=True),
    Index("unsubscribe_tokens_member", "member_id"),
)

# Challenges, badges and leaderboards (domain/challenges.py). `counted_events` remembers each
# event a challenge or a leaderboard counted (by its content key): a replay counts nothing.
# `challenge_progress` is a member's per challenge and period (locked while an event counts),
# `challenge_completions` unique per member, challenge and period key: the reward paid once.
challenges = Table(
    "challenges",
    metadata,
    Column("challenge_id", Text, primary_key=True),
    Column("unit", Text, nullable=False),
    Column("goal_kind", Text, nullable=False),
    Column("spec", JSONB, nullable=False),
    Column("start_at", DateTime(timezone=True), nullable=False),
    Column("end_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("key", Text),  # the programme file's name for it (unique when set)
    Index("challenges_key", "key", unique=True, postgresql_where=text("key IS NOT NULL")),
)

counted_events = Table(
    "counted_events",
    metadata,
    Column("counter", Text, primary_key=True),
    Column("event_key", Text, primary_key=True),
    Column("counted_at", DateTime(timezone=True), nullable=False),
)

challenge_progress = Table(
    "challenge_progress",
    metadata,
    Column("challenge_id", Text, primary_key=True),
    Column("member_id", Text, primary_key=True),
    Column("period", Text, primary_key=True),
    Column("value", BigInteger, nullable=False),
    Column("spend", Text, nullable=False),
    Column("units", ARRAY(Text), nullable=False),
    Column("last_day", Date),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("challenge_progress_member", "member_id"),
)

challenge_completions = Table(
    "challenge_completions",
    metadata,
    Column("challenge_id", Text, primary_key=True),
    Column("member_id", Text, primary_key=True),
    Column("completion_key", Text, primary_key=True),
    Column("period", Text, nullable=False),
    Column("completed_at", DateTime(timezone=True), nullable=False),
    Column("rewards", Text, nullable=False),
)

# Purchases as challenges and leaderboards keep them (`challenge_purchases`, by content key,
# the member they count for now: a merge moves them), their refunds (`purchase_refunds`, by the
# reverse posting: a replay refunds nothing) and which challenge period each counted in
# (`challenge_contributions`): a purchase goal's progress is the fold of these, net of refunds.
challenge_purchases = Table(
    "challenge_purchases",
    metadata,
    Column("purchase_key", Text, primary_key=True),
    Column("member_id", Text, nullable=False),
    Column("unit", Text, nullable=False),
    Column("spend", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Index("challenge_purchases_member", "member_id"),
)

purchase_refunds = Table(
    "purchase_refunds",
    metadata,
    Column("refund_key", Text, primary_key=True),
    Column("purchase_key", Text, nullable=False),
    Column("member_id", Text, nullable=False),
    Column("spend", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Index("purchase_refunds_purchase", "purchase_key"),
    Index("purchase_refunds_member", "member_id"),
)

challenge_contributions = Table(
    "challenge_contributions",
    metadata,
    Column("challenge_id", Text, primary_key=True),
    Column("purchase_key", Text, primary_key=True),
    Column("member_id", Text, nullable=False),
    Column("period", Text, nullable=False),
    Index("challenge_contributions_progress", "challenge_id", "member_id", "period"),
    Index("challenge_contributions_purchase", "purchase_key"),
    Index("challenge_contributions_member", "member_id"),
)

# Who each absorbed member became (the end of its chain of merges): an event of theirs still in
# flight when the merge was handled counts for the survivor.
member_merges = Table(
    "member_merges",
    metadata,
    Column("absorbed_member_id", Text, primary_key=True),
    Column("survivor_member_id", Text, nullable=False),
    Column("merged_at", DateTime(timezone=True), nullable=False),
    Index("member_merges_survivor", "survivor_member_id"),
)

member_badges = Table(
    "member_badges",
    metadata,
    Column("member_id", Text, primary_key=True),
    Column("badge", Text, primary_key=True),
    Column("source", Text, nullable=False),
    Column("earned_at", DateTime(timezone=True), nullable=False),
)

badge_audit = Table(
    "badge_audit",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=True),
    Column("member_id", Text, nullable=False),
    Column("badge", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("unit", Text, nullable=False),
    Column("client_id", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("badge_audit_member", "member_id", "seq"),
)

leaderboards = Table(
    "leaderboards",
    metadata,
    Column("leaderboard_id", Text, primary_key=True),
    Column("unit", Text, nullable=False),
    Column("spec", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Every member's score per metric, scope (a unit or "group") and period ("2026-12", "2026-Q4"),
# whatever leaderboards exist: ranked by window functions over the index.
leaderboard_scores = Table(
    "leaderboard_scores",
    metadata,
    Column("metric", Text, primary_key=True),
    Column("scope", Text, primary_key=True),
    Column("period", Text, primary_key=True),
    Column("member_id", Text, primary_key=True),
    Column("score", BigInteger, nullable=False),
    Index("leaderboard_scores_ranked", "metric", "scope", "period", text("score DESC")),
)

leaderboard_closes = Table(
    "leaderboard_closes",
    metadata,
    Column("leaderboard_id", Text, primary_key=True),
    Column("period", Text, primary_key=True),
    Column("closed_at", DateTime(timezone=True), nullable=False),
)

# One row per reward owed when a period closed, inserted by the close (unique: paid once),
# then paid (`paid_at`) through points and benefits with its own idempotency key.
leaderboard_payouts = Table(
    "leaderboard_payouts",
    metadata,
    Column("leaderboard_id", Text, primary_key=True),
    Column("period", Text, primary_key=True),
    Column("member_id", Text, primary_key=True),
    Column("reward", Integer, primary_key=True),
    Column("rank", BigInteger, nullable=False),
    Column("score", BigInteger, nullable=False),
    Column("paid_at", DateTime(timezone=True)),
    Index(
        "leaderboard_payouts_unpaid",
        "leaderboard_id",
        "period",
        postgresql_where=text("paid_at IS NULL"),
    ),
)

transactional_messages = Table(
    "transactional_messages",
    metadata,
    Column("message_id", Text, primary_key=True),
    Column("phone_hash", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("unit", Text, nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("transactional_messages_phone", "phone_hash", "created_at"),
    Index("transactional_messages_expiry", "expires_at"),
)
