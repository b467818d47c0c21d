"""Wrong member-code guesses in a table of their own (they were rows of the kit's
`kit_idempotency_keys`, a table for request ids): a handle's and a client's, by the keyed hash
of the value only, and when. The primary key leads with (kind, value_hash, guessed_at): the
count a scan reads ("this handle's guesses since T") is a range of it.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE member_code_wrong_guesses (
            kind       text NOT NULL,
            value_hash bytea NOT NULL,
            guessed_at timestamptz NOT NULL,
            guess_id   uuid NOT NULL,
            PRIMARY KEY (kind, value_hash, guessed_at, guess_id),
            CONSTRAINT member_code_wrong_guesses_kind CHECK (kind IN ('handle', 'client'))
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE member_code_wrong_guesses")
