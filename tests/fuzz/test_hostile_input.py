"""Hostile input never reaches an unhandled exception: every unary method of every service
(the gateway's gRPC too), over real channels as an admin, answers generated requests (extreme
timestamps, huge and malformed decimals, long strings, enum numbers the contract does not
name), undecodable bodies and non-UTF-8 `-bin` headers with a status of its own: never
INTERNAL, never UNKNOWN. Each defect once found by fuzzing is an explicit case below.

Hostile input is also bounded: a message past the size limit is refused by gRPC before it is
read, text with control, bidirectional or invisible characters is INVALID_CHARACTERS in every
method, and any page size or page token answers at once.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loyalty.common.v1 import channel_pb2
from loyalty.engagement.v1 import engagement_service_pb2, engagement_service_pb2_grpc
from loyalty.identity.v1 import identity_service_pb2, identity_service_pb2_grpc, member_pb2
from loyalty.insights.v1 import segments_pb2, segments_pb2_grpc
from loyalty_devstack.demo import load as load_demo
from loyalty_devstack.testing import ServiceRunner, metadata_for
from loyalty_kit import channels
from loyalty_kit.caller import Caller
from loyalty_kit.scopes import MEMBER_SCOPES
from loyalty_kit.server import ServiceSpec
from loyalty_kit.settings import Settings
from loyalty_kit.status import bad_request, error_info, from_rpc_error

from tests.fuzz.messages import HOSTILE_TEXT, Rpc, messages, unary_rpcs, undecodable_bodies
from tests.support.clock import Clock

RPCS = {str(rpc): rpc for rpc in unary_rpcs()}  # "PointsService/EarnPoints": ...
BY_METHOD = {rpc.method.name: rpc for rpc in RPCS.values()}
ADMIN = Caller(unit="mall", client_id="fuzz-admin", scopes=frozenset({"admin"}))
ME_SERVICE = "loyalty.gateway.v1.MeService"
NEVER = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
TRUST_HEADERS = "LOYALTY_AUTH_TRUST_HEADERS"
# Generated requests per method: modest, so the file runs in about a minute; set
# LOYALTY_FUZZ_EXAMPLES=500 for a longer hunt.
EXAMPLES = int(os.environ.get("LOYALTY_FUZZ_EXAMPLES", "50"))


@dataclass
class Suite:
    channels: dict[str, grpc.aio.Channel]
    hints: dict[str, list[str]]
    member: str = ""
    phone: str = ""
    targets: dict[str, str] = field(default_factory=dict)

    async def register(self) -> Suite:
        """This suite with a new member of its own (generated requests may erase the last)."""
        phone = f"139{uuid.uuid4().int % 10**8:08d}"
        identity = identity_service_pb2_grpc.IdentityServiceStub(self.channels["identity"])
        registered = await identity.RegisterMember(
            identity_service_pb2.RegisterMemberRequest(
                request_id=f"fuzz-{uuid.uuid4().hex}",
                unit="mall",
                channel=channel_pb2.CHANNEL_POS,
                identities=[member_pb2.Identity(type="phone", value=phone)],
            ),
            metadata=metadata_for(ADMIN),
            timeout=30,
        )
        return Suite(self.channels, self.hints, str(registered.member.name), phone, self.targets)

    def caller_of(self, rpc: Rpc) -> tuple[tuple[str, str], ...]:
        """An admin's token, or for a member's own channel (`/v1/me`, which only a member's
        token may call) the suite's member's."""
        if rpc.method.containing_service.full_name != ME_SERVICE:
            return metadata_for(ADMIN)
        member = self.member.removeprefix("members/")
        own = Caller(client_id=f"member:{member}", scopes=MEMBER_SCOPES, member=member)
        return metadata_for(own)

    async def call(
        self, rpc: Rpc, body: bytes, metadata: tuple[tuple[str, str | bytes], ...] | None = None
    ) -> grpc.aio.AioRpcError | None:
        """Send `body` as it is (no serializer) to `rpc`; the error, or None when answered."""
        send = self.channels[rpc.service].unary_unary(rpc.path)
        try:
            await send(
                body, metadata=self.caller_of(rpc) if metadata is None else metadata, timeout=60
            )
        except grpc.aio.AioRpcError as error:
            return error
        return None


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def suite(make_settings: Callable[..., Settings], run_id: str) -> AsyncIterator[Suite]:
    """The seven services on databases and an event namespace of their own, with the Huayue
    demo loaded: generated requests that succeed (a year end in 8000, a new programme, an
    expiry run) cannot disturb the other tests of the run. As under `make run`, they take
    caller headers without a token (read at start; the other suites' services do not)."""
    from loyalty_benefits.app import SPEC as BENEFITS
    from loyalty_engagement.app import SPEC as ENGAGEMENT
    from loyalty_gateway.app import SPEC as GATEWAY
    from loyalty_identity.app import SPEC as IDENTITY
    from loyalty_insights.app import SPEC as INSIGHTS
    from loyalty_points.app import SPEC as POINTS
    from loyalty_tiers.app import SPEC as TIERS

    for job in ("POINTS_JOB", "TIERS_JOB", "BENEFITS_ISSUANCE"):
        os.environ[f"LOYALTY_{job}_INTERVAL_SECONDS"] = "3600"  # as the other suites do
    settings = make_settings(
        database_prefix=f"{run_id}_fuzz_",
        event_namespace=f"{run_id}fuzz",
        database_pool_size=3,  # a second suite beside the session's (see tests/support/suite.py)
    )
    runner, clock, channels, targets = ServiceRunner(settings), Clock(), {}, {}
    trusting = os.environ.get(TRUST_HEADERS)
    os.environ[TRUST_HEADERS] = "true"
    try:
        services: list[ServiceSpec[Any, ...]] = [
            IDENTITY,
            POINTS,
            TIERS,
            BENEFITS,
            INSIGHTS,
            ENGAGEMENT,
        ]
        for spec in services:
            service = await runner.start(spec, settings, clock=clock)
            settings = settings.model_copy(update={f"{spec.name}_target": service.target})
            channels[spec.name] = grpc.aio.insecure_channel(service.target)
            targets[spec.name] = service.target
        gateway = await runner.start(GATEWAY, settings)  # no service calls the gateway
        channels["gateway"] = grpc.aio.insecure_channel(gateway.target)
        targets["gateway"] = gateway.target
    finally:
        if trusting is None:
            os.environ.pop(TRUST_HEADERS)
        else:
            os.environ[TRUST_HEADERS] = trusting
    await load_demo(settings)
    suite = await Suite(channels, {}, targets=targets).register()
    suite.hints.update(
        {
            "member": [suite.member],
            "name": [suite.member],
            "unit": ["mall", "hotel", "cinema"],
            "type": ["phone", "email"],
            "value": [suite.phone, "13800138000"],
            "tier": ["silver", "gold", "platinum"],
            "request_id": [f"fuzz-{n}" for n in range(5)],
            "currency_code": ["CNY", "JPY", "USD"],
            "amount": ["12.50", "100", "1E+999999999"],
            "benefit": ["mall-gold-discount", "hotel-late-checkout", "free-parking"],
            "template": ["mall-voucher-100"],
            "reward": ["cinema-ticket", "mall-voucher-100", "hotel-breakfast"],
            "partner": ["skyair"],
            "tag": ["segment:vip"],
        }
    )
    suite.hints["segment"] = [await _segment(suite)]
    yield suite
    for channel in channels.values():
        await channel.close()
    await runner.stop_all()


def refused_well(error: grpc.aio.AioRpcError | None, what: str) -> None:
    assert error is None or error.code() not in NEVER, f"{what}: {error}"


@pytest.mark.parametrize("name", sorted(RPCS))
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)
@given(data=st.data())
async def test_generated_requests_are_never_internal_nor_unknown(
    suite: Suite, name: str, data: st.DataObject
) -> None:
    rpc = RPCS[name]
    request = data.draw(messages(rpc.method.input_type, suite.hints), label="request")
    refused_well(await suite.call(rpc, request.SerializeToString()), f"{name}({request})"[:2000])


