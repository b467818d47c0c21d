"""The InsightsService over gRPC: thin, proto -> use case -> proto (conversions in convert.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TypeVar

import grpc
from google.protobuf.message import Message
from loyalty.insights.v1 import insights_service_pb2 as pb
from loyalty.insights.v1.insights_service_pb2_grpc import InsightsServiceServicer
from loyalty_kit.errors import FieldViolation, InvalidArgument
from loyalty_kit.kernel.members import member_id_of, member_name
from loyalty_kit.pagination import next_token, read_page
from loyalty_kit.servicers import UnitOfWorkServicer
from loyalty_kit.timestamps import moment_of

from loyalty_insights.bootstrap import Insights
from loyalty_insights.domain import clv_fits, recommendations, uplift
from loyalty_insights.domain.periods import Period
from loyalty_insights.entrypoints import convert
from loyalty_insights.entrypoints.access import check_figures_of, check_offers_of
from loyalty_insights.service_layer import figures, lifetime_value, refresh
from loyalty_insights.service_layer.recommendations import recommendations as recommend
from loyalty_insights.service_layer.uow import InsightsUnitOfWork
from loyalty_insights.service_layer.uplift import journey_uplift

SERVICE = "loyalty.insights.v1.InsightsService"
JOURNEYS = "journeys/"

T = TypeVar("T")


class InsightsServicer(UnitOfWorkServicer[InsightsUnitOfWork], InsightsServiceServicer):
    service = SERVICE

    def __init__(self, app: Insights) -> None:
        super().__init__(app.uow, app.clock)
        self.app = app

    def _full_every(self) -> timedelta:
        return timedelta(seconds=self.app.context.settings.insights_full_refresh_interval_seconds)

    async def _figure(
        self,
        request: Message,
        work: Callable[[InsightsUnitOfWork, Period, str], Awaitable[T]],
    ) -> T:
        """A figure over the request's period for its unit, once the caller may read it."""
        period = _period(request)
        unit = str(getattr(request, "unit", "")).strip()
        check_figures_of(unit)
        return await self._read(lambda uow: work(uow, period, unit))

    async def _standard_or_period(
        self,
        request: Message,
        standard: Callable[[InsightsUnitOfWork, datetime, str], Awaitable[T]],
        work: Callable[[InsightsUnitOfWork, Period, str], Awaitable[T]],
    ) -> T:
        """A figure over the request's period, or with neither time given over the standard
        trailing 12 months (read from the stored counts)."""
        if request.HasField("start_time") or request.HasField("end_time"):
            return await self._figure(request, work)
        unit = str(getattr(request, "unit", "")).strip()
        check_figures_of(unit)
        now = self.clock()
        return await self._read(lambda uow: standard(uow, now, unit))

    async def GetPointsLiability(
        self, request: pb.GetPointsLiabilityRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetPointsLiabilityResponse:
        found = await self._standard_or_period(
            request, figures.standard_points_liability, figures.points_liability
        )
        return convert.liability_response(found)

    async def GetMultiUnitMembers(
        self, request: pb.GetMultiUnitMembersRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMultiUnitMembersResponse:
        found = await self._standard_or_period(
            request, figures.standard_multi_unit_members, figures.multi_unit_members
        )
        return pb.GetMultiUnitMembersResponse(
            months=[convert.month_message(m) for m in found.months],
            period=convert.month_message(found.period),
        )

    async def GetUnitOverlap(
        self, request: pb.GetUnitOverlapRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetUnitOverlapResponse:
        found = await self._standard_or_period(
            request, figures.standard_unit_overlap, figures.unit_overlap
        )
        return pb.GetUnitOverlapResponse(
            pairs=[pb.UnitPair(unit=a, other_unit=b, members=n) for a, b, n in found]
        )

    async def GetUnitFlows(
        self, request: pb.GetUnitFlowsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetUnitFlowsResponse:
        found = await self._standard_or_period(
            request, figures.standard_unit_flows, figures.unit_flows
        )
        return pb.GetUnitFlowsResponse(
            flows=[pb.UnitFlow(from_unit=a, to_unit=b, members=n) for a, b, n in found]
        )

    async def GetSpendShare(
        self, request: pb.GetSpendShareRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetSpendShareResponse:
        found = await self._standard_or_period(
            request, figures.standard_spend_share, figures.spend_share
        )
        return convert.spend_response(found)

    async def GetRfm(
        self, request: pb.GetRfmRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetRfmResponse:
        segment = figures.rfm_segment(request.segment)
        standard = not request.HasField("start_time") and not request.HasField("end_time")
        asked = None if standard else _period(request)  # first: a token is tied to a period
        filters = {
            "start": asked.start.isoformat() if asked else "",
            "end": asked.end.isoformat() if asked else "",
            "unit": request.unit.strip(),
            "segment": request.segment,
        }
        page = read_page(request.page_size, request.page_token, filters, default=100, maximum=1000)
        if page.after is not None and not isinstance(page.after, str):
            raise InvalidArgument.of([FieldViolation("page_token", "not a token this list gave")])
        after = page.after or ""

        async def work(uow: InsightsUnitOfWork, period: Period, unit: str) -> figures.Rfm:
            return await figures.rfm(uow, period, unit, segment, after, page.size)

        if standard:
            unit = request.unit.strip()
            check_figures_of(unit)
            now = self.clock()
            found = await self._read(
                lambda uow: figures.standard_rfm(uow, now, unit, segment, after, page.size)
            )
        else:
            found = await self._figure(request, work)
        token = next_token(found.last_member, filters) if found.last_member else ""
        return convert.rfm_response(found, token)

    async def RefreshFigures(
        self, request: pb.RefreshFiguresRequest, context: grpc.aio.ServicerContext
    ) -> pb.RefreshFiguresResponse:
        async def work(uow: InsightsUnitOfWork, _now: datetime) -> pb.RefreshFiguresResponse:
            return convert.refresh_response(
                await refresh.refresh_figures(uow, self.clock, request.full, self._full_every())
            )

        response = await self._mutate("RefreshFigures", request, pb.RefreshFiguresResponse, work)
        await refresh.settle_refresh(self.app.uow, self.clock)
        await refresh.rebuild_offers(self.app.uow, self.clock, wait=True)
        return response

    async def GetCohorts(
        self, request: pb.GetCohortsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCohortsResponse:
        found = await self._figure(request, figures.cohorts)
        return pb.GetCohortsResponse(cohorts=[convert.cohort_message(c) for c in found])

    async def GetProgrammeHealth(
        self, request: pb.GetProgrammeHealthRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetProgrammeHealthResponse:
        found = await self._figure(request, figures.programme_health)
        return pb.GetProgrammeHealthResponse(months=[convert.health_month(m) for m in found])

    async def FitLifetimeValue(
        self, request: pb.FitLifetimeValueRequest, context: grpc.aio.ServicerContext
    ) -> pb.FitLifetimeValueResponse:
        holdout_days = clv_fits.holdout_days_of(request.holdout_days)
        as_of = moment_of(request, "as_of")

        async def work(uow: InsightsUnitOfWork, now: datetime) -> pb.FitLifetimeValueResponse:
            fit = await lifetime_value.ask_for_fit(
                uow, as_of or now, holdout_days, now, scheduled=False
            )
            return pb.FitLifetimeValueResponse(fit=convert.fit_message(fit))

        response = await self._mutate(
            "FitLifetimeValue", request, pb.FitLifetimeValueResponse, work
        )
        self.app.fits_waiting()
        # A retried request_id answers the fit as it is now, not as it was accepted.
        fit_id = clv_fits.fit_id_of(response.fit.name)
        found = await self._read(lambda uow: lifetime_value.get_fit(uow, fit_id))
        return pb.FitLifetimeValueResponse(fit=convert.fit_message(found))

    async def GetLifetimeValueFit(
        self, request: pb.GetLifetimeValueFitRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetLifetimeValueFitResponse:
        fit_id = clv_fits.fit_id_of(request.name)
        found = await self._read(lambda uow: lifetime_value.get_fit(uow, fit_id))
        return pb.GetLifetimeValueFitResponse(fit=convert.fit_message(found))

    async def GetLifetimeValue(
        self, request: pb.GetLifetimeValueRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetLifetimeValueResponse:
        unit = request.unit.strip()
        filters = {"unit": unit}
        page = read_page(request.page_size, request.page_token, filters, default=100, maximum=1000)
        after = _value_position(page.after)
        check_figures_of(unit)
        found = await self._read(
            lambda uow: lifetime_value.lifetime_value(uow, unit, after, page.size)
        )
        token = next_token(list(found.last), filters) if found.last else ""
        return convert.lifetime_value_response(found, token)

    async def GetRecommendations(
        self, request: pb.GetRecommendationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetRecommendationsResponse:
        member_id = member_id_of(request.member, "member")
        size = recommendations.size_of(request.page_size)
        unit = request.unit.strip()
        check_offers_of(unit)
        found = await self._read(lambda uow: recommend(uow, member_id, unit, size))
        return convert.recommendations_response(found, member_name(found.member_id))

    async def GetJourneyUplift(
        self, request: pb.GetJourneyUpliftRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetJourneyUpliftResponse:
        bad: list[FieldViolation] = []
        journey_id = request.journey.removeprefix(JOURNEYS)
        if (
            not request.journey.startswith(JOURNEYS)
            or not 0 < len(journey_id) <= 64
            or "/" in journey_id
        ):
            bad.append(FieldViolation("journey", "a journey name: journeys/{journey_id}"))
        window_days = uplift.window_days_of(request.window_days)
        if window_days is None:
            bad.append(
                FieldViolation("window_days", f"from 1 to {uplift.MAX_WINDOW_DAYS} days (0: 30)")
            )
        if bad or window_days is None:
            raise InvalidArgument.of(bad)
        days = window_days
        now = self.clock()
        found = await self._read(lambda uow: journey_uplift(uow, journey_id, days, now))
        return convert.journey_uplift_response(found)


def _value_position(after: object) -> tuple[str, str] | None:
    """Where a page of members by predicted value starts after: (value, member) as the last
    page's token holds it, else INVALID_ARGUMENT on `page_token`."""
    if after is None:
        return None
    if isinstance(after, list) and len(after) == 2 and all(isinstance(a, str) for a in after):
        try:
            if Decimal(after[0]).is_finite():
                return after[0], after[1]
        except InvalidOperation:
            pass
    raise InvalidArgument.of([FieldViolation("page_token", "not a token this list gave")])


def _period(request: Message) -> Period:
    """The request's period, or INVALID_ARGUMENT naming the bad times."""
    return Period.of(moment_of(request, "start_time"), moment_of(request, "end_time"))
