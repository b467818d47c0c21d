"""The figures as the contract's messages."""

from __future__ import annotations

from decimal import Decimal

from loyalty.common.v1 import money_pb2
from loyalty.insights.v1 import insights_service_pb2 as pb
from loyalty_kit.money import money
from loyalty_kit.timestamps import timestamp

from loyalty_insights.domain.cohorts import Cohort, HealthMonth
from loyalty_insights.domain.crossunit import MonthOfMembers
from loyalty_insights.domain.liability import UnitLiability
from loyalty_insights.domain.rfm import RfmScore
from loyalty_insights.service_layer.figures import Liability, PointValue, Rfm, SpendShare
from loyalty_insights.service_layer.refresh import RefreshReport


def _value(points: int, point_value: PointValue | None) -> money_pb2.Money | None:
    if point_value is None:
        return None
    return money(Decimal(points) * point_value.value, point_value.currency)


def unit_liability(found: UnitLiability, point_value: PointValue | None) -> pb.UnitLiability:
    message = pb.UnitLiability(
        unit=found.unit,
        points_issued=found.issued,
        points_redeemed=found.redeemed,
        points_expired=found.expired,
        points_forfeited=found.forfeited,
        points_outstanding=found.outstanding,
        breakage=found.breakage,
    )
    if (value := _value(found.outstanding, point_value)) is not None:
        message.value_outstanding.CopyFrom(value)
    for month, points in found.months():
        expiring = message.expiring.add(month=month, points=points)
        if (value := _value(points, point_value)) is not None:
            expiring.value.CopyFrom(value)
    return message


def liability_response(found: Liability) -> pb.GetPointsLiabilityResponse:
    return pb.GetPointsLiabilityResponse(
        units=[unit_liability(u, found.point_value) for u in found.units],
        total=unit_liability(found.total, found.point_value),
        programme_version=found.point_value.version if found.point_value else 0,
    )


def month_message(found: MonthOfMembers) -> pb.MonthOfMembers:
    return pb.MonthOfMembers(
        month=found.month, active_members=found.active, multi_unit_members=found.multi_unit
    )


def spend_response(found: SpendShare) -> pb.GetSpendShareResponse:
    return pb.GetSpendShareResponse(
        units=[
            pb.UnitSpend(
                unit=s.unit,
                spend=money(s.spend, found.currency) if found.currency else None,
                share=s.share,
                members=s.members,
            )
            for s in found.units
        ],
        total_spend=money(found.total, found.currency) if found.currency else None,
    )


def rfm_member(found: RfmScore, currency: str) -> pb.RfmMember:
    message = pb.RfmMember(
        member=f"members/{found.member_id}",
        frequency=found.frequency,
        monetary=money(found.monetary, currency) if currency else None,
        recency_score=found.recency_score,
        frequency_score=found.frequency_score,
        monetary_score=found.monetary_score,
        segment=found.segment.value,
    )
    if found.recency_days is not None:
        message.recency_days = found.recency_days
    return message


def rfm_response(found: Rfm, next_page_token: str) -> pb.GetRfmResponse:
    return pb.GetRfmResponse(
        segments=[pb.RfmSegmentCount(segment=s.value, members=n) for s, n in found.counts],
        members=[rfm_member(m, found.currency) for m in found.members],
        next_page_token=next_page_token,
        refreshed_at=timestamp(found.refreshed_at) if found.refreshed_at else None,
    )


def refresh_response(found: RefreshReport) -> pb.RefreshFiguresResponse:
    response = pb.RefreshFiguresResponse(
        as_of=timestamp(found.as_of), members=found.members, removed=found.removed
    )
    response.duration.FromTimedelta(found.duration)
    return response


def cohort_message(found: Cohort) -> pb.Cohort:
    return pb.Cohort(
        month=found.month,
        members=found.members,
        imported_members=found.imported,
        months=[
            pb.CohortMonth(
                month=m.month, offset=m.offset, active_members=m.active, retention=m.retention
            )
            for m in found.months
        ],
    )


def health_month(found: HealthMonth) -> pb.ProgrammeHealthMonth:
    return pb.ProgrammeHealthMonth(
        month=found.month,
        members=found.members,
        active_members=found.active,
        active_rate=found.active_rate,
        redeeming_members=found.redeeming,
        redemption_rate=found.redemption_rate,
        tiers=[pb.TierMembers(tier=t, members=n) for t, n in found.tiers],
        benefits=[
            pb.TierBenefits(tier=b.tier, uses=b.uses, members=b.members) for b in found.benefits
        ],
    )
