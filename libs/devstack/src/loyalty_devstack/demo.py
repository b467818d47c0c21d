"""The Huayue (华悦集团) demo programme of docs/worked-example.md, loaded through the services' own
public RPCs (never their tables), so it doubles as a smoke test of a running suite.

Each service contributes a loader. A loader first looks for its part (the members by their
identities, the programme, the ladder, the catalogue) and writes only what is missing, with
request ids derived from the demo data, so loading twice, or after a run that stopped half-way,
changes nothing that is already there. `load` answers with one line saying what it loaded or
found.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from loyalty.common.v1 import channel_pb2
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import identity_service_pb2_grpc, member_pb2
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.points.v1 import points_service_pb2_grpc, programme_pb2
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_pb
from loyalty.tiers.v1 import tiers_service_pb2_grpc
from loyalty_kit.channels import channel
from loyalty_kit.settings import Settings

from loyalty_devstack.demo_benefits import load_benefits
from loyalty_devstack.demo_caller import Part, demo_metadata, not_there

Loader = Callable[[Settings], Awaitable[Part]]


@dataclass(frozen=True)
class DemoMember:
    key: str
    unit: str
    channel: int
    identities: tuple[tuple[str, str], ...]
    full_name: str
    birthday: tuple[int, int, int]
    tags: tuple[str, ...] = ()
    sms_consent: bool = False


# Huayue's first members, registered where the worked example has them start.
MEMBERS = (
    DemoMember(
        "wang-fang",
        "mall",
        channel_pb2.CHANNEL_POS,
        (("phone", "13800138000"),),
        "王芳",
        (1988, 3, 8),
        ("bu:mall-active",),
        sms_consent=True,
    ),
    DemoMember(
        "li-ming",
        "hotel",
        channel_pb2.CHANNEL_APP,
        (("phone", "13900139000"), ("email", "li.ming@example.com")),
        "李明",
        (1982, 11, 22),
        ("bu:hotel-active", "segment:vip"),
    ),
    DemoMember(
        "chen-jing",
        "cinema",
        channel_pb2.CHANNEL_MINI_PROGRAM,
        (("wechat_openid", "oHuayueCinemaDemo0001"),),
        "陈静",
        (1995, 7, 1),
        ("bu:cinema-active",),
    ),
    DemoMember(
        "zhao-lei",
        "estate",
        channel_pb2.CHANNEL_STORE,
        (("phone", "+85291234567"), ("unit_member_no", "estate:E-2019-0042")),
        "Zhao Lei",
        (1979, 1, 15),
        ("bu:estate-owner",),
    ),
)


async def _register(
    stub: identity_service_pb2_grpc.IdentityServiceStub,
    demo: DemoMember,
    metadata: tuple[tuple[str, str], ...],
) -> member_pb2.Member:
    year, month, day = demo.birthday
    request = identity_pb.RegisterMemberRequest(
        request_id=f"demo-register-{demo.key}",
        unit=demo.unit,
        channel=demo.channel,  # type: ignore[arg-type]
        identities=[member_pb2.Identity(type=t, value=v) for t, v in demo.identities],
        profile=member_pb2.Profile(full_name=demo.full_name),
    )
    request.profile.birthday.year = year
    request.profile.birthday.month = month
    request.profile.birthday.day = day
    if demo.sms_consent:
        request.consents.append(
            member_pb2.ConsentChange(purpose=member_pb2.CONSENT_PURPOSE_MARKETING_SMS, granted=True)
        )
    response: identity_pb.RegisterMemberResponse = await stub.RegisterMember(
        request, metadata=metadata
    )
    return response.member


async def load_identity(settings: Settings) -> Part:
    changed = 0
    metadata = demo_metadata(settings)
    async with channel(settings.target_of("identity")) as ch:
        stub = identity_service_pb2_grpc.IdentityServiceStub(ch)
        for demo in MEMBERS:
            kind, value = demo.identities[0]
            try:
                found = await stub.ResolveMember(
                    identity_pb.ResolveMemberRequest(
                        identity=member_pb2.Identity(type=kind, value=value)
                    ),
                    metadata=metadata,
                )
                member = found.member
            except grpc.aio.AioRpcError as error:
                if not not_there(error):
                    raise
                member = await _register(stub, demo, metadata)
                changed += 1
            missing = [tag for tag in demo.tags if tag not in member.tags]
            if missing:
                await stub.UpdateTags(
                    identity_pb.UpdateTagsRequest(
                        member=member.name, request_id=f"demo-tags-{demo.key}", add_tags=missing
                    ),
                    metadata=metadata,
                )
                changed += 1
    return Part(f"{len(MEMBERS)} members", changed > 0)


def _at(text: str) -> Timestamp:
    stamp = Timestamp()
    stamp.FromJsonString(text)
    return stamp


def huayue_programme() -> programme_pb2.Programme:
    """The worked example's rules: base 1 point per CNY 1, point value CNY 0.01; mall x1, hotel x2
    (pending 7 days), estate x0.1, cinema x1.5; tiers silver 1.1, gold 1.25, platinum 1.5,
    diamond 2; points expire at the end of the 24th month after earning; referral 500 + 200;
    1,000 points -> 100 airline miles, minimum 1,000, at most 50,000 points a day. Two past
    campaigns show how rules apply to offline receipts replayed later."""
    return programme_pb2.Programme(
        effective_from=_at("2020-01-01T00:00:00+08:00"),
        base_currency_code="CNY",
        time_zone="Asia/Shanghai",
        currencies=[
            programme_pb2.CurrencyRule(
                currency_code="CNY", base_rate="1", point_value="0.01", base_currency_rate="1"
            ),
            programme_pb2.CurrencyRule(
                currency_code="HKD", base_rate="1", point_value="0.011", base_currency_rate="0.92"
            ),
        ],
        units=[
            programme_pb2.UnitRule(unit="mall", multiplier="1"),
            programme_pb2.UnitRule(unit="hotel", multiplier="2", pending_days=7),
            programme_pb2.UnitRule(unit="estate", multiplier="0.1"),
            programme_pb2.UnitRule(unit="cinema", multiplier="1.5"),
        ],
        tiers=[
            programme_pb2.TierRule(tier="basic", multiplier="1"),
            programme_pb2.TierRule(tier="silver", multiplier="1.1"),
            programme_pb2.TierRule(tier="gold", multiplier="1.25"),
            programme_pb2.TierRule(tier="platinum", multiplier="1.5"),
            programme_pb2.TierRule(tier="diamond", multiplier="2"),
        ],
        expiry=programme_pb2.ExpiryPolicy(months_after_earning=24),
        transfer=programme_pb2.TransferPolicy(
            max_points_per_transfer=20_000, max_points_per_day=50_000
        ),
        partners=[
            programme_pb2.PartnerRule(
                partner="skyair",
                points_per_partner_unit=10,
                points_per_partner_unit_in=8,
                min_points=1_000,
                max_points_per_day=50_000,
            )
        ],
        referral=programme_pb2.ReferralPolicy(referrer_points=500, referee_points=200),
        campaigns=[
            programme_pb2.Campaign(
                code="double-11-2025",
                name="双十一 double points at the mall",
                start_time=_at("2025-11-11T00:00:00+08:00"),
                end_time=_at("2025-11-12T00:00:00+08:00"),
                units=["mall"],
                multiplier="2",
                stacking=programme_pb2.STACKING_COMBINABLE,
                priority=10,
            ),
            programme_pb2.Campaign(
                code="cinema-opening-2025",
                name="cinema opening week: 100 bonus points",
                start_time=_at("2025-06-01T00:00:00+08:00"),
                end_time=_at("2025-06-08T00:00:00+08:00"),
                units=["cinema"],
                bonus_points=100,
                stacking=programme_pb2.STACKING_EXCLUSIVE,
                priority=5,
            ),
        ],
    )


async def load_points(settings: Settings) -> Part:
    metadata = demo_metadata(settings)
    async with channel(settings.target_of("points")) as ch:
        stub = points_service_pb2_grpc.PointsServiceStub(ch)
        try:
            current = await stub.GetProgramme(points_pb.GetProgrammeRequest(), metadata=metadata)
            return Part(f"points programme v{current.programme.version}", False)
        except grpc.aio.AioRpcError as error:
            if not not_there(error):
                raise
        stored = await stub.UpdateProgramme(
            points_pb.UpdateProgrammeRequest(
                programme=huayue_programme(),
                reason="Huayue demo programme (docs/worked-example.md)",
                request_id="demo-programme-v1",
            ),
            metadata=metadata,
        )
    return Part(f"points programme v{stored.programme.version}", True)


def huayue_ladder() -> tiers_pb.Ladder:
    """The worked example's ladder: by 12-month qualifying spend (CNY), silver 5,000; gold 20,000;
    platinum 80,000; diamond 300,000. A tier is kept with at least half its threshold in the
    tier year, otherwise the member drops one level."""

    def spend(value: str) -> list[tiers_pb.Threshold]:
        return [tiers_pb.Threshold(metric=tiers_pb.METRIC_QUALIFYING_SPEND, value=value)]

    def tier(code: str, zh: str, en: str, threshold: int) -> tiers_pb.Tier:
        return tiers_pb.Tier(
            code=code,
            name_zh=zh,
            name_en=en,
            thresholds=spend(str(threshold)),
            retention_thresholds=spend(str(threshold // 2)),
        )

    return tiers_pb.Ladder(
        base_currency_code="CNY",  # the points programme's: spend arrives in it
        window_months=12,
        downgrade_policy=tiers_pb.DOWNGRADE_POLICY_ONE_LEVEL,
        tiers=[
            tiers_pb.Tier(code="basic", name_zh="普卡", name_en="Basic"),
            tier("silver", "银卡", "Silver", 5_000),
            tier("gold", "金卡", "Gold", 20_000),
            tier("platinum", "白金卡", "Platinum", 80_000),
            tier("diamond", "钻石卡", "Diamond", 300_000),
        ],
    )


async def load_tiers(settings: Settings) -> Part:
    metadata = demo_metadata(settings)
    async with channel(settings.target_of("tiers")) as ch:
        stub = tiers_service_pb2_grpc.TiersServiceStub(ch)
        try:
            current = await stub.GetLadder(tiers_pb.GetLadderRequest(), metadata=metadata)
            return Part(f"ladder v{current.ladder.version}", False)
        except grpc.aio.AioRpcError as error:
            if not not_there(error):
                raise
        stored = await stub.UpdateLadder(
            tiers_pb.UpdateLadderRequest(ladder=huayue_ladder(), request_id="demo-ladder-v1"),
            metadata=metadata,
        )
    return Part(f"ladder v{stored.ladder.version}", True)


# (service, loader) in dependency order.
LOADERS: list[tuple[str, Loader]] = [
    ("identity", load_identity),
    ("points", load_points),
    ("tiers", load_tiers),
    ("benefits", load_benefits),
]


def summary(parts: list[Part]) -> str:
    """One line: `demo: loaded Huayue (4 members, ...)` or `demo: found the programme in
    place, nothing loaded`."""
    loaded = [part.what for part in parts if part.loaded]
    found = [part.what for part in parts if not part.loaded]
    if not loaded:
        return "demo: found the programme in place, nothing loaded"
    line = f"demo: loaded Huayue ({', '.join(loaded)})"
    return line + (f"; found in place: {', '.join(found)}" if found else "")


async def load(settings: Settings) -> str:
    """Load whatever of the demo is missing; the line saying what was loaded or found."""
    return summary([await loader(settings) for _service, loader in LOADERS])
