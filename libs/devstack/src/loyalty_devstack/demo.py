"""The Huayue (华悦集团) demo of docs/worked-example.md, loaded through the services' own public
RPCs (never their tables), so it doubles as a smoke test of a running suite.

The programme (points rules, tier ladder, benefits catalogue, reward stock, journeys and
challenges) is the file huayue.yaml, applied as `loyalty-admin programme apply` applies one:
sections the services hold already are left alone, journeys and challenges are found by their
keys (and the demo's ones of an older data folder, made before they had keys, by their
display names). The members are registered here: each is looked up by its identity first, and
only the missing ones are registered, with request ids derived from the demo data. So loading
twice, or after a run that stopped half-way, changes nothing that is already there.
Then the generated history (`demo_history.py`): a few thousand legacy members per unit and two
years of their past orders, imported with the member and order imports as an operator imports
them; the same files again are the same imports, so that part is idempotent too. `load`
answers with one line saying what it loaded or found.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import grpc
from google.protobuf.message import Message
from loyalty.benefits.v1 import catalogue_pb2
from loyalty.common.v1 import channel_pb2
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import identity_service_pb2_grpc, member_pb2
from loyalty.points.v1 import programme_pb2
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_pb
from loyalty_admin.document import ProgrammeFile
from loyalty_admin.document import load as load_file
from loyalty_admin.live import connected
from loyalty_admin.messages import CHALLENGES, JOURNEYS, STOCK
from loyalty_admin.programme import Planner, apply, report
from loyalty_kit.channels import channel
from loyalty_kit.settings import Settings

from loyalty_devstack import demo_history
from loyalty_devstack.demo_caller import Part, demo_metadata, not_there
from loyalty_devstack.demo_history import HistorySettings

M = TypeVar("M", bound=Message)


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


HUAYUE = Path(__file__).with_name("huayue.yaml")


@functools.cache
def huayue() -> ProgrammeFile:
    """The demo programme: huayue.yaml, read as `loyalty-admin programme` reads a file."""
    return load_file(HUAYUE)


def _copy(message: M | None) -> M:
    assert message is not None, "huayue.yaml has every section"
    copy = type(message)()
    copy.CopyFrom(message)
    return copy


def huayue_programme() -> programme_pb2.Programme:
    """The worked example's points programme (the file's `points` section)."""
    return _copy(huayue().points)


def huayue_ladder() -> tiers_pb.Ladder:
    """The worked example's tier ladder (the file's `tiers` section)."""
    return _copy(huayue().tiers)


def huayue_catalogue() -> catalogue_pb2.Catalogue:
    """The worked example's benefits catalogue (the file's `benefits` section)."""
    return _copy(huayue().benefits)


async def load_programme(settings: Settings, *, journeys: bool = True) -> list[Part]:
    """Apply huayue.yaml as `loyalty-admin programme apply` does: the sections the services
    hold already are left alone, the others published (the rewards stocked, the journeys and
    challenges made through engagement; their coupons are the catalogue's). Without
    `journeys`, neither journeys nor challenges (a suite without engagement)."""
    async with connected(settings) as services:
        planner = Planner(
            services,
            await services.read(journeys=journeys),
            now=datetime.now(UTC),
            reason="Huayue demo programme (docs/worked-example.md)",
        )
        file = huayue() if journeys else replace(huayue(), journeys=None, challenges=None)
        outcome = await apply(planner.plan(file), say=lambda _line: None)
        if not outcome.ok:
            raise RuntimeError("demo: " + "; ".join(report(outcome)))
        live = await services.read(journeys=False)
    assert live.points is not None and live.tiers is not None and live.benefits is not None
    stocked = len([code for code, units in live.stock.items() if units > 0])
    made = len(file.journeys or [])
    explorer = len(file.challenges or [])
    return [
        Part(f"points programme v{live.points.version}", "points" in outcome.done),
        Part(f"ladder v{live.tiers.version}", "tiers" in outcome.done),
        Part(
            f"catalogue v{live.benefits.version} with {stocked} rewards stocked",
            "benefits" in outcome.done or STOCK in outcome.done,
        ),
        *([Part(f"{made} journeys", JOURNEYS in outcome.done)] if journeys else []),
        *(
            [Part(f"{explorer} challenge{'s' * (explorer != 1)}", CHALLENGES in outcome.done)]
            if journeys
            else []
        ),
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


async def load(settings: Settings, history: HistorySettings | None = None) -> str:
    """Load whatever of the demo is missing; the line saying what was loaded or found. The
    generated history (demo_history.py) comes last: its imports need the programme (legacy
    points' rates, the ladder's tiers)."""
    parts = [
        await load_identity(settings),
        *await load_programme(settings),
    ]
    return summary([*parts, *await demo_history.load(settings, history)])
