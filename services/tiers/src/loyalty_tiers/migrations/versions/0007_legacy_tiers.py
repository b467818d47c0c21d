"""legacy_tiers: what became of each legacy account's tier when its unit's members were
imported, one row per (unit, legacy key), so a legacy tier becomes a status match once
whichever file or import brings it again. `grant_id` is the status match (NULL: nothing was
granted, and `outcome` says why: not on the ladder, ended already, the member erased; a later
import, with the tier mapped anew, may then grant it). Opaque keys, ids and tier codes only:
no personal data.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE legacy_tiers (
            unit          text NOT NULL,
            legacy_key    text NOT NULL,
            member_id     uuid NOT NULL,
            member_import text NOT NULL,
            tier          text NOT NULL,
            outcome       text NOT NULL,
            grant_id      uuid,
            ends_at       timestamptz NOT NULL,
            recorded_at   timestamptz NOT NULL,
            PRIMARY KEY (unit, legacy_key)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE legacy_tiers")
