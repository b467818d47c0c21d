"""Members' own erasure requests ("erase me"): a cooling-off, a confirmation code kept by its
keyed hash only, and where the request stands. At most one open request a member.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE erasure_requests (
            member_id       uuid NOT NULL,
            erasure_id      uuid NOT NULL,
            state           text NOT NULL,
            code_hash       bytea NOT NULL,
            attempts        integer NOT NULL DEFAULT 0,
            last_attempt    text NOT NULL DEFAULT '',
            requested_at    timestamptz NOT NULL,
            erase_after     timestamptz NOT NULL,
            code_expires_at timestamptz NOT NULL,
            confirmed_at    timestamptz,
            cancelled_at    timestamptz,
            cancel_reason   text NOT NULL DEFAULT '',
            done_at         timestamptz,
            PRIMARY KEY (member_id, erasure_id),
            CONSTRAINT erasure_requests_erasure UNIQUE (erasure_id)
        )
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX erasure_requests_one_open ON erasure_requests (member_id) "
        "WHERE state IN ('requested', 'confirmed')"
    )
    op.execute(
        "CREATE INDEX erasure_requests_due ON erasure_requests (erase_after) "
        "WHERE state = 'confirmed'"
    )


def downgrade() -> None:
    op.execute("DROP TABLE erasure_requests")
