"""accounts.referral_pending: whether an unrewarded referral waits for the member's first earn,
so an earn needs no extra look-up to know.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE accounts ADD COLUMN referral_pending boolean NOT NULL DEFAULT false")
    op.execute(
        "UPDATE accounts SET referral_pending = true WHERE member_id IN "
        "(SELECT member_id FROM referrals WHERE rewarded_at IS NULL)"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE accounts DROP COLUMN referral_pending")
