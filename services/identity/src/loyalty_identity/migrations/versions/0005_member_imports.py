"""Member imports: a unit's legacy members brought in by file, as long-running operations.

- `member_imports`: one row per import (its spec, state, counters, the checkpoint of the last
  committed row, the lease of the replica processing it, the file's size and digest, and the
  import's own data key wrapped by the master key: the file and the merge candidates' rows are
  personal data, sealed with it);
- `import_file_parts`: the uploaded file, part by part, sealed (deleted when the import ends
  unless the operator keeps it);
- `import_rows`: the report, one row per file row (outcome, member, reason, masked detail, the
  legacy number's blind index);
- `merge_candidates`: rows whose identities belong to two or more members, for an operator
  (the row itself sealed until it is decided; at most one open candidate per legacy account);
- `import_audit`: who created, cancelled or decided what, and why (append-only).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-14
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE member_imports (
            import_id        uuid PRIMARY KEY,
            unit             text NOT NULL,
            spec             jsonb NOT NULL,
            state            text NOT NULL,
            rows_read        bigint NOT NULL DEFAULT 0,
            created          bigint NOT NULL DEFAULT 0,
            linked           bigint NOT NULL DEFAULT 0,
            unchanged        bigint NOT NULL DEFAULT 0,
            candidates       bigint NOT NULL DEFAULT 0,
            merged           bigint NOT NULL DEFAULT 0,
            rejected         bigint NOT NULL DEFAULT 0,
            legacy_points    bigint NOT NULL DEFAULT 0,
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
            CONSTRAINT member_imports_request_once UNIQUE (created_by, request_id)
        )
        """
    )
    op.execute("CREATE INDEX member_imports_listed ON member_imports (unit, created_at DESC)")
    op.execute(
        "CREATE INDEX member_imports_running ON member_imports (created_at) WHERE state = 'running'"
    )
    op.execute(
        """
        CREATE TABLE import_file_parts (
            import_id uuid NOT NULL,
            seq       integer NOT NULL,
            sealed    bytea NOT NULL,
            PRIMARY KEY (import_id, seq)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE import_rows (
            import_id          uuid NOT NULL,
            row_number         bigint NOT NULL,
            outcome            text NOT NULL,
            member_id          uuid,
            reason             text NOT NULL DEFAULT '',
            detail             text NOT NULL DEFAULT '',
            legacy_key         bytea,
            merge_candidate_id uuid,
            PRIMARY KEY (import_id, row_number)
        )
        """
    )
    op.execute(
        "CREATE INDEX import_rows_legacy ON import_rows (import_id, legacy_key) "
        "WHERE legacy_key IS NOT NULL"
    )
    op.execute("CREATE INDEX import_rows_outcome ON import_rows (import_id, outcome, row_number)")
    op.execute(
        """
        CREATE TABLE merge_candidates (
            candidate_id     uuid PRIMARY KEY,
            import_id        uuid NOT NULL,
            row_number       bigint NOT NULL,
            unit             text NOT NULL,
            legacy_key       bytea NOT NULL,
            evidence         jsonb NOT NULL,
            row_sealed       bytea,
            legacy_points    bigint NOT NULL DEFAULT 0,
            points_expire_at timestamptz,
            tier_code        text NOT NULL DEFAULT '',
            tier_ends_at     timestamptz,
            birthday_month   integer NOT NULL DEFAULT 0,
            birthday_day     integer NOT NULL DEFAULT 0,
            state            text NOT NULL,
            survivor         uuid,
            created_at       timestamptz NOT NULL,
            resolved_at      timestamptz
        )
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX merge_candidates_open_once ON merge_candidates (unit, legacy_key) "
        "WHERE state = 'open'"
    )
    op.execute(
        "CREATE INDEX merge_candidates_listed ON merge_candidates (created_at, candidate_id)"
    )
    op.execute(
        "CREATE INDEX merge_candidates_of_import ON merge_candidates (import_id, row_number)"
    )
    op.execute(
        """
        CREATE TABLE import_audit (
            import_id    uuid NOT NULL,
            seq          bigserial,
            action       text NOT NULL,
            candidate_id uuid,
            unit         text NOT NULL,
            client_id    text NOT NULL,
            reason       text NOT NULL DEFAULT '',
            detail       jsonb NOT NULL DEFAULT '{}',
            at           timestamptz NOT NULL,
            PRIMARY KEY (import_id, seq)
        )
        """
    )


def downgrade() -> None:
    for table in (
        "import_audit",
        "merge_candidates",
        "import_rows",
        "import_file_parts",
        "member_imports",
    ):
        op.execute(f"DROP TABLE {table}")
