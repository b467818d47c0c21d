"""Personal data stays protected: sealed at rest, out of logs, gone after erasure."""

from __future__ import annotations

import asyncpg
import pytest
from google.protobuf import field_mask_pb2
from loyalty.identity.v1 import identity_service_pb2 as pb
from loyalty.identity.v1 import member_pb2
from loyalty_kit.db import asyncpg_params
from loyalty_kit.settings import Settings
from sqlalchemy.engine import make_url

from tests.identity.conftest import MALL_POS, SERVICE_DESK, IdentityClient
from tests.identity.test_registration import phone, register, rid
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")

NAME = "欧阳娜娜"
EMAIL = "nana.ouyang@example.org"


async def everything_stored(settings: Settings) -> bytes:
    """Every value of every row of every table of the identity database, as bytes."""
    conn = await asyncpg.connect(
        **asyncpg_params(make_url(str(settings.service_database_url("identity"))))
    )
    try:
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
        dump = bytearray()
        for row in tables:
            for record in await conn.fetch(f'SELECT * FROM "{row["table_name"]}"'):
                for value in record.values():
                    dump += value if isinstance(value, bytes) else str(value).encode()
                    dump += b"\x00"
        return bytes(dump)
    finally:
        await conn.close()


async def test_a_full_flow_leaves_no_personal_data_in_logs_or_at_rest(
    identity: IdentityClient, settings: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    number = phone()
    request = register(number)
    request.identities.append(member_pb2.Identity(type="email", value=EMAIL))
    request.profile.full_name = NAME
    request.profile.birthday.year, request.profile.birthday.month = 1996, 3
    request.profile.birthday.day = 8
    member = (await identity.as_(MALL_POS).RegisterMember(request)).member
    await identity.as_(MALL_POS).ResolveMember(
        pb.ResolveMemberRequest(identity=member_pb2.Identity(type="phone", value=number))
    )
    await identity.as_(SERVICE_DESK).UpdateProfile(
        pb.UpdateProfileRequest(
            member=member.name,
            request_id=rid(),
            profile=member_pb2.Profile(full_name=NAME + "2"),
            update_mask=field_mask_pb2.FieldMask(paths=["full_name"]),
        )
    )
    await identity.as_(SERVICE_DESK).ExportMemberData(pb.ExportMemberDataRequest(name=member.name))
    # A bad request whose value is personal data: the error must not echo it into logs.
    bad = register(number + "99")
    failure = await fails(identity.as_(MALL_POS).RegisterMember(bad))
    assert number not in failure.message

    captured = capfd.readouterr()
    logs = captured.out + captured.err
    assert "rpc" in logs  # the access log did run
    for secret in (number, number[-8:], EMAIL, "nana", NAME, "1996-03-08"):
        assert secret not in logs, f"{secret!r} leaked into the logs"

    stored = await everything_stored(settings)
    for secret in (number, EMAIL, "nana.ouyang", NAME, "1996-03-08"):
        assert secret.encode() not in stored, f"{secret!r} is stored in plain text"
    assert member.member_id.encode() in stored  # the dump itself works


async def test_erasure_removes_the_member_key_and_every_personal_row(
    identity: IdentityClient, settings: Settings
) -> None:
    request = register(phone())
    request.profile.full_name = NAME
    member = (await identity.as_(MALL_POS).RegisterMember(request)).member
    conn = await asyncpg.connect(
        **asyncpg_params(make_url(str(settings.service_database_url("identity"))))
    )
    try:
        counts = "SELECT (SELECT count(*) FROM {t} WHERE member_id = $1) AS n"
        tables = ("member_keys", "identities", "profiles")
        before = [await conn.fetchval(counts.format(t=t), member.member_id) for t in tables]
        assert before == [1, 1, 1]
        await identity.as_(SERVICE_DESK).EraseMember(
            pb.EraseMemberRequest(name=member.name, request_id=rid())
        )
        after = [await conn.fetchval(counts.format(t=t), member.member_id) for t in tables]
        assert after == [0, 0, 0]
        state = await conn.fetchval(
            "SELECT state FROM members WHERE member_id = $1", member.member_id
        )
        assert state == "erased"
    finally:
        await conn.close()
