"""A member's own channel over gRPC (`loyalty.gateway.v1.MeService` on the gateway's port): the
member's token reads its own member, unmasked; its export is written to the audit log naming
the member; a unit's token and an admin's are refused."""

from __future__ import annotations

import grpc
import pytest
from loyalty.gateway.v1 import me_service_pb2 as pb
from loyalty.gateway.v1 import me_service_pb2_grpc
from loyalty_devstack.testing import metadata_for
from loyalty_kit.caller import Caller
from loyalty_kit.scopes import MEMBER_SCOPES
from loyalty_kit.server import RunningService

from tests.gateway.conftest import Gateway
from tests.gateway.test_audit_log import entries, eventually
from tests.gateway.test_http import register
from tests.support.rpc import fails

pytestmark = pytest.mark.asyncio(loop_scope="session")


def own(member_id: str) -> Caller:
    return Caller(client_id=f"member:{member_id}", scopes=MEMBER_SCOPES, member=member_id)


async def test_a_members_token_reads_its_own_member_and_its_export_is_audited(
    gateway: Gateway, gateway_service: RunningService
) -> None:
    async with await gateway.session("mall", "earn") as till:
        member = await register(till)
    member_id = member.removeprefix("members/")
    async with grpc.aio.insecure_channel(gateway_service.target) as channel:
        me = me_service_pb2_grpc.MeServiceStub(channel)
        mine = metadata_for(own(member_id))
        profile = await me.GetMyProfile(pb.GetMyProfileRequest(), metadata=mine, timeout=15)
        assert profile.member.name == member and not profile.member.personal_data_masked
        assert profile.member.identities[0].value.startswith("+86")  # in clear: their own
        exported = await me.ExportMyData(pb.ExportMyDataRequest(), metadata=mine, timeout=30)
        assert exported.export.member == member

        for caller in (
            Caller(unit="mall", client_id="mall-till", scopes=frozenset({"earn"})),
            Caller(unit="group", client_id="ops", scopes=frozenset({"admin"})),
        ):
            refused = await fails(
                me.GetMyProfile(pb.GetMyProfileRequest(), metadata=metadata_for(caller))
            )
            assert (refused.code, refused.reason) == (
                grpc.StatusCode.PERMISSION_DENIED,
                "MEMBER_TOKEN_REQUIRED",
            )
            assert refused.fields == []

    (entry, *_) = await eventually(
        lambda: entries(gateway_service, target=member_id, method="ExportMyData")
    )
    assert (entry.client_id, entry.outcome) == (f"member:{member_id}", "OK")
