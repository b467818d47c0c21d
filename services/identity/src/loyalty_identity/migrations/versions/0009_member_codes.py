"""Member codes (会员码): each member's code secret, sealed, with the handle naming the member in
the code, and the codes already resolved (a handle and a step, once).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE member_codes (
            member_id     uuid PRIMARY KEY,
            handle        text NOT NULL,
            secret_sealed bytea NOT NULL,
            created_at    timestamptz NOT NULL,
            CONSTRAINT member_codes_handle_once UNIQUE (handle)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE member_code_uses (
            handle  text NOT NULL,
            step    bigint NOT NULL,
            used_at timestamptz NOT NULL,
            PRIMARY KEY (handle, step)
        )
        """
    )
    op.execute("CREATE INDEX member_code_uses_step ON member_code_uses (step)")


def downgrade() -> None:
    op.execute("DROP TABLE member_code_uses")
    op.execute("DROP TABLE member_codes")
