"""The audit log: one row per audited call of any service (`loyalty.audit.v1.AuditEntryRecorded`,
kept by the gateway's consumer; redeliveries dropped by the entry id).

Append-only: a trigger refuses UPDATE and DELETE of a row, and TRUNCATE of the table. No
personal data in clear: the services redact requests before they write an entry.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE audit_log (
            entry_id     uuid PRIMARY KEY,
            at           timestamptz NOT NULL,
            service      text NOT NULL,
            method       text NOT NULL,
            outcome      text NOT NULL,
            unit         text NOT NULL DEFAULT '',
            client_id    text NOT NULL DEFAULT '',
            operator_id  text NOT NULL DEFAULT '',
            reason       text NOT NULL DEFAULT '',
            request_id   text NOT NULL DEFAULT '',
            target       text NOT NULL DEFAULT '',
            before       jsonb,
            after        jsonb,
            request      jsonb NOT NULL DEFAULT '{}'::jsonb,
            recorded_at  timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX audit_log_at ON audit_log (at DESC, entry_id DESC)")
    op.execute("CREATE INDEX audit_log_target ON audit_log (target, at DESC)")
    op.execute("CREATE INDEX audit_log_operator ON audit_log (operator_id, at DESC)")
    op.execute(
        """
        CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
    )
    op.execute(
        "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
    )


def downgrade() -> None:
    op.execute("DROP TABLE audit_log")
    op.execute("DROP FUNCTION audit_log_append_only()")
