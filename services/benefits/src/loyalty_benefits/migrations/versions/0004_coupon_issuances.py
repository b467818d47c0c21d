"""Bulk coupon issuances to a segment, with their position and progress.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE coupon_issuances (
            issuance_id       uuid PRIMARY KEY,
            template_code     text NOT NULL,
            tag               text NOT NULL,
            issuer_unit       text NOT NULL,
            chunk_size        integer NOT NULL CHECK (chunk_size > 0),
            state             text NOT NULL,
            page_token        text NOT NULL DEFAULT '',
            chunks            integer NOT NULL DEFAULT 0,
            total_members     bigint NOT NULL DEFAULT 0,
            processed_members bigint NOT NULL DEFAULT 0,
            issued_coupons    bigint NOT NULL DEFAULT 0,
            created_at        timestamptz NOT NULL,
            updated_at        timestamptz NOT NULL,
            done_at           timestamptz,
            failure_reason    text NOT NULL DEFAULT '',
            failure_message   text NOT NULL DEFAULT ''
        )
        """
    )
    # What a restarted replica looks for.
    op.execute(
        "CREATE INDEX coupon_issuances_running ON coupon_issuances (created_at) "
        "WHERE state = 'running'"
    )


def downgrade() -> None:
    op.execute("DROP TABLE coupon_issuances")
