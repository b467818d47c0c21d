"""Coupon issuances to a segment, chunk by chunk."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from loyalty_benefits.adapters.stores.base import Store
from loyalty_benefits.domain.issuances import CouponIssuance, IssuanceState


def _issuance(row: Any) -> CouponIssuance:
    return CouponIssuance(
        issuance_id=str(row["issuance_id"]),
        template_code=row["template_code"],
        tag=row["tag"],
        issuer_unit=row["issuer_unit"],
        chunk_size=row["chunk_size"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        state=IssuanceState(row["state"]),
        page_token=row["page_token"],
        chunks=row["chunks"],
        total_members=row["total_members"],
        processed_members=row["processed_members"],
        issued_coupons=row["issued_coupons"],
        done_at=row["done_at"],
        failure_reason=row["failure_reason"],
        failure_message=row["failure_message"],
        segment=row["segment"],
    )


class CouponIssuances(Store):
    async def add(self, i: CouponIssuance) -> None:
        conn = await self.conn()
        await conn.execute(
            "INSERT INTO coupon_issuances (issuance_id, template_code, tag, issuer_unit, "
            "chunk_size, state, created_at, updated_at, segment) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            i.issuance_id,
            i.template_code,
            i.tag,
            i.issuer_unit,
            i.chunk_size,
            i.state.value,
            i.created_at,
            i.updated_at,
            i.segment,
        )

    async def get(self, issuance_id: str, *, lock: bool = False) -> CouponIssuance | None:
        conn = await self.conn()
        row = await conn.fetchrow(
            "SELECT * FROM coupon_issuances WHERE issuance_id = $1"
            + (" FOR UPDATE" if lock else ""),
            issuance_id,
        )
        return None if row is None else _issuance(row)

    async def save(self, i: CouponIssuance) -> None:
        conn = await self.conn()
        await conn.execute(
            "UPDATE coupon_issuances SET state = $2, page_token = $3, chunks = $4, "
            "total_members = $5, processed_members = $6, issued_coupons = $7, updated_at = $8, "
            "done_at = $9, failure_reason = $10, failure_message = $11 WHERE issuance_id = $1",
            i.issuance_id,
            i.state.value,
            i.page_token,
            i.chunks,
            i.total_members,
            i.processed_members,
            i.issued_coupons,
            i.updated_at,
            i.done_at,
            i.failure_reason,
            i.failure_message,
        )

    async def page(
        self,
        *,
        issuer_unit: str | None,
        state: IssuanceState | None,
        before: tuple[datetime, str] | None,
        limit: int,
    ) -> list[CouponIssuance]:
        """Issuances newest first (by creation, then ID), those created before `before`; only
        `issuer_unit`'s when it is given, only in `state` when it is given."""
        conn = await self.conn()
        rows = await conn.fetch(
            "SELECT * FROM coupon_issuances "
            "WHERE ($1::text IS NULL OR issuer_unit = $1) AND ($2::text IS NULL OR state = $2) "
            "AND ($3::timestamptz IS NULL OR (created_at, issuance_id) < ($3, $4::uuid)) "
            "ORDER BY created_at DESC, issuance_id DESC LIMIT $5",
            issuer_unit,
            state.value if state else None,
            before[0] if before else None,
            before[1] if before else None,
            limit,
        )
        return [_issuance(r) for r in rows]

    async def running(self, limit: int) -> list[str]:
        """Issuances still running, oldest first (a restarted replica carries them on)."""
        conn = await self.conn()
        rows = await conn.fetch(
            "SELECT issuance_id FROM coupon_issuances WHERE state = 'running' "
            "ORDER BY created_at LIMIT $1",
            limit,
        )
        return [str(r["issuance_id"]) for r in rows]
