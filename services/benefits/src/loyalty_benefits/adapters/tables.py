"""The benefits service's tables declared in SQLAlchemy Core, for the schema test to compare
with the migrations. The stores write their SQL by hand; a table is declared here once it has
a store of its own written since (`coupon_offers`, adapters/stores/offers.py)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Integer,
    MetaData,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import UUID

metadata = MetaData()

coupon_offers = Table(
    "coupon_offers",
    metadata,
    Column("offer_id", UUID(as_uuid=False), primary_key=True),
    Column("template_code", Text, nullable=False),
    Column("available", BigInteger, nullable=False),
    Column("per_member_limit", Integer, nullable=False),
    Column("claim_start", DateTime(timezone=True), nullable=False),
    Column("claim_end", DateTime(timezone=True), nullable=False),
    Column("minimum_tier", Text, nullable=False, server_default=""),
    Column("issuer_unit", Text, nullable=False),
    # Claims taken: never above `available` (the offer's rule, and a CHECK beneath it).
    Column("claimed", BigInteger, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("claim_start < claim_end", name="coupon_offers_window"),
    CheckConstraint("claimed >= 0 AND claimed <= available", name="coupon_offers_claimed"),
)
