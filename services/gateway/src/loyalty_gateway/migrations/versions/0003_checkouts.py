"""Checkouts paid with points, a coupon and a benefit: the saga's log.

One row per (API client, request_id). `attempt` numbers the tries of that request (the steps'
request ids in the services carry it); `state` is running, completed, open (the last attempt
was given back: the next call tries again), undoing (a give-back not finished yet: the gateway's
job finishes it) or refunded. The request is kept without the member's identity.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE checkouts (
            checkout_id  uuid PRIMARY KEY,
            scope        text NOT NULL,
            request_id   text NOT NULL,
            fingerprint  text NOT NULL,
            client_id    text NOT NULL,
            unit         text NOT NULL,
            order_id     text NOT NULL,
            member_id    text NOT NULL,
            request      bytea NOT NULL,
            attempt      integer NOT NULL DEFAULT 1,
            state        text NOT NULL,
            response     bytea,
            created_at   timestamptz NOT NULL DEFAULT now(),
            updated_at   timestamptz NOT NULL DEFAULT now(),
            UNIQUE (scope, request_id)
        )
        """
    )
    op.execute("CREATE INDEX checkouts_order ON checkouts (unit, order_id, member_id)")
    op.execute(
        "CREATE INDEX checkouts_unfinished ON checkouts (updated_at) "
        "WHERE state IN ('running', 'undoing')"
    )


def downgrade() -> None:
    op.execute("DROP TABLE checkouts")
