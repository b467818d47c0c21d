"""The console's runs of the stepped batch jobs (year-end, expiry, grant expiry, birthday
gifts), shared by every gateway replica: progress written after each step, at most one running
run of a job (a partial unique index), a heartbeat (`updated_at`) that tells a run whose replica
died (older than the lease) from one under way.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE console_job_runs (
            run_id         uuid PRIMARY KEY,
            job            text NOT NULL,
            as_of          timestamptz NOT NULL,
            operator_id    text NOT NULL,
            reason         text NOT NULL,
            state          text NOT NULL
                CHECK (state IN ('running', 'succeeded', 'failed', 'interrupted')),
            done           bigint NOT NULL DEFAULT 0,
            remaining      bigint NOT NULL DEFAULT 0,
            counts         jsonb NOT NULL DEFAULT '{}'::jsonb,
            error          text NOT NULL DEFAULT '',
            attempt        integer NOT NULL DEFAULT 1,
            resumed_by     text NOT NULL DEFAULT '',
            resume_reason  text NOT NULL DEFAULT '',
            started_at     timestamptz NOT NULL,
            updated_at     timestamptz NOT NULL,
            ended_at       timestamptz
        )
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX console_job_runs_one_running ON console_job_runs (job) "
        "WHERE state = 'running'"
    )
    op.execute("CREATE INDEX console_job_runs_started ON console_job_runs (started_at DESC)")


def downgrade() -> None:
    op.execute("DROP TABLE console_job_runs")