@pytest.mark.parametrize("name", sorted(RPCS))
async def test_an_undecodable_body_is_invalid_argument_malformed_request(
    suite: Suite, name: str
) -> None:
    rpc = RPCS[name]
    for what, body in undecodable_bodies(rpc.method.input_type):
        error = await suite.call(rpc, body)
        assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT, (what, error)
        status = from_rpc_error(error)
        info = error_info(status) if status is not None else None
        assert info is not None, (what, error)
        assert (info.reason, info.domain) == ("MALFORMED_REQUEST", f"{rpc.service}.loyalty")
        assert rpc.method.input_type.name not in (error.details() or ""), what


@pytest.mark.parametrize("name", sorted(RPCS))
async def test_a_bin_header_that_is_not_utf8_is_ignored(suite: Suite, name: str) -> None:
    rpc = RPCS[name]
    hostile: tuple[tuple[str, str | bytes], ...] = (
        ("x-anything-bin", b"\xff"),
        ("x-loyalty-unit-bin", b"\xfe"),
    )
    metadata = (*suite.caller_of(rpc), *hostile)
    refused_well(await suite.call(rpc, b"", metadata), name)
    refused_well(await suite.call(rpc, b"", (("x-anything-bin", b"\xff"),)), f"{name} anonymous")


