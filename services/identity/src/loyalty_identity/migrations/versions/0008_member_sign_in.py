"""Members signing in themselves: sign-in challenges (a code sent to a phone, kept by its keyed
hash; the limits per phone and per client address, both by keyed hashes, count from them),
member sessions and their refresh tokens (by hash).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE sign_in_challenges (
            challenge_id uuid PRIMARY KEY,
            phone_index bytea NOT NULL,
            address_index bytea NOT NULL,
            key_id text NOT NULL,
            phone_sealed bytea NOT NULL,
            code_hash bytea NOT NULL,
            attempts integer NOT NULL,
            state text NOT NULL,
            created_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL
        )
        """
    )
    op.execute(
        "CREATE INDEX sign_in_challenges_phone ON sign_in_challenges (phone_index, created_at)"
    )
    op.execute(
        "CREATE INDEX sign_in_challenges_address ON sign_in_challenges (address_index, created_at)"
    )
    op.execute("CREATE INDEX sign_in_challenges_created ON sign_in_challenges (created_at)")
    op.execute(
        """
        CREATE TABLE member_sessions (
            member_id uuid NOT NULL,
            session_id uuid NOT NULL,
            method text NOT NULL,
            created_at timestamptz NOT NULL,
            revoked_at timestamptz,
            revoked_reason text NOT NULL DEFAULT '',
            PRIMARY KEY (member_id, session_id),
            CONSTRAINT member_sessions_session UNIQUE (session_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE member_refresh_tokens (
            token_hash bytea PRIMARY KEY,
            session_id uuid NOT NULL,
            member_id uuid NOT NULL,
            issued_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL,
            used_at timestamptz
        )
        """
    )
    op.execute("CREATE INDEX member_refresh_tokens_session ON member_refresh_tokens (session_id)")


def downgrade() -> None:
    op.execute("DROP TABLE member_refresh_tokens")
    op.execute("DROP TABLE member_sessions")
    op.execute("DROP TABLE sign_in_challenges")
