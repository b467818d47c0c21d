"""The catalogue's versions (and the per-process cache of the one in force)."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_benefits.adapters.stores.base import Store
from loyalty_benefits.domain.catalogue import (
    Catalogue,
    catalogue_from_json,
    catalogue_to_json,
)


class CatalogueCache:
    """The catalogue in force as last read, one per service process (and database): versions
    never change once published, so only a newer version is read and parsed again. Callers
    treat the catalogue as read-only."""

    def __init__(self) -> None:
        self.catalogue: Catalogue | None = None


class CatalogueStore(Store):
    def __init__(self, session: AsyncSession, cache: CatalogueCache | None = None) -> None:
        super().__init__(session)
        self.cache = cache or CatalogueCache()

    async def latest(self) -> Catalogue | None:
        """The latest version: one round trip, the document sent only when it is not the one
        cached (every query of the service reads it)."""
        conn = await self.conn()
        cached = self.cache.catalogue
        row = await conn.fetchrow(
            "SELECT version, created_at, CASE WHEN version = $1 THEN NULL ELSE document END "
            "AS document FROM catalogue_versions ORDER BY version DESC LIMIT 1",
            cached.version if cached is not None else None,
        )
        if row is None:
            return None
        if cached is not None and row["document"] is None:
            return cached
        document = row["document"]  # the engine's jsonb codec may have decoded it already
        found = catalogue_from_json(
            row["version"],
            row["created_at"],
            json.loads(document) if isinstance(document, str) else document,
        )
        if cached is None or found.version > cached.version:
            self.cache.catalogue = found
        return found

    async def add(self, catalogue: Catalogue) -> tuple[int, datetime]:
        conn = await self.conn()
        await conn.execute("LOCK TABLE catalogue_versions IN EXCLUSIVE MODE")
        row = await conn.fetchrow(
            "INSERT INTO catalogue_versions (version, document) "
            "SELECT coalesce(max(version), 0) + 1, $1::jsonb FROM catalogue_versions "
            "RETURNING version, created_at",
            json.dumps(catalogue_to_json(catalogue)),
        )
        assert row is not None
        return int(row["version"]), row["created_at"]
