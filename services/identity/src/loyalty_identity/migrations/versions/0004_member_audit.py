"""The audit log of the group's member operations (merges and unmerges): who did what to which
members and why. Append-only; no personal data (ids, the operator's unit and client, a reason).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE member_audit (
            member_id         uuid NOT NULL,
            seq               bigserial,
            action            text NOT NULL,
            related_member_id uuid,
            unit              text NOT NULL,
            client_id         text NOT NULL,
            reason            text NOT NULL DEFAULT '',
            detail            jsonb NOT NULL DEFAULT '{}',
            at                timestamptz NOT NULL,
            PRIMARY KEY (member_id, seq)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE member_audit")
