"""The points service's tables (SQLAlchemy Core), as migrations create them."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, DateTime, MetaData, Table, Text
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = MetaData()

programme_versions = Table(
    "programme_versions",
    metadata,
    Column("version", BigInteger, primary_key=True),
    Column("effective_from", DateTime(timezone=True), nullable=False),
    Column("rules", JSONB, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

accounts = Table(
    "accounts",
    metadata,
    Column("member_id", UUID(as_uuid=False), primary_key=True),
    Column("state", Text, nullable=False),
    Column("merged_into", UUID(as_uuid=False)),
    Column("tier", Text, nullable=False),
    Column("tier_effective_at", DateTime(timezone=True)),
    Column("available", BigInteger, nullable=False),
    Column("pending", BigInteger, nullable=False),
    Column("lifetime_earned", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("referral_pending", Boolean, nullable=False),
)

postings = Table(
    "postings",
    metadata,
    Column("member_id", UUID(as_uuid=False), primary_key=True),
    Column("posting_id", UUID(as_uuid=False), primary_key=True),
    Column("seq", BigInteger, autoincrement=True, nullable=False),
    Column("kind", Text, nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("pending", Boolean, nullable=False),
    Column("available_at", DateTime(timezone=True)),
    Column("unit", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("order_id", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("posted_at", DateTime(timezone=True), nullable=False),
    Column("programme_version", BigInteger),
    Column("breakdown", JSONB),
    Column("related_posting_id", UUID(as_uuid=False)),
    Column("reason", Text, nullable=False),
    Column("unrecovered_points", BigInteger, nullable=False),
)

lots = Table(
    "lots",
    metadata,
    Column("member_id", UUID(as_uuid=False), primary_key=True),
    Column("lot_id", UUID(as_uuid=False), primary_key=True),
    Column("posting_id", UUID(as_uuid=False), nullable=False),
    Column("earned_unit", Text, nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("remaining", BigInteger, nullable=False),
    Column("status", Text, nullable=False),
    Column("earned_at", DateTime(timezone=True), nullable=False),
    Column("available_at", DateTime(timezone=True)),
    Column("expires_at", DateTime(timezone=True)),
    Column("origin_member_id", UUID(as_uuid=False)),
)

lot_movements = Table(
    "lot_movements",
    metadata,
    Column("member_id", UUID(as_uuid=False), primary_key=True),
    Column("posting_id", UUID(as_uuid=False), primary_key=True),
    Column("lot_id", UUID(as_uuid=False), primary_key=True),
    Column("points", BigInteger, nullable=False),
    Column("earned_unit", Text, nullable=False),
    Column("unit", Text, nullable=False),
    Column("posted_at", DateTime(timezone=True), nullable=False),
)

orders = Table(
    "orders",
    metadata,
    Column("unit", Text, primary_key=True),
    Column("order_id", Text, primary_key=True),
    Column("member_id", UUID(as_uuid=False), nullable=False),
    Column("posting_id", UUID(as_uuid=False), nullable=False),
    Column("lot_id", UUID(as_uuid=False), nullable=False),
    Column("currency", Text, nullable=False),
    Column("lines", JSONB, nullable=False),
    Column("bonus_points", BigInteger, nullable=False),
    Column("bonus_reversed", Boolean, nullable=False),
)

referrals = Table(
    "referrals",
    metadata,
    Column("member_id", UUID(as_uuid=False), primary_key=True),
    Column("referrer_id", UUID(as_uuid=False), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("rewarded_at", DateTime(timezone=True)),
)

referral_codes = Table(
    "referral_codes",
    metadata,
    Column("member_id", UUID(as_uuid=False), primary_key=True),
    Column("code", Text, nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

partner_references = Table(
    "partner_references",
    metadata,
    Column("partner", Text, primary_key=True),
    Column("reference", Text, primary_key=True),
    Column("member_id", UUID(as_uuid=False), nullable=False),
    Column("posting_id", UUID(as_uuid=False), nullable=False),
)

legacy_balances = Table(
    "legacy_balances",
    metadata,
    Column("unit", Text, primary_key=True),
    Column("legacy_key", Text, primary_key=True),
    Column("member_id", UUID(as_uuid=False), nullable=False),
    Column("member_import", Text, nullable=False),
    Column("legacy_points", BigInteger, nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("posting_id", UUID(as_uuid=False)),
    Column("expires_at", DateTime(timezone=True)),
    Column("carried_at", DateTime(timezone=True), nullable=False),
)

tier_changes = Table(
    "tier_changes",
    metadata,
    Column("member_id", UUID(as_uuid=False), primary_key=True),
    Column("effective_at", DateTime(timezone=True), primary_key=True),
    Column("tier", Text, nullable=False),
)

# The badges members held and when (from engagement's BadgeEarned and BadgeRevoked): a campaign
# for a badge's holders applies to an order made while the member held it.
badge_holdings = Table(
    "badge_holdings",
    metadata,
    Column("member_id", UUID(as_uuid=False), primary_key=True),
    Column("badge", Text, primary_key=True),
    Column("held_from", DateTime(timezone=True), primary_key=True),
    Column("held_until", DateTime(timezone=True)),
)

activities = Table(
    "activities",
    metadata,
    Column("unit", Text, primary_key=True),
    Column("activity_id", Text, primary_key=True),
    Column("member_id", UUID(as_uuid=False), nullable=False),
    Column("activity_type", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("attributes", JSONB, nullable=False),
    Column("fingerprint", Text, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("programme_version", BigInteger, nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("funding_unit", Text, nullable=False),
    Column("posting_id", UUID(as_uuid=False)),
    Column("limit_reason", Text, nullable=False),
    Column("limit", Text, nullable=False),
)