async def test_without_a_token_caller_headers_and_hostile_fields_are_refused_alike(
    suite: Suite,
) -> None:
    """As under `make run`: no token, no caller headers at all, or an admin's headers."""
    rpc = BY_METHOD["ListPostings"]
    request = fill(rpc.request_class(), {"member": suite.member, "end_time": _timestamp(-(2**63))})
    admin = (("x-loyalty-unit", "group"), ("x-loyalty-scopes", "admin"))
    for metadata in ((), admin, (*admin, ("x-loyalty-unit-bin", b"\xff"))):
        error = await suite.call(rpc, request.SerializeToString(), metadata)
        assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    body = b"\x0c"
    for metadata in ((), admin):
        error = await suite.call(rpc, body, metadata)
        assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT, error


def _timestamp(seconds: int = 1_767_225_600, nanos: int = 0) -> dict[str, int]:
    return {"seconds": seconds, "nanos": nanos}


# (method, the request's fields (given the suite's real member), the field the refusal names)
DEFECTS: list[tuple[str, Callable[[Suite], dict[str, Any]], str]] = [
    ("RunBirthdayGifts", lambda s: {"as_of": _timestamp(nanos=1_000_000_000)}, "as_of.nanos"),
    ("RunBirthdayGifts", lambda s: {"as_of": _timestamp(253402300799)}, "as_of"),
    (
        "GetSettlement",
        lambda s: {"start_time": _timestamp(), "end_time": _timestamp(nanos=1_000_000_000)},
        "end_time.nanos",
    ),
    ("ListPostings", lambda s: {"member": s.member, "end_time": _timestamp(-(2**63))}, "end_time"),
    ("RunExpiry", lambda s: {"as_of": _timestamp(1_000_000_000_000)}, "as_of"),
    ("RunPendingActivation", lambda s: {"as_of": _timestamp(-62135596801)}, "as_of"),
    ("RunYearEnd", lambda s: {"as_of": _timestamp(nanos=-1)}, "as_of.nanos"),
    ("RunGrantExpiry", lambda s: {"as_of": _timestamp(253402300799)}, "as_of"),
    (
        "CreateTierGrant",
        lambda s: {
            "member": s.member,
            "request_id": "fuzz-grant",
            "tier_grant": {
                "tier": "gold",
                "kind": 2,
                "reason": "match",
                "end_time": _timestamp(-62135596801),
            },
        },
        "tier_grant.end_time",
    ),
    (
        "PreviewMemberTier",
        lambda s: {
            "member": s.member,
            "activities": [{"unit": "mall", "qualifying_spend": "1E+999999999"}],
        },
        "activities[0].qualifying_spend",
    ),
    (
        "RedeemAtCheckout",
        lambda s: {
            "identity": {"type": "phone", "value": s.phone},
            "unit": "mall",
            "order_id": "x" * 12000,
            "points": 100,
            "request_id": "fuzz-checkout",
        },
        "order_id",
    ),
    (
        "RecordPurchase",
        lambda s: {
            "identity": {"type": "phone", "value": s.phone},
            "unit": "mall",
            "order_id": "x" * 12000,
            "lines": [{"line_id": "1", "amount": {"currency_code": "CNY", "amount": "10"}}],
            "request_id": "fuzz-purchase",
        },
        "order_id",
    ),
    ("ListPostings", lambda s: {"member": s.member, "kind": 9999}, "kind"),
    (
        "EarnPoints",
        lambda s: {
            "member": s.member,
            "unit": "mall",
            "order_id": "o-1",
            "request_id": "fuzz-earn",
            "lines": [{"line_id": "1", "amount": {"currency_code": "CNY", "amount": "NaN"}}],
        },
        "lines[0].amount.amount",
    ),
    (
        "CreateSegment",
        lambda s: {
            "request_id": f"fuzz-{uuid.uuid4().hex}",
            "segment": {
                "display_name": "fuzz",
                "rule": {"condition": {"field": 1, "operator": -1, "value": "gold"}},
            },
        },
        "segment.rule.condition.operator",
    ),
]


