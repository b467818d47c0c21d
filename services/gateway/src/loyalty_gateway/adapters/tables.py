"""The gateway's tables declared in SQLAlchemy Core, for the schema test to compare with the
migrations. The gateway's stores write their SQL by hand; a table is declared here once it has
a store of its own (`console_job_runs`, adapters/job_runs.py)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, Table, Text
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = MetaData()

console_job_runs = Table(
    "console_job_runs",
    metadata,
    Column("run_id", UUID(as_uuid=False), primary_key=True),
    Column("job", Text, nullable=False),
    Column("as_of", DateTime(timezone=True), nullable=False),
    Column("operator_id", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("done", BigInteger, nullable=False, server_default="0"),
    Column("remaining", BigInteger, nullable=False, server_default="0"),
    Column("counts", JSONB, nullable=False, server_default="{}"),
    Column("error", Text, nullable=False, server_default=""),
    # Taken over by a resume: the driver that took it last writes; an older one's writes miss.
    Column("attempt", Integer, nullable=False, server_default="1"),
    Column("resumed_by", Text, nullable=False, server_default=""),
    Column("resume_reason", Text, nullable=False, server_default=""),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),  # the driver's heartbeat
    Column("ended_at", DateTime(timezone=True)),
)
