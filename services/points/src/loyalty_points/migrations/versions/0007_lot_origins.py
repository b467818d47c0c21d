"""lots.origin_member_id: the member a lot came from when a merge moved it to the survivor
(NULL: the holder's own), so an unmerge gives back what is left of those lots. Lots moved by
merges before this revision are found by their posting, which stays with the member that
earned or received the points.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE lots ADD COLUMN origin_member_id uuid")
    op.execute(
        "UPDATE lots AS l SET origin_member_id = p.member_id FROM postings AS p "
        "WHERE p.posting_id = l.posting_id AND p.member_id <> l.member_id"
    )
    op.execute(
        "CREATE INDEX lots_by_origin ON lots (member_id, origin_member_id) "
        "WHERE origin_member_id IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE lots DROP COLUMN origin_member_id")
