"""activities: members' recorded activities (behaviour points), one row per (unit, activity ID),
the unit's idempotency key, written in the transaction of the award. `points` is what the
activity awarded (0: no rule, or `limit_reason`/`limit` say which limit stopped it) and
`posting_id` its ACTIVITY posting. The index counts a member's awarded activities of a type in a
period, which the limits ask under the member's account lock. Ids, types, figures and the
unit's attributes (no personal data).

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
        CREATE TABLE activities (
            unit              text NOT NULL,
            activity_id       text NOT NULL,
            member_id         uuid NOT NULL,
            activity_type     text NOT NULL,
            occurred_at       timestamptz NOT NULL,
            attributes        jsonb NOT NULL,
            fingerprint       text NOT NULL,
            recorded_at       timestamptz NOT NULL,
            programme_version bigint NOT NULL,
            points            bigint NOT NULL,
            funding_unit      text NOT NULL,
            posting_id        uuid,
            limit_reason      text NOT NULL,
            "limit"           text NOT NULL,
            PRIMARY KEY (unit, activity_id)
        )
        """
    )
    op.execute(
        "CREATE INDEX activities_awarded ON activities (member_id, activity_type, occurred_at) "
        "WHERE points > 0"
    )


def downgrade() -> None:
    op.execute("DROP TABLE activities")