@pytest.mark.parametrize(
    ("name", "fields", "field"), DEFECTS, ids=[f"{n}-{f}" for n, _, f in DEFECTS]
)
async def test_each_defect_found_by_fuzzing_is_invalid_argument_naming_the_field(
    suite: Suite, name: str, fields: Callable[[Suite], dict[str, Any]], field: str
) -> None:
    rpc = BY_METHOD[name]
    request = fill(rpc.request_class(), fields(await suite.register()))
    error = await suite.call(rpc, request.SerializeToString())
    assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    status = from_rpc_error(error)
    assert status is not None and error_info(status) is not None
    violations = bad_request(status)
    assert violations is not None, status
    assert field in [v.field for v in violations.field_violations], status


def fill(message: Any, fields: dict[str, Any]) -> Any:
    """`message` with `fields` set as given (json_format would refuse the timestamps)."""
    for key, value in fields.items():
        if isinstance(value, dict):
            fill(getattr(message, key), value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    fill(getattr(message, key).add(), item)
                else:
                    getattr(message, key).append(item)
        else:
            setattr(message, key, value)
    return message


MIB = 1024 * 1024
SERVICES = ("identity", "points", "tiers", "benefits", "gateway")


@pytest.mark.parametrize("service", SERVICES)
async def test_a_message_past_the_size_limit_is_resource_exhausted_and_the_service_carries_on(
    suite: Suite, service: str
) -> None:
    rpc = next(r for r in RPCS.values() if r.service == service)
    error = await suite.call(rpc, b"\x0a" + b"\xff" * (4 * MIB + 1))
    assert error is not None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
    assert "larger than max" in (error.details() or "")
    assert from_rpc_error(error) is None  # gRPC's own answer: no details to misread
    health = health_pb2_grpc.HealthStub(suite.channels[service])
    answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def test_a_long_string_within_the_size_limit_is_a_field_violation_not_a_size_error(
    suite: Suite,
) -> None:
    rpc = BY_METHOD["GetMember"]
    request = fill(rpc.request_class(), {"name": "members/" + "x" * (3 * MIB)})
    error = await suite.call(rpc, request.SerializeToString())
    assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT, error


async def test_a_kit_channel_refuses_to_send_past_its_own_limit(suite: Suite) -> None:
    rpc = BY_METHOD["GetMember"]
    async with channels.channel(suite.targets["identity"], max_message_bytes=64 * 1024) as small:
        send = small.unary_unary(rpc.path)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await send(b"\x0a" + b"\xff" * (128 * 1024), timeout=5)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def _first_text_field(rpc: Rpc) -> str | None:
    return next(
        (
            f.name
            for f in rpc.method.input_type.fields
            if f.type == FieldDescriptor.TYPE_STRING and not f.is_repeated
        ),
        None,
    )


TEXT_RPCS = sorted(name for name, rpc in RPCS.items() if _first_text_field(rpc))


@pytest.mark.parametrize("name", TEXT_RPCS)
@pytest.mark.parametrize("text", HOSTILE_TEXT, ids=[f"U+{ord(c):04X}" for c in HOSTILE_TEXT])
async def test_text_with_control_bidi_or_invisible_characters_is_invalid_characters_everywhere(
    suite: Suite, name: str, text: str
) -> None:
    rpc = BY_METHOD[name.rsplit("/", 1)[-1]]
    field = _first_text_field(rpc)
    assert field is not None
    request = rpc.request_class()
    setattr(request, field, f"Wang{text}Fang")
    error = await suite.call(rpc, request.SerializeToString())
    assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    status = from_rpc_error(error)
    assert status is not None
    info, violations = error_info(status), bad_request(status)
    assert info is not None and info.reason == "INVALID_CHARACTERS", status
    assert violations is not None and [v.field for v in violations.field_violations] == [field]
    assert violations.field_violations[0].reason == "INVALID_CHARACTERS"


async def test_text_nested_in_repeated_messages_and_maps_is_checked_too(suite: Suite) -> None:
    rpc = BY_METHOD["RegisterMember"]
    request = fill(
        rpc.request_class(),
        {
            "request_id": f"fuzz-{uuid.uuid4().hex}",
            "unit": "mall",
            "identities": [{"type": "phone", "value": "139\u202e00139000"}],
            "profile": {"full_name": "陈\u200b静"},
        },
    )
    error = await suite.call(rpc, request.SerializeToString())
    assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    status = from_rpc_error(error)
    assert status is not None and (found := bad_request(status)) is not None
    assert [v.field for v in found.field_violations] == ["identities[0].value", "profile.full_name"]


# Each List and the most its pages hold (protos/README.md, "Sizes of messages and pages").
LISTS = {
    "ListMembers": ("members", 1000),
    "ListConsentEvents": ("consent_events", 500),
    "ListIdentityTypes": ("identity_types", 1000),
    "ListPostings": ("postings", 500),
    "ListLots": ("lots", 500),
    "ListReferrals": ("referrals", 200),
    "ListTierHistory": ("changes", 500),
    "ListTierGrants": ("tier_grants", 500),
    "ListEntitlements": ("entitlements", 200),
    "ListCoupons": ("coupons", 500),
    "ListCouponIssuances": ("coupon_issuances", 200),
    "ListCouponOffers": ("coupon_offers", 200),
    "ListRewards": ("rewards", 200),
    "ListJourneys": ("journeys", 200),
    "ListJourneyEntries": ("entries", 200),
    "ListMessages": ("messages", 200),
    "ListDeliveries": ("deliveries", 200),
    "ListChallenges": ("challenges", 200),
    "ListMemberBadges": ("badges", 200),
    "ListAuditEntries": ("entries", 500),
    "ListSegments": ("segments", 200),
    "ListSegmentMembers": ("members", 1000),
    "ListMemberSegments": ("segments", 200),
    "ListTransactionalMessages": ("messages", 100),
    # A member's own channel: the services' pages, for the member of the token.
    "ListMyPostings": ("postings", 500),
    "ListMyLots": ("lots", 500),
    "ListMyCoupons": ("coupons", 500),
    "ListMyEntitlements": ("entitlements", 200),
    "ListMyTierHistory": ("changes", 500),
    "ListMyConsents": ("consent_events", 500),
    "ListMyCouponOffers": ("coupon_offers", 200),
    "ListMyReferrals": ("referrals", 200),
}


def test_every_list_of_the_contracts_is_bounded_here() -> None:
    assert sorted(LISTS) == sorted(m for m in BY_METHOD if m.startswith("List"))


async def _journey(suite: Suite) -> str:
    """A draft journey of the group's (whose entries a List may page through)."""
    stub = engagement_service_pb2_grpc.EngagementServiceStub(suite.channels["engagement"])
    created = await stub.CreateJourney(
        engagement_service_pb2.CreateJourneyRequest(
            request_id=f"fuzz-{uuid.uuid4().hex}",
            journey=engagement_service_pb2.Journey(
                display_name="fuzz",
                unit="group",
                trigger=engagement_service_pb2.Trigger(
                    kind=engagement_service_pb2.TRIGGER_KIND_MEMBER_REGISTERED
                ),
                steps=[
                    engagement_service_pb2.Step(
                        change_tags=engagement_service_pb2.ChangeTags(add_tags=["fuzz:seen"])
                    )
                ],
            ),
        ),
        metadata=metadata_for(ADMIN),
        timeout=30,
    )
    return str(created.journey.name)


async def _segment(suite: Suite) -> str:
    """A segment of the group's (all members: whose members a List may page through)."""
    stub = segments_pb2_grpc.SegmentServiceStub(suite.channels["insights"])
    created = await stub.CreateSegment(
        segments_pb2.CreateSegmentRequest(
            request_id=f"fuzz-{uuid.uuid4().hex}",
            segment=segments_pb2.Segment(
                display_name="fuzz", rule=segments_pb2.SegmentRule(all=segments_pb2.RuleAll())
            ),
        ),
        metadata=metadata_for(ADMIN),
        timeout=30,
    )
    return str(created.segment.name)


async def _fresh_for_own_channel(suite: Suite, rpc: Rpc) -> Suite:
    """For a member's own channel, the suite with a member of its own: the suite's member may
    have been erased by a generated request, and identity refuses an erased member's token."""
    if rpc.method.containing_service.full_name != ME_SERVICE:
        return suite
    return await suite.register()


async def _list_request(suite: Suite, method: str, **fields: Any) -> Any:
    rpc = BY_METHOD[method]
    request = rpc.request_class()
    if "member" in rpc.method.input_type.fields_by_name:
        setattr(request, "member", suite.member)  # noqa: B010 (not every List has one)
    if "journey" in rpc.method.input_type.fields_by_name:
        setattr(request, "journey", await _journey(suite))  # noqa: B010
    if "segment" in rpc.method.input_type.fields_by_name:
        setattr(request, "segment", await _segment(suite))  # noqa: B010
    if "phone" in rpc.method.input_type.fields_by_name:  # a phone's transactional messages
        setattr(request, "phone", f"+86{suite.phone}")  # noqa: B010
    return fill(request, fields)


@pytest.mark.parametrize("method", sorted(LISTS))
async def test_a_huge_page_size_is_clamped_to_the_maximum(suite: Suite, method: str) -> None:
    """The answer holds at most the maximum page (how fast it comes is the benchmarks' to
    measure; the deadline only catches a call that would read everything)."""
    rpc = BY_METHOD[method]
    items, maximum = LISTS[method]
    suite = await _fresh_for_own_channel(suite, rpc)
    request = await _list_request(suite, method, page_size=2**31 - 1)
    answer = await suite.channels[rpc.service].unary_unary(
        rpc.path,
        request_serializer=type(request).SerializeToString,
        response_deserializer=GetMessageClass(rpc.method.output_type).FromString,
    )(request, metadata=suite.caller_of(rpc), timeout=30)
    assert len(getattr(answer, items)) <= maximum


@pytest.mark.parametrize("method", sorted(LISTS))
@pytest.mark.parametrize(
    "token",
    [
        "A" * 3 * 1024 * 1024,  # 3 MiB of base64
        base64.urlsafe_b64encode(b"[" * 700).decode(),  # nested past the parser's stack
        base64.urlsafe_b64encode(b'{"a": {"x": 1}, "f": "0"}').decode(),  # another filter
    ],
    ids=["huge", "deep", "foreign"],
)
async def test_a_hostile_page_token_is_invalid_argument(
    suite: Suite, method: str, token: str
) -> None:
    rpc = BY_METHOD[method]
    suite = await _fresh_for_own_channel(suite, rpc)
    request = await _list_request(suite, method, page_token=token)
    error = await suite.call(rpc, request.SerializeToString())
    assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    status = from_rpc_error(error)
    assert status is not None and (found := bad_request(status)) is not None
    assert [v.field for v in found.field_violations] == ["page_token"]
