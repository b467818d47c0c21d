"""The kit's access rules: what `check` allows (pure), and a method without a rule refused by a
real service (fail closed)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import wrappers_pb2
from loyalty_devstack.testing import ServiceRunner, metadata_for
from loyalty_kit.access import (
    ADMIN_ONLY,
    ANY_CALLER,
    NoAccessRule,
    check,
    render_markdown,
    rule,
)
from loyalty_kit.caller import ANONYMOUS, Caller, UnitMismatch
from loyalty_kit.channels import channel
from loyalty_kit.errors import NotFound, PermissionDenied
from loyalty_kit.server import ServiceSpec

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


def test_a_unit_field_may_be_a_field_of_a_message_field() -> None:
    nested = {"Import": rule("members:import", unit_field="spec.value")}
    importer = Caller(unit="mall", client_id="mall-crm", scopes=frozenset({"members:import"}))

    class Request:
        spec = naming("hotel")

    with pytest.raises(UnitMismatch):
        check(nested, "Import", Request(), importer)
    check(nested, "Import", Request(), ADMIN)
    Request.spec = naming("mall")
    check(nested, "Import", Request(), importer)


# --- a client stream (an upload), through the kit's interceptor --------------------------------
UPLOAD_SERVICE = "loyalty.test.v1.UploadService"
UPLOAD_METHOD = f"/{UPLOAD_SERVICE}/Upload"


async def upload(requests, context):  # type: ignore[no-untyped-def]
    """Joins the values of the messages after the first (which names the unit)."""
    parts = []
    async for message in requests:
        if message.value == "missing":
            raise NotFound("nothing here", reason="NOTHING_HERE")
        parts.append(message.value)
    return wrappers_pb2.StringValue(value="|".join(parts))


def upload_spec() -> ServiceSpec:
    def add(server: grpc.aio.Server, _context: object) -> None:
        handler = grpc.method_handlers_generic_handler(
            UPLOAD_SERVICE,
            {
                "Upload": grpc.stream_unary_rpc_method_handler(
                    upload,
                    request_deserializer=wrappers_pb2.StringValue.FromString,
                    response_serializer=wrappers_pb2.StringValue.SerializeToString,
                )
            },
        )
        server.add_generic_rpc_handlers((handler,))

    return ServiceSpec(
        name="upload",
        service_names=(UPLOAD_SERVICE,),
        add_servicers=add,
        uses_database=False,
        port=lambda _settings: 0,
        access={"Upload": rule("members:import", unit_field="value")},
    )


@pytest.mark.asyncio(loop_scope="session")
async def test_a_client_stream_is_authorised_on_its_first_message_and_every_message_checked(
    services: ServiceRunner,
) -> None:
    service = await services.start(upload_spec())
    importer = Caller(unit="mall", client_id="mall-crm", scopes=frozenset({"members:import"}))
    till = Caller(unit="mall", client_id="mall-till", scopes=frozenset({"earn"}))
    async with channel(service.target) as ch:
        call = ch.stream_unary(
            UPLOAD_METHOD,
            request_serializer=wrappers_pb2.StringValue.SerializeToString,
            response_deserializer=wrappers_pb2.StringValue.FromString,
        )

        async def send(caller: Caller | None, *values: str) -> wrappers_pb2.StringValue:
            async def messages() -> AsyncIterator[wrappers_pb2.StringValue]:
                for value in values:
                    yield wrappers_pb2.StringValue(value=value)

            metadata = metadata_for(caller) if caller is not None else ()
            answer: wrappers_pb2.StringValue = await call(messages(), metadata=metadata, timeout=15)
            return answer

        assert (await send(importer, "mall", "a", "b")).value == "mall|a|b"
        assert (await send(ADMIN, "hotel", "a")).value == "hotel|a"
        anonymous = await fails(send(None, "mall", "a"))  # no token (or no trusted headers)
        assert (anonymous.code, anonymous.reason) in (
            (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING"),
            (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_REQUIRED"),
        )
        unscoped = await fails(send(till, "mall", "a"))
        assert (unscoped.code, unscoped.reason) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "SCOPE_REQUIRED",
        )
        foreign = await fails(send(importer, "hotel", "a"))
        assert (foreign.code, foreign.reason) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "UNIT_MISMATCH",
        )
        hostile = await fails(send(importer, "mall", "a", "b\u202ec"))
        assert (hostile.code, hostile.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_CHARACTERS",
        )
        missing = await fails(send(importer, "mall", "missing"))
        assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, "NOTHING_HERE")
        malformed = await fails(
            ch.stream_unary(UPLOAD_METHOD)(
                _raw(wrappers_pb2.StringValue(value="mall").SerializeToString(), b"\x0c"),
                metadata=metadata_for(importer),
                timeout=15,
            )
        )
        assert (malformed.code, malformed.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "MALFORMED_REQUEST",
        )


async def _raw(*bodies: bytes):  # type: ignore[no-untyped-def]
    for body in bodies:
        yield body


# --- a member's own token ---------------------------------------------------------------------
MEMBER = Caller(client_id="member:m-1", scopes=frozenset({"self:read"}), member="m-1")
SELF_ACCESS = {
    "Balance": rule("self:read", "earn", unit_field="value", member_field="value"),
    "Read": ANY_CALLER,
    "Adjust": rule("points:adjust"),
    "Redeem": rule("self:redeem", "redeem", member_field="value"),
    "Profile": rule(member_field="value"),
    "Mine": rule("self:read", member_only=True),
    "RedeemMine": rule("self:redeem", member_only=True),
}


def test_a_member_token_reaches_its_own_member_only() -> None:
    check(SELF_ACCESS, "Balance", naming("m-1"), MEMBER)
    check(SELF_ACCESS, "Balance", None, MEMBER)  # not decoded: the member is checked once it is
    for other in ("m-2", "", " m-2 "):
        with pytest.raises(PermissionDenied) as foreign:
            check(SELF_ACCESS, "Balance", naming(other), MEMBER)
        assert foreign.value.reason == "MEMBER_MISMATCH"
        assert foreign.value.metadata == {"field": "value"}  # the other member is not echoed
    # A unit's till on the same rule: its unit is checked as before, not a member.
    check(SELF_ACCESS, "Balance", naming("mall"), MALL_TILL)
    with pytest.raises(UnitMismatch):
        check(SELF_ACCESS, "Balance", naming("hotel"), MALL_TILL)


def test_a_member_field_may_name_the_member_by_its_resource_name() -> None:
    check(SELF_ACCESS, "Balance", naming("members/m-1"), MEMBER)
    with pytest.raises(PermissionDenied) as foreign:
        check(SELF_ACCESS, "Balance", naming("members/m-2"), MEMBER)
    assert foreign.value.reason == "MEMBER_MISMATCH"


def test_an_any_caller_rule_naming_the_member_field_lets_a_member_read_only_their_own() -> None:
    check(SELF_ACCESS, "Profile", naming("members/m-1"), MEMBER)
    check(SELF_ACCESS, "Profile", naming("anything"), MALL_TILL)  # any other caller, as before
    with pytest.raises(PermissionDenied) as foreign:
        check(SELF_ACCESS, "Profile", naming("members/m-2"), MEMBER)
    assert foreign.value.reason == "MEMBER_MISMATCH"


def test_a_member_token_is_refused_where_the_rule_names_no_member() -> None:
    for method in ("Read", "Adjust"):  # "any caller" does not include a member's own token
        with pytest.raises(PermissionDenied) as refused:
            check(SELF_ACCESS, method, naming("m-1"), MEMBER)
        assert refused.value.reason == "MEMBER_TOKEN_REFUSED"
    with pytest.raises(PermissionDenied) as unscoped:
        check(SELF_ACCESS, "Redeem", naming("m-1"), MEMBER)  # holds self:read, not self:redeem
    assert unscoped.value.reason == "SCOPE_REQUIRED"


def test_a_member_token_matches_its_members_resource_name_too() -> None:
    check(SELF_ACCESS, "Balance", naming("members/m-1"), MEMBER)
    for other in ("members/m-2", "members/", "members/m-1/x"):
        with pytest.raises(PermissionDenied) as foreign:
            check(SELF_ACCESS, "Balance", naming(other), MEMBER)
        assert foreign.value.reason == "MEMBER_MISMATCH"


def test_a_member_only_rule_takes_a_member_token_and_refuses_every_other_caller() -> None:
    check(SELF_ACCESS, "Mine", None, MEMBER)
    check(SELF_ACCESS, "Mine", naming("members/m-2"), MEMBER)  # the request names no member
    for caller in (MALL_TILL, ADMIN, ANONYMOUS):
        with pytest.raises(PermissionDenied) as refused:
            check(SELF_ACCESS, "Mine", naming("m-1"), caller)
        assert refused.value.reason == "MEMBER_TOKEN_REQUIRED"
        assert refused.value.field_violations == ()
    with pytest.raises(PermissionDenied) as unscoped:
        check(SELF_ACCESS, "RedeemMine", None, MEMBER)  # holds self:read, not self:redeem
    assert unscoped.value.reason == "SCOPE_REQUIRED"


def test_the_access_table_shows_a_member_only_rule() -> None:
    table = render_markdown([("echo", ["Mine", "Profile"], SELF_ACCESS)])
    assert "| Mine | `self:read` | - | the token's (only) | - | - | - |" in table
    assert "| Profile | any caller | - | `value` | - | - | - |" in table
    assert "MEMBER_TOKEN_REQUIRED" in table
