"""The figures as the contract's messages."""

from __future__ import annotations

from decimal import Decimal

from loyalty.common.v1 import money_pb2
from loyalty.insights.v1 import insights_service_pb2 as pb
from loyalty_kit.kernel.members import member_name
from loyalty_kit.money import money
from loyalty_kit.timestamps import timestamp

from loyalty_insights.domain.clv_fits import (
    FitState,
    Holdout,
    LifetimeValue,
    LifetimeValueFit,
    MemberPrediction,
)
from loyalty_insights.domain.cohorts import Cohort, HealthMonth
from loyalty_insights.domain.crossunit import MonthOfMembers
from loyalty_insights.domain.liability import UnitLiability
from loyalty_insights.domain.recommendations import OfferKind, Reason, Withheld
from loyalty_insights.domain.rfm import RfmCell, RfmScore
from loyalty_insights.domain.uplift import Effect, Group, JourneyUplift
from loyalty_insights.service_layer.figures import Liability, PointValue, Rfm, SpendShare
from loyalty_insights.service_layer.recommendations import Recommendations
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


def rfm_cell(found: RfmCell, currency: str) -> pb.RfmCell:
    return pb.RfmCell(
        recency_score=found.recency_score,
        frequency_score=found.frequency_score,
        members=found.members,
        average_monetary=money(found.average_monetary, currency) if currency else None,
    )


def rfm_response(found: Rfm, next_page_token: str) -> pb.GetRfmResponse:
    return pb.GetRfmResponse(
        segments=[pb.RfmSegmentCount(segment=s.value, members=n) for s, n in found.counts],
        members=[rfm_member(m, found.currency) for m in found.members],
        next_page_token=next_page_token,
        refreshed_at=timestamp(found.refreshed_at) if found.refreshed_at else None,
        grid=[rfm_cell(c, found.currency) for c in found.grid],
    )


