"""legacy_balances: what became of each legacy account's balance when its unit's members were
imported, one row per (unit, legacy key), so a balance is carried over once whichever file or
import brings it again. `posting_id` is the MIGRATION posting (NULL: nothing was credited, and
`outcome` says why: below the rate, expired, the member erased; a later import may then carry
it over). Opaque keys, ids and figures only: no personal data.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE legacy_balances (
            unit          text NOT NULL,
            legacy_key    text NOT NULL,
            member_id     uuid NOT NULL,
            member_import text NOT NULL,
            legacy_points bigint NOT NULL,
            points        bigint NOT NULL,
            outcome       text NOT NULL,
            posting_id    uuid,
            expires_at    timestamptz,
            carried_at    timestamptz NOT NULL,
            PRIMARY KEY (unit, legacy_key)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE legacy_balances")
