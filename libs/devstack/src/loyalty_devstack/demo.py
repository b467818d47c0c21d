"""The Huayue (华悦集团) demo programme of shared/DOMAIN.md, loaded through the services' own
public RPCs (never their tables), so it doubles as a smoke test of a running suite.

Each service contributes a loader as its contract lands. Loaders are idempotent (request ids
derived from the demo data), so loading twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from loyalty.common.v1 import channel_pb2
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import identity_service_pb2_grpc, member_pb2
from loyalty_kit.caller import Caller
from loyalty_kit.channels import channel
from loyalty_kit.settings import Settings

Loader = Callable[[Settings], Awaitable[str]]

DEMO_CALLER = Caller(unit="group", client_id="demo-loader", scopes=frozenset({"admin"}))


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


# Huayue's first members, registered where DOMAIN.md's story has them start.
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


async def load_identity(settings: Settings) -> str:
    created = 0
    metadata = DEMO_CALLER.metadata()
    async with channel(settings.target_of("identity")) as ch:
        stub = identity_service_pb2_grpc.IdentityServiceStub(ch)
        for demo in MEMBERS:
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
                    member_pb2.ConsentChange(
                        purpose=member_pb2.CONSENT_PURPOSE_MARKETING_SMS, granted=True
                    )
                )
            response = await stub.RegisterMember(request, metadata=metadata)
            created += response.created
            if demo.tags:
                await stub.UpdateTags(
                    identity_pb.UpdateTagsRequest(
                        member=response.member.name,
                        request_id=f"demo-tags-{demo.key}",
                        add_tags=list(demo.tags),
                    ),
                    metadata=metadata,
                )
    return f"{len(MEMBERS)} members ({created} new)"


# (service, loader) in dependency order.
LOADERS: list[tuple[str, Loader]] = [("identity", load_identity)]


async def load(settings: Settings) -> str:
    done = [f"{service}: {await loader(settings)}" for service, loader in LOADERS]
    return "; ".join(done)