def refresh_response(found: RefreshReport) -> pb.RefreshFiguresResponse:
    response = pb.RefreshFiguresResponse(
        as_of=timestamp(found.as_of),
        members=found.members,
        removed=found.removed,
        full=found.full,
        written=found.written,
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


_STATES = {
    FitState.PENDING: pb.LIFETIME_VALUE_FIT_STATE_PENDING,
    FitState.RUNNING: pb.LIFETIME_VALUE_FIT_STATE_RUNNING,
    FitState.SUCCEEDED: pb.LIFETIME_VALUE_FIT_STATE_SUCCEEDED,
    FitState.FAILED: pb.LIFETIME_VALUE_FIT_STATE_FAILED,
}


def _money(value: Decimal, currency: str) -> money_pb2.Money:
    """A value in the fit's currency (a bare decimal, to the cent, when it had none)."""
    if currency:
        return money(value, currency)
    return money_pb2.Money(amount=str(value.quantize(Decimal("0.01"))))


def fit_message(fit: LifetimeValueFit) -> pb.LifetimeValueFit:
    message = pb.LifetimeValueFit(
        name=fit.name,
        state=_STATES[fit.state],
        scheduled=fit.scheduled,
        create_time=timestamp(fit.created_at),
        as_of=timestamp(fit.as_of),
        members=fit.members,
        members_done=fit.members_done,
        error=fit.error,
    )
    if fit.started_at is not None:
        message.start_time.CopyFrom(timestamp(fit.started_at))
    if fit.finished_at is not None:
        message.end_time.CopyFrom(timestamp(fit.finished_at))
    if fit.parameters is not None:
        message.parameters.CopyFrom(pb.LifetimeValueParameters(**vars(fit.parameters)))
    if fit.holdout is not None:
        message.holdout.CopyFrom(holdout_message(fit.holdout, fit.currency))
    return message


def holdout_message(report: Holdout, currency: str) -> pb.LifetimeValueHoldout:
    return pb.LifetimeValueHoldout(
        calibration_end_time=timestamp(report.calibration_end),
        holdout_end_time=timestamp(report.holdout_end),
        members=report.members,
        predicted_purchases=report.predicted_purchases,
        actual_purchases=report.actual_purchases,
        predicted_value=_money(report.predicted_value, currency),
        actual_value=_money(report.actual_value, currency),
        mean_absolute_error=report.mean_absolute_error,
        baseline_mean_absolute_error=report.baseline_mean_absolute_error,
        root_mean_squared_error=report.root_mean_squared_error,
        groups=[
            pb.LifetimeValueHoldoutGroup(
                repeat_purchases=group.repeat_purchases,
                and_more=group.and_more,
                members=group.members,
                predicted_purchases=group.predicted_purchases,
                actual_purchases=group.actual_purchases,
            )
            for group in report.groups
        ],
    )


def member_value(found: MemberPrediction, currency: str) -> pb.MemberLifetimeValue:
    return pb.MemberLifetimeValue(
        member=member_name(found.member_id),
        historical_value=_money(found.historical_value, currency),
        predicted_value=_money(found.predicted_value or Decimal(0), currency),
        probability_alive=found.probability_alive or 0.0,
    )


def lifetime_value_response(
    found: LifetimeValue, next_page_token: str
) -> pb.GetLifetimeValueResponse:
    currency = found.fit.currency if found.fit else ""
    totals = found.totals
    response = pb.GetLifetimeValueResponse(
        totals=pb.LifetimeValueTotals(
            members=totals.members,
            historical_value=_money(totals.historical_value, currency),
            mean_historical_value=_money(totals.mean_historical_value, currency),
            predicted_value=_money(totals.predicted_value, currency),
            mean_predicted_value=_money(totals.mean_predicted_value, currency),
            mean_probability_alive=totals.mean_probability_alive,
        ),
        deciles=[
            pb.LifetimeValueDecile(
                decile=d.decile,
                members=d.members,
                min_predicted_value=_money(d.min_predicted_value, currency),
                max_predicted_value=_money(d.max_predicted_value, currency),
                predicted_value=_money(d.predicted_value, currency),
            )
            for d in found.deciles
        ],
        members=[member_value(m, currency) for m in found.members],
        next_page_token=next_page_token,
    )
    if found.fit is not None:
        response.fit.CopyFrom(fit_message(found.fit))
    return response


_OFFER_KINDS = {
    OfferKind.REWARD: pb.OFFER_KIND_REWARD,
    OfferKind.COUPON: pb.OFFER_KIND_COUPON_TEMPLATE,
}
_REASONS = {
    Reason.CO_OCCURRENCE: pb.RECOMMENDATION_REASON_CO_OCCURRENCE,
    Reason.SEGMENT_POPULARITY: pb.RECOMMENDATION_REASON_SEGMENT_POPULARITY,
    Reason.POPULARITY: pb.RECOMMENDATION_REASON_POPULARITY,
}
_WITHHELD = {
    None: pb.RECOMMENDATIONS_WITHHELD_UNSPECIFIED,
    Withheld.CONSENT_WITHDRAWN: pb.RECOMMENDATIONS_WITHHELD_CONSENT_WITHDRAWN,
    Withheld.MEMBER_ERASED: pb.RECOMMENDATIONS_WITHHELD_MEMBER_ERASED,
}


def recommendations_response(found: Recommendations, member: str) -> pb.GetRecommendationsResponse:
    return pb.GetRecommendationsResponse(
        recommendations=[
            pb.Recommendation(
                kind=_OFFER_KINDS[r.offer[0]],
                code=r.offer[1],
                reason=_REASONS[r.reason],
                score=r.score,
            )
            for r in found.recommendations
        ],
        withheld=_WITHHELD[found.withheld],
        member=member,
    )


def uplift_group(found: Group) -> pb.UpliftGroup:
    return pb.UpliftGroup(
        members=found.members,
        converted=found.converted,
        conversion_rate=found.conversion_rate,
        spend_per_member=found.spend.mean,
        points_per_member=found.points.mean,
        open_windows=found.open_windows,
    )


def uplift(found: Effect) -> pb.Uplift:
    message = pb.Uplift(
        absolute=found.absolute,
        absolute_low=found.low,
        absolute_high=found.high,
        significant=found.significant,
    )
    if found.relative is not None:
        message.relative = found.relative
    if found.relative_low is not None and found.relative_high is not None:
        message.relative_low = found.relative_low
        message.relative_high = found.relative_high
    return message


def journey_uplift_response(found: JourneyUplift) -> pb.GetJourneyUpliftResponse:
    return pb.GetJourneyUpliftResponse(
        journey=f"journeys/{found.journey_id}",
        window_days=found.window_days,
        treatment=uplift_group(found.treatment),
        control=uplift_group(found.control),
        conversion=uplift(found.conversion),
        spend_per_member=uplift(found.spend),
        points_per_member=uplift(found.points),
        insufficient=found.insufficient,
    )
