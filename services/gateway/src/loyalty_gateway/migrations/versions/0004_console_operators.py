"""The back-office console's operators and their sessions.

An operator signs in to /console with a login (an opaque handle, never staff personal data) and
an argon2id password hash; the role gives the scopes of the short tokens the console calls the
services with, and for unit_manager its one unit. `failed_attempts` and `locked_until` make the
lock-out. A session row is kept only by the sha256 of its cookie, with its CSRF token, the last
time it was used (idle timeout) and its absolute end.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE operators (
            operator_id          uuid PRIMARY KEY,
            login                text NOT NULL UNIQUE,
            role                 text NOT NULL CHECK (role IN
                                   ('group_admin', 'unit_manager', 'customer_service', 'analyst')),
            unit                 text NOT NULL DEFAULT 'group',
            password_hash        text NOT NULL,
            failed_attempts      integer NOT NULL DEFAULT 0,
            locked_until         timestamptz,
            created_at           timestamptz NOT NULL DEFAULT now(),
            password_changed_at  timestamptz NOT NULL DEFAULT now(),
            disabled_at          timestamptz
        )
        """
    )
    op.execute(
        """
        CREATE TABLE console_sessions (
            session_hash  bytea PRIMARY KEY,
            operator_id   uuid NOT NULL REFERENCES operators (operator_id),
            csrf_token    text NOT NULL,
            created_at    timestamptz NOT NULL,
            last_seen_at  timestamptz NOT NULL,
            expires_at    timestamptz NOT NULL,
            ended_at      timestamptz
        )
        """
    )
    op.execute(
        "CREATE INDEX console_sessions_open ON console_sessions (operator_id) "
        "WHERE ended_at IS NULL"
    )


def downgrade() -> None:
    op.execute("DROP TABLE console_sessions")
    op.execute("DROP TABLE operators")
