"""The EngagementService over gRPC: thin, proto -> use case -> proto. Who may touch a journey:
the group's team (unit "group", or an admin) every journey, a unit's team its own unit's
(entrypoints/access.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc
from loyalty.engagement.v1 import engagement_service_pb2 as pb
from loyalty.engagement.v1.engagement_service_pb2_grpc import EngagementServiceServicer
from loyalty.identity.v1 import member_pb2
from loyalty_kit.caller import ADMIN, UnitMismatch, current_caller
from loyalty_kit.errors import FailedPrecondition, FieldViolation, InvalidArgument, Unavailable
from loyalty_kit.jobs import outage
from loyalty_kit.kernel.units import GROUP
from loyalty_kit.pagination import next_token, read_page
from loyalty_kit.servicers import UnitOfWorkServicer
from loyalty_kit.timestamps import moment_of, timestamp

from loyalty_engagement.adapters.channels import StoredDelivery
from loyalty_engagement.adapters.journeys import StepRun, StoredEntry, StoredJourney, StoredMessage
from loyalty_engagement.bootstrap import Engagement
from loyalty_engagement.domain import journeys as domain
from loyalty_engagement.domain.timing import DailyWindow, Schedule, parse_hhmm
from loyalty_engagement.entrypoints import channels as convert
from loyalty_engagement.service_layer import channels, journeys
from loyalty_engagement.service_layer.ports import ActionRefused
from loyalty_engagement.service_layer.transactional import TRANSACTIONAL_SMS
from loyalty_engagement.service_layer.uow import EngagementUnitOfWork

SERVICE = "loyalty.engagement.v1.EngagementService"
RESOURCE = "journeys/"

_TRIGGERS = {
    pb.TRIGGER_KIND_MEMBER_REGISTERED: domain.TriggerKind.MEMBER_REGISTERED,
    pb.TRIGGER_KIND_PURCHASE: domain.TriggerKind.PURCHASE,
    pb.TRIGGER_KIND_TIER_CHANGED: domain.TriggerKind.TIER_CHANGED,
    pb.TRIGGER_KIND_SEGMENT_ENTERED: domain.TriggerKind.SEGMENT_ENTERED,
    pb.TRIGGER_KIND_SEGMENT_LEFT: domain.TriggerKind.SEGMENT_LEFT,
    pb.TRIGGER_KIND_BIRTHDAY: domain.TriggerKind.BIRTHDAY,
    pb.TRIGGER_KIND_POINTS_EXPIRING: domain.TriggerKind.POINTS_EXPIRING,
    pb.TRIGGER_KIND_INACTIVE: domain.TriggerKind.INACTIVE,
    pb.TRIGGER_KIND_SCHEDULE: domain.TriggerKind.SCHEDULE,
}
_TRIGGER_MESSAGES = {v: k for k, v in _TRIGGERS.items()}
_STATES = {
    domain.JourneyState.DRAFT: pb.JOURNEY_STATE_DRAFT,
    domain.JourneyState.ACTIVE: pb.JOURNEY_STATE_ACTIVE,
    domain.JourneyState.PAUSED: pb.JOURNEY_STATE_PAUSED,
    domain.JourneyState.ENDED: pb.JOURNEY_STATE_ENDED,
}
_ENTRY_STATES = {
    domain.EntryState.PENDING: pb.ENTRY_STATE_PENDING,
    domain.EntryState.COMPLETED: pb.ENTRY_STATE_COMPLETED,
    domain.EntryState.HELD_OUT: pb.ENTRY_STATE_HELD_OUT,
    domain.EntryState.CAPPED: pb.ENTRY_STATE_CAPPED,
    domain.EntryState.SKIPPED: pb.ENTRY_STATE_SKIPPED,
    domain.EntryState.FAILED: pb.ENTRY_STATE_FAILED,
    domain.EntryState.WAITING: pb.ENTRY_STATE_WAITING,
}


class EngagementServicer(UnitOfWorkServicer[EngagementUnitOfWork], EngagementServiceServicer):
    service = SERVICE

    def __init__(self, app: Engagement) -> None:
        super().__init__(app.uow, app.clock)
        self.app = app

    async def CreateJourney(
        self, request: pb.CreateJourneyRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateJourneyResponse:
        spec = spec_of(request.journey, request.journey.unit or _owner_unit())
        state = (
            domain.JourneyState.ACTIVE
            if request.journey.state == pb.JOURNEY_STATE_ACTIVE
            else domain.JourneyState.DRAFT
        )
        if request.journey.state not in (
            pb.JOURNEY_STATE_UNSPECIFIED,
            pb.JOURNEY_STATE_DRAFT,
            pb.JOURNEY_STATE_ACTIVE,
        ):
            raise InvalidArgument.of([FieldViolation("journey.state", "DRAFT or ACTIVE")])
        key = _key_of(request.journey)
        journeys.check(spec)

        async def work(uow: EngagementUnitOfWork, now: datetime) -> pb.CreateJourneyResponse:
            found = await journeys.create(uow, spec, state, now, key)
            return pb.CreateJourneyResponse(journey=journey_message(found, self.clock()))

        return await self._mutate("CreateJourney", request, pb.CreateJourneyResponse, work)

    async def GetJourney(
        self, request: pb.GetJourneyRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetJourneyResponse:
        journey_id = journey_id_of(request.name, "name")
        found = await self._read(lambda uow: journeys.get(uow, journey_id))
        _may_touch(found)
        return pb.GetJourneyResponse(journey=journey_message(found, self.clock()))

    async def ListJourneys(
        self, request: pb.ListJourneysRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListJourneysResponse:
        unit = _confined_unit()
        filters = {"unit": unit}
        page = read_page(request.page_size, request.page_token, filters, default=50, maximum=200)
        after = page.after if isinstance(page.after, str) else ""
        found = await self._read(lambda uow: uow.journeys.page(unit, after, page.size + 1))
        more = len(found) > page.size
        found = found[: page.size]
        token = next_token(found[-1].journey_id, filters) if more and found else ""
        return pb.ListJourneysResponse(
            journeys=[journey_message(j, self.clock()) for j in found], next_page_token=token
        )

    async def UpdateJourney(
        self, request: pb.UpdateJourneyRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateJourneyResponse:
        journey_id = journey_id_of(request.journey.name, "journey.name")
        key = _key_of(request.journey)

        async def work(uow: EngagementUnitOfWork, now: datetime) -> pb.UpdateJourneyResponse:
            current = await journeys.get(uow, journey_id)
            _may_touch(current)
            spec = spec_of(request.journey, current.unit)
            found = await journeys.update(uow, journey_id, spec, now, key)
            return pb.UpdateJourneyResponse(journey=journey_message(found, self.clock()))

        return await self._mutate("UpdateJourney", request, pb.UpdateJourneyResponse, work)

    async def PauseJourney(
        self, request: pb.PauseJourneyRequest, context: grpc.aio.ServicerContext
    ) -> pb.PauseJourneyResponse:
        journey_id = journey_id_of(request.name, "name")

        async def work(uow: EngagementUnitOfWork, now: datetime) -> pb.PauseJourneyResponse:
            _may_touch(await journeys.get(uow, journey_id))
            found = await journeys.pause(uow, journey_id, now)
            return pb.PauseJourneyResponse(journey=journey_message(found, self.clock()))

        return await self._mutate("PauseJourney", request, pb.PauseJourneyResponse, work)

    async def ResumeJourney(
        self, request: pb.ResumeJourneyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResumeJourneyResponse:
        journey_id = journey_id_of(request.name, "name")

        async def work(uow: EngagementUnitOfWork, now: datetime) -> pb.ResumeJourneyResponse:
            _may_touch(await journeys.get(uow, journey_id))
            found = await journeys.activate(uow, journey_id, now)
            return pb.ResumeJourneyResponse(journey=journey_message(found, self.clock()))

        response = await self._mutate("ResumeJourney", request, pb.ResumeJourneyResponse, work)
        # The pending entries run after the resume committed (a repeated request runs the ones
        # left, if any): each chunk its own transaction.
        try:
            ran = await journeys.run_pending(self.app.uow, self.app.actions, journey_id, self.clock)
        except grpc.aio.AioRpcError as error:
            if not outage(error):
                raise
            # Resumed; the pending entries not run yet are run by the next ResumeJourney.
            raise Unavailable(
                "the journey is active; a service its steps act through is unavailable: "
                "resume it again to run the pending entries left",
                reason="STEP_SERVICE_UNAVAILABLE",
            ) from None
        response.pending_run = ran
        return response

    async def ListJourneyEntries(
        self, request: pb.ListJourneyEntriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListJourneyEntriesResponse:
        journey_id = journey_id_of(request.journey, "journey")
        filters = {"journey": journey_id}
        page = read_page(request.page_size, request.page_token, filters, default=50, maximum=200)
        before = _before(page.after)

        async def work(uow: EngagementUnitOfWork) -> tuple[list[StoredEntry], list[StepRun]]:
            _may_touch(await journeys.get(uow, journey_id))
            found = await uow.journeys.entries(journey_id, before, page.size + 1)
            runs = await uow.journeys.step_runs([e.entry_id for e in found[: page.size]])
            return found, runs

        found, runs = await self._read(work)
        more = len(found) > page.size
        found = found[: page.size]
        last = found[-1] if found else None
        token = (
            next_token([last.entered_at.isoformat(), last.entry_id], filters)
            if more and last
            else ""
        )
        return pb.ListJourneyEntriesResponse(
            entries=[entry_message(e, runs) for e in found], next_page_token=token
        )

    async def ListMessages(
        self, request: pb.ListMessagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMessagesResponse:
        unit = _confined_unit()
        filters = {"member": request.member_id, "unit": unit}
        page = read_page(request.page_size, request.page_token, filters, default=50, maximum=200)
        before = _before(page.after)
        found = await self._read(
            lambda uow: uow.journeys.messages(request.member_id, unit, before, page.size + 1)
        )
        more = len(found) > page.size
        found = found[: page.size]
        last = found[-1] if found else None
        token = (
            next_token([last.sent_at.isoformat(), last.message_id], filters)
            if more and last
            else ""
        )
        return pb.ListMessagesResponse(
            messages=[message_message(m) for m in found], next_page_token=token
        )

    async def SetWebhookEndpoint(
        self, request: pb.SetWebhookEndpointRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetWebhookEndpointResponse:
        given = request.endpoint
        purpose = (
            TRANSACTIONAL_SMS
            if given.transactional
            else convert.purpose_of(given.purpose, "endpoint.purpose")
        )
        unit = given.unit or _owner_unit()
        confined = _confined_unit()
        if confined is not None and confined != unit:
            raise UnitMismatch(unit, confined)

        async def work(uow: EngagementUnitOfWork, now: datetime) -> pb.SetWebhookEndpointResponse:
            found = await channels.set_endpoint(
                uow, self.app.secrets, unit, purpose, given.url, given.secret, now
            )
            return pb.SetWebhookEndpointResponse(endpoint=convert.endpoint_message(found))

        return await self._mutate(
            "SetWebhookEndpoint", request, pb.SetWebhookEndpointResponse, work
        )

    async def ListDeliveries(
        self, request: pb.ListDeliveriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDeliveriesResponse:
        unit = _confined_unit()
        state = convert.state_of(request.state)
        filters = {"state": state, "unit": unit}
        page = read_page(request.page_size, request.page_token, filters, default=50, maximum=200)
        before = _before(page.after)
        found = await self._read(
            lambda uow: uow.channels.deliveries(state, unit, before, page.size + 1)
        )
        more = len(found) > page.size
        found = found[: page.size]
        last = found[-1] if found else None
        token = (
            next_token([last.created_at.isoformat(), last.message_id], filters)
            if more and last
            else ""
        )
        return pb.ListDeliveriesResponse(
            deliveries=[convert.delivery_message(d) for d in found], next_page_token=token
        )

    async def RedriveDelivery(
        self, request: pb.RedriveDeliveryRequest, context: grpc.aio.ServicerContext
    ) -> pb.RedriveDeliveryResponse:
        message_id = convert.delivery_id_of(request.name)

        async def work(uow: EngagementUnitOfWork, now: datetime) -> pb.RedriveDeliveryResponse:
            current = await uow.channels.delivery(message_id)
            if current is not None:
                _may_touch_unit(current)
            found = await channels.redrive(uow, message_id, now)
            return pb.RedriveDeliveryResponse(delivery=convert.delivery_message(found))

        return await self._mutate("RedriveDelivery", request, pb.RedriveDeliveryResponse, work)

    async def Unsubscribe(
        self, request: pb.UnsubscribeRequest, context: grpc.aio.ServicerContext
    ) -> pb.UnsubscribeResponse:
        try:
            async with self.uow() as uow:
                purpose = await channels.unsubscribe(
                    uow, self.app.actions, request.token, self.clock()
                )
                await uow.commit()
        except ActionRefused as refused:
            raise FailedPrecondition(
                "identity refused to withdraw the consent", reason=refused.reason
            ) from None
        except grpc.aio.AioRpcError as error:
            if not outage(error):
                raise
            raise Unavailable(
                "identity is unavailable: try again", reason="IDENTITY_UNAVAILABLE"
            ) from None
        return pb.UnsubscribeResponse(purpose=member_pb2.ConsentPurpose.Value(purpose))


# --- who may see what -------------------------------------------------------------------------


def _confined_unit() -> str | None:
    """The unit a caller is confined to (None: the group's team and admins see every one)."""
    caller = current_caller()
    return None if caller.may(ADMIN) or caller.unit == GROUP else caller.unit


def _owner_unit() -> str:
    return _confined_unit() or GROUP


def _may_touch(journey: StoredJourney) -> None:
    confined = _confined_unit()
    if confined is not None and confined != journey.unit:
        raise UnitMismatch(journey.unit, confined)


def _may_touch_unit(delivery: StoredDelivery) -> None:
    confined = _confined_unit()
    if confined is not None and confined != delivery.unit:
        raise UnitMismatch(delivery.unit, confined)


def _before(after: object) -> tuple[datetime, str] | None:
    if after is None:
        return None
    try:
        pair: list[Any] = list(after)  # type: ignore[call-overload]
        return datetime.fromisoformat(str(pair[0])), str(pair[1])
    except (TypeError, ValueError, IndexError):
        raise InvalidArgument.of(
            [FieldViolation("page_token", "not a token this list gave")]
        ) from None


def _key_of(message: pb.Journey) -> str:
    bad = domain.key_violations(message.key)
    if bad:
        raise InvalidArgument.of(bad)
    return message.key


def journey_id_of(name: str, field: str) -> str:
    journey_id = name.removeprefix(RESOURCE)
    if not name.startswith(RESOURCE) or not journey_id or "/" in journey_id or len(journey_id) > 64:
        raise InvalidArgument.of([FieldViolation(field, "a journey name: journeys/{journey_id}")])
    return journey_id


# --- proto <-> domain -------------------------------------------------------------------------


def _purpose(value: int, field: str, bad: list[FieldViolation]) -> str:
    if value == member_pb2.CONSENT_PURPOSE_UNSPECIFIED:
        bad.append(FieldViolation(field, "a consent purpose is required"))
        return ""
    try:
        return member_pb2.ConsentPurpose.Name(value)  # type: ignore[arg-type]
    except ValueError:
        bad.append(FieldViolation(field, f"unknown consent purpose {value}"))
        return ""


def spec_of(message: pb.Journey, unit: str) -> domain.JourneySpec:
    """The domain's definition of a message; what cannot be read is INVALID_ARGUMENT naming
    each field (the domain's own checks follow in `journeys.check`)."""
    bad: list[FieldViolation] = []
    kind = _TRIGGERS.get(message.trigger.kind)
    if kind is None:
        bad.append(FieldViolation("journey.trigger.kind", "a known trigger kind is required"))
    steps: list[domain.Step] = []
    for i, step in enumerate(message.steps):
        path = f"journey.steps[{i}]"
        match step.WhichOneof("action"):
            case "issue_coupon":
                c = step.issue_coupon
                steps.append(domain.IssueCoupon(c.template, c.unit, c.grant_key.strip()))
            case "award_points":
                a = step.award_points
                steps.append(domain.AwardPoints(a.points, a.funding_unit, a.reason))
            case "change_tags":
                t = step.change_tags
                steps.append(domain.ChangeTags(tuple(t.add_tags), tuple(t.remove_tags)))
            case "send_message":
                s = step.send_message
                purpose = _purpose(s.purpose, f"{path}.send_message.purpose", bad)
                steps.append(domain.SendMessage(purpose, s.body, s.channel or "dev"))
            case "delay":
                steps.append(domain.Delay(step.delay.seconds))
            case "window":
                window = _window_of(step.window, f"{path}.window", bad)
                if window is not None:
                    steps.append(domain.Window(window))
            case "until_purchase":
                u = step.until_purchase
                steps.append(domain.UntilPurchase(u.days, u.exit_on_purchase))
            case _:
                bad.append(FieldViolation(path, "a step needs exactly one action"))
    consents = tuple(
        _purpose(p, f"journey.conditions.consents[{i}]", bad)
        for i, p in enumerate(message.conditions.consents)
    )
    quiet = (
        _window_of(message.quiet_hours, "journey.quiet_hours", bad)
        if message.HasField("quiet_hours")
        else None
    )
    schedule = (
        _schedule_of(message.trigger.schedule, "journey.trigger.schedule", bad)
        if message.trigger.HasField("schedule")
        else None
    )
    start = moment_of(message, "start_time", "journey.start_time")
    end = moment_of(message, "end_time", "journey.end_time")
    if bad:
        raise InvalidArgument.of(bad)
    assert kind is not None
    return domain.JourneySpec(
        display_name=message.display_name,
        unit=unit,
        trigger=domain.Trigger(
            kind,
            message.trigger.unit,
            message.trigger.to_tier,
            message.trigger.segment,
            message.trigger.days,
            tuple(r.strip() for r in message.trigger.reasons),
            schedule,
        ),
        steps=tuple(steps),
        conditions=domain.Conditions(
            tuple(message.conditions.units),
            tuple(message.conditions.tiers),
            consents,
            tuple(b.strip() for b in message.conditions.held_badges),
            tuple(b.strip() for b in message.conditions.lacking_badges),
        ),
        frequency_cap=domain.FrequencyCap(
            message.frequency_cap.max_entries, message.frequency_cap.period_days
        ),
        control_share=message.control_share,
        start_at=start,
        end_at=end,
        time_zone=message.time_zone,
        quiet_hours=quiet,
        budget=domain.Budget(message.budget.points, message.budget.coupons),
    )


def _window_of(message: pb.TimeWindow, field: str, bad: list[FieldViolation]) -> DailyWindow | None:
    start, end = parse_hhmm(message.start), parse_hhmm(message.end)
    if start is None:
        bad.append(FieldViolation(f"{field}.start", '"HH:MM", 24-hour'))
    if end is None:
        bad.append(FieldViolation(f"{field}.end", '"HH:MM", 24-hour'))
    return DailyWindow(start, end) if start is not None and end is not None else None


def _schedule_of(message: pb.Schedule, field: str, bad: list[FieldViolation]) -> Schedule:
    at = None
    if message.time_of_day:
        at = parse_hhmm(message.time_of_day)
        if at is None:
            bad.append(FieldViolation(f"{field}.time_of_day", '"HH:MM", 24-hour'))
    once = moment_of(message, "once_time", f"{field}.once_time")
    return Schedule(at, tuple(int(d) for d in message.days_of_week), once)


def _schedule_message(schedule: Schedule) -> pb.Schedule:
    message = pb.Schedule(
        time_of_day=schedule.at.strftime("%H:%M") if schedule.at else "",
        days_of_week=list(schedule.weekdays),  # type: ignore[arg-type]
    )
    if schedule.once_at is not None:
        message.once_time.CopyFrom(timestamp(schedule.once_at))
    return message


def _window_message(window: DailyWindow) -> pb.TimeWindow:
    return pb.TimeWindow(start=window.start.strftime("%H:%M"), end=window.end.strftime("%H:%M"))


def _step_message(step: domain.Step) -> pb.Step:
    match step:
        case domain.Delay():
            return pb.Step(delay=pb.Delay(seconds=step.seconds))
        case domain.Window():
            return pb.Step(window=_window_message(step.window))
        case domain.UntilPurchase():
            return pb.Step(
                until_purchase=pb.UntilPurchase(
                    days=step.days, exit_on_purchase=step.exit_on_purchase
                )
            )
        case domain.IssueCoupon():
            return pb.Step(
                issue_coupon=pb.IssueCoupon(
                    template=step.template, unit=step.unit, grant_key=step.grant_key
                )
            )
        case domain.AwardPoints():
            return pb.Step(
                award_points=pb.AwardPoints(
                    points=step.points, funding_unit=step.funding_unit, reason=step.reason
                )
            )
        case domain.ChangeTags():
            return pb.Step(
                change_tags=pb.ChangeTags(add_tags=list(step.add), remove_tags=list(step.remove))
            )
        case domain.SendMessage():
            return pb.Step(
                send_message=pb.SendMessage(
                    purpose=member_pb2.ConsentPurpose.Value(step.purpose),
                    channel=step.channel,
                    body=step.body,
                )
            )
    raise TypeError(step)


def journey_message(journey: StoredJourney, now: datetime) -> pb.Journey:
    spec = journey.spec
    state = journey.state
    if state is not domain.JourneyState.DRAFT and spec.end_at is not None and now >= spec.end_at:
        state = domain.JourneyState.ENDED  # past its end nothing enters, whatever it was
    message = pb.Journey(
        name=f"{RESOURCE}{journey.journey_id}",
        display_name=spec.display_name,
        unit=journey.unit,
        trigger=pb.Trigger(
            kind=_TRIGGER_MESSAGES[spec.trigger.kind],
            unit=spec.trigger.unit,
            to_tier=spec.trigger.to_tier,
            segment=spec.trigger.segment,
            days=spec.trigger.days,
            reasons=list(spec.trigger.reasons),
        ),
        conditions=pb.Conditions(
            units=list(spec.conditions.units),
            tiers=list(spec.conditions.tiers),
            consents=[member_pb2.ConsentPurpose.Value(p) for p in spec.conditions.consents],
            held_badges=list(spec.conditions.held_badges),
            lacking_badges=list(spec.conditions.lacking_badges),
        ),
        steps=[_step_message(s) for s in spec.steps],
        frequency_cap=pb.FrequencyCap(
            max_entries=spec.frequency_cap.max_entries, period_days=spec.frequency_cap.period_days
        ),
        control_share=spec.control_share,
        state=_STATES[state],
        version=journey.version,
        create_time=timestamp(journey.created_at),
        update_time=timestamp(journey.updated_at),
        time_zone=spec.time_zone,
        budget=pb.Budget(points=spec.budget.points, coupons=spec.budget.coupons),
        key=journey.key,
    )
    if spec.trigger.schedule is not None:
        message.trigger.schedule.CopyFrom(_schedule_message(spec.trigger.schedule))
    if spec.quiet_hours is not None:
        message.quiet_hours.CopyFrom(_window_message(spec.quiet_hours))
    if spec.start_at:
        message.start_time.CopyFrom(timestamp(spec.start_at))
    if spec.end_at:
        message.end_time.CopyFrom(timestamp(spec.end_at))
    return message


def entry_message(entry: StoredEntry, runs: list[StepRun]) -> pb.JourneyEntry:
    message = pb.JourneyEntry(
        name=f"{RESOURCE}{entry.journey_id}/entries/{entry.entry_id}",
        member_id=entry.member_id,
        version=entry.version,
        state=_ENTRY_STATES[entry.state],
        trigger_key=entry.trigger_key,
        enter_time=timestamp(entry.entered_at),
        steps=[
            pb.StepOutcome(step=r.step, outcome=r.outcome, detail=r.detail)
            for r in runs
            if r.entry_id == entry.entry_id
        ],
    )
    if entry.state is domain.EntryState.WAITING and entry.due_at is not None:
        message.due_time.CopyFrom(timestamp(entry.due_at))
    return message


def message_message(message: StoredMessage) -> pb.SentMessage:
    return pb.SentMessage(
        name=f"messages/{message.message_id}",
        member_id=message.member_id,
        journey=f"{RESOURCE}{message.journey_id}",
        channel=message.channel,
        purpose=member_pb2.ConsentPurpose.Value(message.purpose),
        body=message.body,
        unsubscribe_token=message.unsubscribe_token,
        send_time=timestamp(message.sent_at),
    )
