"""The kit's access rules: what `check` allows (pure), and a method without a rule refused by a
real service (fail closed)."""

from __future__ import annotations

import dataclasses

import grpc
import pytest
from google.protobuf import wrappers_pb2
from loyalty_devstack.testing import ServiceRunner
from loyalty_kit.access import ADMIN_ONLY, ANY_CALLER, NoAccessRule, check, rule
from loyalty_kit.caller import ANONYMOUS, Caller, UnitMismatch
from loyalty_kit.channels import channel
from loyalty_kit.errors import PermissionDenied

from tests.kit.echo import echo_call, echo_spec
from tests.support.rpc import fails

MALL_TILL = Caller(unit="mall", client_id="till", scopes=frozenset({"earn"}))
ADMIN = Caller(unit="group", client_id="ops", scopes=frozenset({"admin"}))
REGISTER = rule("earn", "members:register", unit_field="value")
ACCESS = {"Register": REGISTER, "Read": ANY_CALLER, "Run": ADMIN_ONLY}


def naming(unit: str) -> wrappers_pb2.StringValue:
    return wrappers_pb2.StringValue(value=unit)


def test_any_one_of_the_scopes_grants_and_admin_passes_every_rule() -> None:
    check(ACCESS, "Register", naming("mall"), MALL_TILL)
    desk = Caller(unit="mall", client_id="desk", scopes=frozenset({"members:register"}))
    check(ACCESS, "Register", naming("mall"), desk)
    for method in ACCESS:
        check(ACCESS, method, naming("hotel"), ADMIN)
    check(ACCESS, "Read", None, ANONYMOUS)
    with pytest.raises(PermissionDenied) as refused:
        check(ACCESS, "Run", None, MALL_TILL)
    assert refused.value.reason == "SCOPE_REQUIRED"
    with pytest.raises(PermissionDenied) as unscoped:
        check(
            ACCESS, "Register", naming("mall"), dataclasses.replace(MALL_TILL, scopes=frozenset())
        )
    assert unscoped.value.metadata == {"scope": "earn or members:register"}


def test_a_unit_acts_only_for_itself_where_the_request_names_one() -> None:
    with pytest.raises(UnitMismatch) as foreign:
        check(ACCESS, "Register", naming("hotel"), MALL_TILL)
    assert foreign.value.metadata == {"unit": "hotel", "caller_unit": "mall"}
    check(ACCESS, "Register", naming(" mall "), MALL_TILL)
    check(ACCESS, "Register", naming(""), MALL_TILL)  # unnamed: the handler's validation answers
    check(ACCESS, "Register", None, MALL_TILL)  # not decoded: refused as malformed after this


def test_a_method_without_a_rule_is_refused() -> None:
    with pytest.raises(NoAccessRule) as missing:
        check(ACCESS, "Erase", None, ADMIN)
    assert missing.value.reason == "NO_ACCESS_RULE"


@pytest.mark.asyncio(loop_scope="session")
async def test_a_service_refuses_a_method_its_table_forgot(services: ServiceRunner) -> None:
    spec = dataclasses.replace(echo_spec(uses_database=False), access={})
    service = await services.start(spec)
    async with channel(service.target) as ch:
        failure = await fails(echo_call(ch)(wrappers_pb2.StringValue(value="hello"), timeout=15))
    assert (failure.code, failure.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NO_ACCESS_RULE")
    assert failure.metadata == {"method": "Echo"}
