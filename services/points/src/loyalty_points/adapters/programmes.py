"""Programme versions in PostgreSQL, and the process's cache of them."""

from __future__ import annotations

import time
from datetime import datetime

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty_points.adapters import tables as t
from loyalty_points.domain.programme import (
    Programme,
    in_force,
    in_force_between,
    programme_from_json,
    programme_to_json,
)


class ProgrammeCache:
    """Programme versions are immutable once published: a process keeps them all and looks for
    new ones every `ttl` seconds (a version published on another replica is seen within that;
    one published here at once)."""

    def __init__(self, ttl: float = 5.0) -> None:
        self.ttl = ttl
        self._versions: list[Programme] | None = None
        self._expires = 0.0

    def get(self) -> list[Programme] | None:
        return self._versions if time.monotonic() < self._expires else None

    def put(self, versions: list[Programme]) -> None:
        self._versions, self._expires = versions, time.monotonic() + self.ttl

    def invalidate(self) -> None:
        self._versions, self._expires = None, 0.0


class ProgrammeRows:
    session: AsyncSession
    programmes: ProgrammeCache

    # --- programme ----------------------------------------------------------------------------
    async def programme_at(self, at: datetime) -> Programme | None:
        return in_force(await self._versions(), at)

    async def programmes_between(self, since: datetime, until: datetime) -> list[Programme]:
        return in_force_between(await self._versions(), since, until)

    async def _versions(self) -> list[Programme]:
        """Every version, in effect order (effective_from, then version)."""
        versions = self.programmes.get()
        if versions is None:
            rows = await self.session.execute(
                select(t.programme_versions).order_by(
                    t.programme_versions.c.effective_from, t.programme_versions.c.version
                )
            )
            versions = [programme_from_json(r.version, r.effective_from, r.rules) for r in rows]
            self.programmes.put(versions)
        return versions

    async def programme_version(self, version: int) -> Programme | None:
        row = (
            await self.session.execute(
                select(t.programme_versions).where(t.programme_versions.c.version == version)
            )
        ).first()
        return programme_from_json(row.version, row.effective_from, row.rules) if row else None

    async def add_programme(self, programme: Programme, reason: str) -> int:
        # A table lock keeps version numbers gap-free and ordered under concurrent publishers.
        await self.session.execute(
            select(func.pg_advisory_xact_lock(0x9E0_9A11))  # type: ignore[arg-type]
        )
        latest = await self.session.scalar(select(func.max(t.programme_versions.c.version)))
        version = int(latest or 0) + 1
        await self.session.execute(
            insert(t.programme_versions).values(
                version=version,
                effective_from=programme.effective_from,
                rules=programme_to_json(programme),
                reason=reason,
            )
        )
        self.programmes.invalidate()
        return version
