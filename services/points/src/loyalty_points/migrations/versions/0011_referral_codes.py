"""Referral codes: one per member, made on the first ask; and referrals read by referrer.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE referral_codes (
            member_id  uuid PRIMARY KEY,
            code       text NOT NULL UNIQUE,
            created_at timestamptz NOT NULL
        )
        """
    )
    # ListReferrals: a referrer's referrals, newest first.
    op.execute(
        "CREATE INDEX referrals_by_referrer ON referrals (referrer_id, recorded_at DESC, member_id)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX referrals_by_referrer")
    op.execute("DROP TABLE referral_codes")
