"""Alembic, shared: each service keeps its own migrations folder, whose env.py is one call to
`run_env()`. Migrations run on start-up in dev (LOYALTY_MIGRATE_ON_START) and as the
`<service> migrate` command for deployment; an advisory lock lets replicas start together.

The kit's own tables are migrated once, by the revisions in `kit_versions/` (revision "0001",
the first of every service's history): they are a version location of every service whose
migrations folder does not carry its own copy (the gateway's still does).
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

from alembic import command, context, op
from alembic.config import Config
from alembic.util import coerce_resource_to_filename
from sqlalchemy import MetaData, text
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from loyalty_kit import db
from loyalty_kit.tables import KIT_DDL_V1


def create_kit_tables_v1() -> None:
    """Create the outbox, inbox and idempotency tables (call from a service's first migration)."""
    for statement in KIT_DDL_V1:
        op.execute(statement)


def drop_kit_tables_v1() -> None:
    op.execute("DROP TABLE IF EXISTS kit_idempotency_keys, kit_inbox, kit_outbox")
    op.execute("DROP FUNCTION IF EXISTS kit_outbox_notify()")


def run_env(target_metadata: MetaData | None = None) -> None:
    """The body of every service's migrations/env.py."""
    config = context.config
    connection: Connection | None = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations with `<service> migrate` (loyalty_kit.migrations)")
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


KIT_VERSIONS = Path(__file__).parent / "kit_versions"


def version_locations(script_location: str) -> list[Path]:
    """Where a service's revisions are: the kit's (unless it carries its own copy) and its own."""
    own = Path(coerce_resource_to_filename(script_location)) / "versions"
    if (own / "0001_kit_tables.py").exists():
        return [own]
    return [KIT_VERSIONS, own]


def alembic_config(script_location: str, connection: Connection | None = None) -> Config:
    """The Alembic configuration of a service's migrations (`loyalty_points:migrations`)."""
    config = Config()
    config.set_main_option("script_location", script_location)
    config.set_main_option("path_separator", "os")
    config.set_main_option(
        "version_locations", os.pathsep.join(str(p) for p in version_locations(script_location))
    )
    config.attributes["connection"] = connection
    return config


async def upgrade(engine: AsyncEngine, script_location: str, revision: str = "head") -> None:
    lock_key = zlib.crc32(script_location.encode())

    def _run(sync_conn: Connection) -> None:
        sync_conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key})
        command.upgrade(alembic_config(script_location, sync_conn), revision)

    async with engine.begin() as conn:
        await conn.run_sync(_run)


async def current_revision(engine: AsyncEngine) -> Any:
    async with engine.connect() as conn:
        try:
            result = await conn.execute(text("SELECT version_num FROM alembic_version"))
        except Exception:
            return None
        return result.scalar()


async def upgrade_database(url: URL, script_location: str) -> None:
    """Upgrade the database at `url` to head over a connection of its own (a tool's or a
    benchmark's database, with no engine of a service to borrow)."""
    engine = db.create_engine(url, pool_size=1)
    try:
        await upgrade(engine, script_location)
    finally:
        await engine.dispose()
