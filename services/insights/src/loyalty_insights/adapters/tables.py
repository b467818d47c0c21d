"""The insights service's tables (SQLAlchemy Core), as migrations create them.

Facts are keyed by member first (`member_id` leads every fact table's key) so the same SQL runs
on PostgreSQL distributed by member (Citus: `create_distributed_table(<table>, 'member_id')`;
`programmes`, `member_merges` and `known_units` are small reference tables). They hold member
IDs, units, kinds, points, amounts and times: no personal data.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

metadata = MetaData()

# The points ledger as points' LedgerPosted carries it: every posting, and every lot movement
# with the kind and sign of its posting (what the settlement sums).
ledger_postings = Table(
    "ledger_postings",
    metadata,
    Column("member_id", Text, primary_key=True),
    Column("posting_id", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("unit", Text, nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("posted_at", DateTime(timezone=True), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
)

lot_movements = Table(
    "lot_movements",
    metadata,
    Column("member_id", Text, primary_key=True),
    Column("posting_id", Text, primary_key=True),
    Column("lot_id", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("posting_points", BigInteger, nullable=False),
    Column("earned_unit", Text, nullable=False),
    Column("unit", Text, nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("posted_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
)

programmes = Table(
    "programmes",
    metadata,
    Column("version", BigInteger, primary_key=True),
    Column("effective_from", DateTime(timezone=True), nullable=False),
    Column("base_currency", Text, nullable=False),
    Column("point_value", Numeric, nullable=False),
)

known_units = Table("known_units", metadata, Column("unit", Text, primary_key=True))

# What members did where: purchases (spend), refunds (negative spend), redemptions, benefits
# used, coupons and rewards redeemed, past orders imported as activity.
activity = Table(
    "activity",
    metadata,
    Column("member_id", Text, primary_key=True),
    Column("kind", Text, primary_key=True),
    Column("event_id", Text, primary_key=True),
    Column("unit", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("spend", Numeric, nullable=False),
    Column("currency", Text, nullable=False),
)

registrations = Table(
    "registrations",
    metadata,
    Column("member_id", Text, primary_key=True),
    Column("unit", Text, nullable=False),
    Column("registered_at", DateTime(timezone=True), nullable=False),
    Column("imported", Boolean, nullable=False),
)

consents = Table(
    "consents",
    metadata,
    Column("member_id", Text, primary_key=True),
    Column("purpose", Text, primary_key=True),
    Column("granted", Boolean, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
)

tier_changes = Table(
    "tier_changes",
    metadata,
    Column("member_id", Text, primary_key=True),
    Column("effective_at", DateTime(timezone=True), primary_key=True),
    Column("to_tier", Text, primary_key=True),
    Column("reason", Text, primary_key=True),
    Column("from_tier", Text, nullable=False),
)

# Benefits used and released, coupons issued, redeemed and released, rewards redeemed.
benefit_facts = Table(
    "benefit_facts",
    metadata,
    Column("member_id", Text, primary_key=True),
    Column("kind", Text, primary_key=True),
    Column("fact_id", Text, primary_key=True),
    Column("code", Text, nullable=False),
    Column("unit", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
)

# Merges as identity announced them (absorbed -> survivor, one step): figures per member count
# an absorbed member's facts for the end of its chain of survivors; an unmerge deletes the row.
member_merges = Table(
    "member_merges",
    metadata,
    Column("absorbed_id", Text, primary_key=True),
    Column("survivor_id", Text, nullable=False),
    Column("merged_at", DateTime(timezone=True), nullable=False),
)

erased_members = Table(
    "erased_members",
    metadata,
    Column("member_id", Text, primary_key=True),
    Column("erased_at", DateTime(timezone=True), nullable=False),
)

# Each counted member's figures (the survivor of merges; absorbed and erased members have no row),
# recomputed from the facts in full on a schedule and per member as its events arrive; the
# dashboards read it instead of the facts. `tags`, `badges`, `predicted_value_12m` and `p_alive`
# are kept by other work: a refresh writes only its own columns.
member_figures = Table(
    "member_figures",
    metadata,
    Column("member_id", Text, primary_key=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("registered_at", DateTime(timezone=True)),
    Column("registered_unit", Text),
    Column("first_active_at", DateTime(timezone=True)),
    Column("last_active_at", DateTime(timezone=True)),
    Column("units", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("units_12m", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("visits_12m", Integer, nullable=False, server_default=text("0")),
    Column("spend_12m", Numeric, nullable=False, server_default=text("0")),
    # Its spend by unit (migration 0009): the units with spending in the 12 months, the spend
    # at each (same order), and the units where the member bought (not only refunds).
    Column("spend_units_12m", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("unit_spend_12m", ARRAY(Numeric), nullable=False, server_default=text("'{}'")),
    Column("bought_units_12m", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    # Where it was first active, the next other unit it was active at ('' none yet), and
    # whether its first activity is in the 12 months (migration 0010): the flows.
    Column("first_unit", Text),
    Column("next_unit", Text, nullable=False, server_default=text("''")),
    Column("new_12m", Boolean, nullable=False, server_default=text("false")),
    Column("recency_days", Integer),
    Column("rfm_r", SmallInteger),
    Column("rfm_f", SmallInteger),
    Column("rfm_m", SmallInteger),
    Column("rfm_segment", Text),
    Column("tier", Text),
    Column("birthday_month", SmallInteger),
    Column("offers_consent", Boolean, nullable=False, server_default=text("true")),
    Column("tags", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("predicted_value_12m", Numeric),
    Column("p_alive", Double),
    # Lifetime value's (migration 0005): what the member spent up to the fit's `as_of`, and
    # the fit the three lifetime value columns are from.
    Column("historical_value", Numeric),
    Column("clv_fit_id", Text),
    # Migration 0007: when the row's figures were computed (a refresh's or an event's
    # recompute; `updated_at` moves with tags and lifetime value too), and the refresh whose
    # cut points scored it (NULL: none).
    Column("figured_at", DateTime(timezone=True)),
    Column("scored_by", BigInteger),
    # Migration 0013: its last purchase in the window (its recency moves with time from it)
    # and the end of the window it was figured for (an incremental refresh's starting point).
    Column("last_bought_at", DateTime(timezone=True)),
    Column("window_end", DateTime(timezone=True)),
    # Migration 0015: the badges the member holds (engagement's BadgeEarned and BadgeRevoked).
    Column("badges", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Index("member_figures_updated_at", "updated_at"),
    Index("member_figures_segment", "rfm_segment", "member_id"),
)

# Each full refresh: when, as of when, how many members, and the quintile cut points of its RFM
# scores (for scores 2..5; NULL where no member scored that high) that incremental recomputes
# score against until the next one.
figure_refreshes = Table(
    "figure_refreshes",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("as_of", DateTime(timezone=True), nullable=False),
    Column("members", BigInteger, nullable=False),
    Column("removed", BigInteger, nullable=False),
    Column("r_cuts", ARRAY(Integer), nullable=False),
    Column("f_cuts", ARRAY(BigInteger), nullable=False),
    Column("m_cuts", ARRAY(Numeric), nullable=False),
    # Migration 0013: recomputed from the facts (True) or incrementally from the rows, and its
    # moment (rows figured since then were not its work; NULL: recorded before 0013).
    Column("from_facts", Boolean, nullable=False, server_default=text("true")),
    Column("since", DateTime(timezone=True)),
)

# The dashboards' counts of `member_figures` for the standard window (the trailing 12 months):
# members by RFM segment (`segment`, the segment), active (`active`, '': a unit in the 12
# months), in two or more units (`multi`, '' and each of the units) and in both units of each
# ordered pair (`pair`,
# 'unit other_unit'; the diagonal: members active in the unit). Kept by statement triggers on
# `member_figures` (migration 0007_dashboard_counts) in the transaction that writes its rows, as
# the rows written less the rows they replace; each key spread over 16 slots by member, so
# concurrent recomputes rarely wait for the same counter. A count is the sum of its slots.
figure_counts = Table(
    "figure_counts",
    metadata,
    Column("figure", Text, primary_key=True),
    Column("key", Text, primary_key=True),
    Column("slot", SmallInteger, primary_key=True),
    Column("members", BigInteger, nullable=False),
)

# The spend share of the standard window: each unit's spend in the trailing 12 months and the
# members who bought there, summed over the rows of `member_figures` by statement triggers on
# it (migration 0009_spend_counts), as `figure_counts` is; 16 slots a unit, summed to read.
spend_counts = Table(
    "spend_counts",
    metadata,
    Column("unit", Text, primary_key=True),
    Column("slot", SmallInteger, primary_key=True),
    Column("spend", Numeric, nullable=False),
    Column("members", BigInteger, nullable=False),
)

# The flows of the standard window: members first active in the trailing 12 months by where
# (`from_unit`) and the next other unit they were active at (`to_unit`, '' none yet), counted
# over the rows of `member_figures` by statement triggers on it (migration 0010_flow_counts), as
# `figure_counts` is; 16 slots a flow, summed to read.
flow_counts = Table(
    "flow_counts",
    metadata,
    Column("from_unit", Text, primary_key=True),
    Column("to_unit", Text, primary_key=True),
    Column("slot", SmallInteger, primary_key=True),
    Column("members", BigInteger, nullable=False),
)

# The points liability's sums of every fact so far: postings (`source` 'posting') by unit, kind
# and sign (`sign`; `month` ''), lot movements (`source` 'lot') by the lot's issuing unit
# (`unit`), kind and expiry month (`month`, 'YYYY-MM', '' never; `sign` 0). Kept by statement
# triggers on `ledger_postings` and `lot_movements` (migration 0008_liability_counts) in the
# transaction that writes the facts; each key spread over 16 slots by member, a sum is the sum
# of its slots. The liability as of now reads it instead of the facts.
liability_counts = Table(
    "liability_counts",
    metadata,
    Column("source", Text, primary_key=True),
    Column("unit", Text, primary_key=True),
    Column("kind", Text, primary_key=True),
    Column("sign", SmallInteger, primary_key=True),
    Column("month", Text, primary_key=True),
    Column("slot", SmallInteger, primary_key=True),
    Column("points", BigInteger, nullable=False),
)

# A member's birthday month as identity last announced it (the month only: no day, no year).
birthdays = Table(
    "birthdays",
    metadata,
    Column("member_id", Text, primary_key=True),
    Column("month", SmallInteger, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
)

# Lifetime value fits: one row a fit (its state and progress, parameters and hold-out report as
# JSON); a running fit stages its predictions in `clv_predictions`, and its last transaction
# puts them into `member_figures` at once, so a fit that fails leaves the last one's whole.
clv_fits = Table(
    "clv_fits",
    metadata,
    Column("fit_id", Text, primary_key=True),
    Column("scheduled", Boolean, nullable=False),
    Column("state", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("as_of", DateTime(timezone=True), nullable=False),
    Column("holdout_days", Integer, nullable=False),
    Column("members", BigInteger, nullable=False, server_default=text("0")),
    Column("members_done", BigInteger, nullable=False, server_default=text("0")),
    Column("currency", Text, nullable=False, server_default=text("''")),
    Column("parameters", JSONB),
    Column("holdout", JSONB),
    Column("error", Text, nullable=False, server_default=text("''")),
    Index("clv_fits_state", "state", "created_at"),
)

clv_predictions = Table(
    "clv_predictions",
    metadata,
    Column("fit_id", Text, primary_key=True),
    Column("member_id", Text, primary_key=True),
    Column("historical_value", Numeric, nullable=False),
    Column("predicted_value_12m", Numeric),
    Column("p_alive", Double),
    Index("clv_predictions_fit", "fit_id"),
)

# Dynamic segments: the rule as stored JSON (domain/segments.py reads it), the owning unit
# ("group" for the group's team), `version` makes the etag.
segments = Table(
    "segments",
    metadata,
    Column("segment_id", Text, primary_key=True),
    Column("display_name", Text, nullable=False),
    Column("rule", JSONB, nullable=False),
    Column("targeting", Boolean, nullable=False),
    Column("unit", Text, nullable=False),
    Column("member_count", BigInteger, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("evaluated_at", DateTime(timezone=True), nullable=False),
)

# Who is in each segment now. Keyed member first, as the facts (distributed by member); the
# second index lists a segment's members by member ID.
segment_members = Table(
    "segment_members",
    metadata,
    Column("member_id", Text, primary_key=True),
    Column("segment_id", Text, primary_key=True),
    Index("segment_members_by_segment", "segment_id", "member_id"),
)

# How far the incremental evaluation has read member_figures (by updated_at), per evaluator.
segment_watermarks = Table(
    "segment_watermarks",
    metadata,
    Column("evaluator", Text, primary_key=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# The cohorts' and programme health's months (migration 0012; adapters/month_counts.py keeps
# them in the transaction of every event that touches members). Per member (its survivor's
# ID; erased members have none): each month of activity by unit ('' any unit) and whether it
# redeemed, and its first registration by unit ('' anywhere; `first` the unit it first joined
# at, and the group's row).
member_months = Table(
    "member_months",
    metadata,
    Column("member_id", Text, primary_key=True),
    Column("month", Text, primary_key=True),
    Column("unit", Text, primary_key=True),
    Column("redeemed", Boolean, nullable=False),
)

member_joins = Table(
    "member_joins",
    metadata,
    Column("member_id", Text, primary_key=True),
    Column("unit", Text, primary_key=True),
    Column("month", Text, nullable=False),
    Column("imported", Boolean, nullable=False),
    Column("first", Boolean, nullable=False),
)

# By month and unit ('' the group), 16 slots a key by member, summed to read: members active,
# redeeming, active while not registered there by the month's end, first registered there
# (summed up to a month: registered by its end), and who first joined the programme there
# (the cohort's size; imported: of them, imported).
month_counts = Table(
    "month_counts",
    metadata,
    Column("month", Text, primary_key=True),
    Column("unit", Text, primary_key=True),
    Column("slot", SmallInteger, primary_key=True),
    Column("active", BigInteger, nullable=False),
    Column("redeeming", BigInteger, nullable=False),
    Column("unregistered", BigInteger, nullable=False),
    Column("registered", BigInteger, nullable=False),
    Column("joined", BigInteger, nullable=False),
    Column("imported", BigInteger, nullable=False),
)

# A cohort's (first joined in `cohort` at `unit`, '' the group) members active (there) in a
# month from its own on; 16 slots a key by member.
cohort_counts = Table(
    "cohort_counts",
    metadata,
    Column("cohort", Text, primary_key=True),
    Column("month", Text, primary_key=True),
    Column("unit", Text, primary_key=True),
    Column("slot", SmallInteger, primary_key=True),
    Column("active", BigInteger, nullable=False),
)

# Personalised offers (migration 0014), rebuilt by every refresh of the members' figures: each
# offer's (a reward's or a coupon template's code) nearest others by the cosine of the sets of
# members who used them, and how many members used each offer by unit ('' the group) and RFM
# segment ('' every member), with their share of the members who used any offer there.
offer_similarities = Table(
    "offer_similarities",
    metadata,
    Column("kind", Text, primary_key=True),
    Column("code", Text, primary_key=True),
    Column("other_kind", Text, primary_key=True),
    Column("other_code", Text, primary_key=True),
    Column("score", Double, nullable=False),
    Column("co_members", BigInteger, nullable=False),
)

offer_popularity = Table(
    "offer_popularity",
    metadata,
    Column("unit", Text, primary_key=True),
    Column("segment", Text, primary_key=True),
    Column("kind", Text, primary_key=True),
    Column("code", Text, primary_key=True),
    Column("members", BigInteger, nullable=False),
    Column("share", Double, nullable=False),
    Index("offer_popularity_ranked", "unit", "segment", text("share DESC")),
)

# Members' entries into engagement's journeys (JourneyEntered, migration 0015): each member once
# a journey, from its first entry, in the journey's control group or not; a journey's uplift
# compares the two groups' activity after their entries.
journey_entries = Table(
    "journey_entries",
    metadata,
    Column("member_id", Text, primary_key=True),
    Column("journey_id", Text, primary_key=True),
    Column("entered_at", DateTime(timezone=True), nullable=False),
    Column("control", Boolean, nullable=False),
    Column("unit", Text, nullable=False),
    Index("journey_entries_journey", "journey_id", "control"),
)
