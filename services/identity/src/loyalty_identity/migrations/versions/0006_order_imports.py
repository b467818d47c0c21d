"""Order imports: a unit's past orders brought in by file, as long-running operations.

- `order_imports`: one row per import (its spec, state, counters, checkpoint, lease, the file's
  size and digest, and its own data key wrapped by the master key, which seals the file);
- `order_import_parts`: the uploaded file, part by part, sealed (deleted when the import ends
  unless the operator keeps it);
- `order_import_rows`: the report, only of rows not carried over (unknown member, duplicate,
  refused): a million imported orders leave no million report rows;
- `imported_orders`: every order carried over, once per unit and order ID (what makes a second
  import of the same orders a no-op, whichever import and row brought them).

The imports' audit entries go to `import_audit` with the member imports' (ids do not collide).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-20
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE order_imports (
            import_id        uuid PRIMARY KEY,
            unit             text NOT NULL,
            spec             jsonb NOT NULL,
            state            text NOT NULL,
            rows_read        bigint NOT NULL DEFAULT 0,
            imported         bigint NOT NULL DEFAULT 0,
            unknown_member   bigint NOT NULL DEFAULT 0,
            duplicates       bigint NOT NULL DEFAULT 0,
            rejected         bigint NOT NULL DEFAULT 0,
            checkpoint       bigint NOT NULL DEFAULT 0,
            bytes_read       bigint NOT NULL DEFAULT 0,
            error_reason     text NOT NULL DEFAULT '',
            error_message    text NOT NULL DEFAULT '',
            error_metadata   jsonb NOT NULL DEFAULT '{}',
            file_bytes       bigint NOT NULL DEFAULT 0,
            file_sha256      text NOT NULL DEFAULT '',
            file_kept        boolean NOT NULL DEFAULT true,
            key_id           text NOT NULL,
            wrapped_key      bytea NOT NULL,
            created_by       text NOT NULL,
            request_id       text NOT NULL,
            request_fingerprint text NOT NULL DEFAULT '',
            lease_owner      text NOT NULL DEFAULT '',
            leased_until     timestamptz,
            cancel_requested boolean NOT NULL DEFAULT false,
            created_at       timestamptz NOT NULL,
            updated_at       timestamptz NOT NULL,
            started_at       timestamptz,
            ended_at         timestamptz,
            CONSTRAINT order_imports_request_once UNIQUE (created_by, request_id)
        )
        """
    )
    op.execute("CREATE INDEX order_imports_listed ON order_imports (unit, created_at DESC)")
    op.execute(
        "CREATE INDEX order_imports_running ON order_imports (created_at) WHERE state = 'running'"
    )
    op.execute(
        """
        CREATE TABLE order_import_parts (
            import_id uuid NOT NULL,
            seq       integer NOT NULL,
            sealed    bytea NOT NULL,
            PRIMARY KEY (import_id, seq)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE order_import_rows (
            import_id  uuid NOT NULL,
            row_number bigint NOT NULL,
            outcome    text NOT NULL,
            member_id  uuid,
            reason     text NOT NULL DEFAULT '',
            detail     text NOT NULL DEFAULT '',
            PRIMARY KEY (import_id, row_number)
        )
        """
    )
    op.execute(
        "CREATE INDEX order_import_rows_outcome "
        "ON order_import_rows (import_id, outcome, row_number)"
    )
    op.execute(
        """
        CREATE TABLE imported_orders (
            unit       text NOT NULL,
            order_id   text NOT NULL,
            member_id  uuid NOT NULL,
            import_id  uuid NOT NULL,
            row_number bigint NOT NULL,
            PRIMARY KEY (unit, order_id)
        )
        """
    )


def downgrade() -> None:
    for table in ("imported_orders", "order_import_rows", "order_import_parts", "order_imports"):
        op.execute(f"DROP TABLE {table}")
