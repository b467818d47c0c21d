"""The Huayue demo's journeys (docs/worked-example.md), made through the engagement service's
public RPCs as the group's marketing team would: each is looked up by its display name first and
only the missing ones are created (with request ids derived from the demo), so loading twice
changes nothing.

- Win-back (挽回): a member without a purchase for 90 days gets the mall's CNY 50 coupon
  (`mall-winback-50`, valid 30 days), and a reminder
  by SMS 14 days later (not in the quiet hours 21:00-09:00).
- Expiring points (积分到期提醒): points of a lot expire within 30 days: a reminder by SMS.
- First hotel stay -> a cinema ticket (跨业态): the group's journey issues the cinema's coupon
  to a member's first stay (a cap of one entry in ten years)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from loyalty.engagement.v1 import engagement_service_pb2 as pb
from loyalty.engagement.v1 import engagement_service_pb2_grpc
from loyalty.identity.v1 import member_pb2
from loyalty_kit.channels import channel
from loyalty_kit.settings import Settings

from loyalty_devstack.demo_caller import Part, demo_metadata

SMS = member_pb2.CONSENT_PURPOSE_MARKETING_SMS
QUIET = pb.TimeWindow(start="21:00", end="09:00")
DAY = 86400


def _sms(body: str) -> pb.Step:
    return pb.Step(send_message=pb.SendMessage(purpose=SMS, body=body))


JOURNEYS: tuple[tuple[str, pb.Journey], ...] = (
    (
        "win-back",
        pb.Journey(
            display_name="Win-back: 90 days without a purchase",
            unit="group",
            trigger=pb.Trigger(kind=pb.TRIGGER_KIND_INACTIVE, days=90),
            steps=[
                pb.Step(issue_coupon=pb.IssueCoupon(template="mall-winback-50", unit="mall")),
                pb.Step(delay=pb.Delay(seconds=14 * DAY)),
                _sms("您的华悦商场50元回归券即将到期，欢迎回来逛逛。"),
            ],
            quiet_hours=QUIET,
            budget=pb.Budget(coupons=5000),
            state=pb.JOURNEY_STATE_ACTIVE,
        ),
    ),
    (
        "expiring-points",
        pb.Journey(
            display_name="Points expiring within 30 days",
            unit="group",
            trigger=pb.Trigger(kind=pb.TRIGGER_KIND_POINTS_EXPIRING, days=30),
            steps=[_sms("您有华悦积分将在30天内到期，可在积分商城兑换电影票或早餐。")],
            quiet_hours=QUIET,
            frequency_cap=pb.FrequencyCap(max_entries=1, period_days=30),
            state=pb.JOURNEY_STATE_ACTIVE,
        ),
    ),
    (
        "hotel-to-cinema",
        pb.Journey(
            display_name="First hotel stay: a cinema ticket",
            unit="group",
            trigger=pb.Trigger(kind=pb.TRIGGER_KIND_PURCHASE, unit="hotel"),
            steps=[pb.Step(issue_coupon=pb.IssueCoupon(template="cinema-ticket", unit="cinema"))],
            frequency_cap=pb.FrequencyCap(max_entries=1, period_days=3650),
            budget=pb.Budget(coupons=2000),
            state=pb.JOURNEY_STATE_ACTIVE,
        ),
    ),
)


async def ensure_journeys(
    stub: Any,
    journeys: Sequence[tuple[str, pb.Journey]] = JOURNEYS,
    what: str = "journeys",
) -> Part:
    """Create the `journeys` (key, journey) that are missing (by display name) through `stub`,
    an EngagementService client whose calls carry the caller; the key names the request."""
    names: set[str] = set()
    token = ""
    while True:
        page = await stub.ListJourneys(pb.ListJourneysRequest(page_size=200, page_token=token))
        names |= {j.display_name for j in page.journeys}
        token = page.next_page_token
        if not token:
            break
    made = 0
    for key, journey in journeys:
        if journey.display_name in names:
            continue
        await stub.CreateJourney(
            pb.CreateJourneyRequest(journey=journey, request_id=f"demo-journey-{key}")
        )
        made += 1
    return Part(f"{len(journeys)} {what}", made > 0)


class _Calling:
    """A stub whose calls carry the demo loader's metadata."""

    def __init__(self, stub: Any, metadata: tuple[tuple[str, str], ...]) -> None:
        self.stub, self.metadata = stub, metadata

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.stub, name)
        return lambda request: method(request, metadata=self.metadata, timeout=10)


async def load_journeys(
    settings: Settings,
    journeys: Sequence[tuple[str, pb.Journey]] = JOURNEYS,
    what: str = "journeys",
) -> Part:
    async with channel(settings.target_of("engagement")) as ch:
        stub = engagement_service_pb2_grpc.EngagementServiceStub(ch)
        return await ensure_journeys(_Calling(stub, demo_metadata(settings)), journeys, what)
