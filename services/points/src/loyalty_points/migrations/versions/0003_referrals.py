"""Referrals: who referred whom, and whether the bonuses were paid.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # member_id is the referred member: a member is referred once.
    op.execute(
        """
        CREATE TABLE referrals (
            member_id   uuid PRIMARY KEY,
            referrer_id uuid NOT NULL CHECK (referrer_id <> member_id),
            recorded_at timestamptz NOT NULL,
            rewarded_at timestamptz
        )
        """
    )
    op.execute("CREATE INDEX postings_daily ON postings (member_id, kind, posted_at)")


def downgrade() -> None:
    op.execute("DROP INDEX postings_daily")
    op.execute("DROP TABLE referrals")
