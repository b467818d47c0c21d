"""The schema a service's code declares (SQLAlchemy metadata) is the schema its migrations build:
every service's database is migrated from nothing and compared with Alembic's
`compare_metadata`. A column added to a migration but not to tables.py (or the other way round)
fails here, not in production.

What is compared: tables, columns, their types and nullability, unique constraints. Indexes are
left to the migrations (queries never name them; a partial or expression index would be declared
twice for nothing). Services whose repositories write their SQL by hand (tiers, benefits)
declare no metadata of their own: for them the kit's tables are compared; the gateway and
benefits declare the tables of their newer stores only."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from loyalty_benefits.adapters.tables import metadata as benefits_tables
from loyalty_engagement.adapters.tables import metadata as engagement_tables
from loyalty_gateway.adapters.tables import metadata as gateway_tables
from loyalty_identity.adapters.tables import metadata as identity_tables
from loyalty_insights.adapters.tables import metadata as insights_tables
from loyalty_kit import db, migrations
from loyalty_kit.settings import Settings
from loyalty_kit.tables import metadata as kit_tables
from loyalty_points.adapters.tables import metadata as points_tables
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection

_numbers = itertools.count()

SERVICES = {
    "identity": (kit_tables, identity_tables),
    "points": (kit_tables, points_tables),
    "tiers": (kit_tables,),
    "benefits": (kit_tables, benefits_tables),
    "insights": (kit_tables, insights_tables),
    "engagement": (kit_tables, engagement_tables),
    "gateway": (kit_tables, gateway_tables),
}
DECLARES_EVERY_TABLE = {"identity", "points", "insights", "engagement"}


def declared(parts: tuple[MetaData, ...]) -> MetaData:
    combined = MetaData()
    for part in parts:
        for table in part.tables.values():
            table.to_metadata(combined)
    return combined


def differences(connection: Connection, metadata: MetaData, every_table: bool) -> list[Any]:
    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if type_ == "index":
            return False
        # A table only the database has counts where the code declares every table.
        return every_table or not (type_ == "table" and reflected and compare_to is None)

    context = MigrationContext.configure(
        connection, opts={"include_object": include, "compare_type": True}
    )
    return list(compare_metadata(context, metadata))


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_the_declared_schema_is_the_migrated_one(settings: Settings, service: str) -> None:
    name = f"schema{next(_numbers)}"
    await db.ensure_database(settings.server_url, settings.database_for(name))
    engine = db.create_engine(settings.service_database_url(name), pool_size=1)
    try:
        await migrations.upgrade(engine, f"loyalty_{service}:migrations")
        metadata = declared(SERVICES[service])
        async with engine.connect() as conn:
            found = await conn.run_sync(differences, metadata, service in DECLARES_EVERY_TABLE)
    finally:
        await engine.dispose()
    assert found == [], "\n".join(map(str, found))
