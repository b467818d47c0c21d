"""The audit log's kit side: which methods are audited, what an entry holds and that it never
holds personal data in clear (the end-to-end path, a call landing in the gateway's log, is in
tests/gateway/test_audit_log.py)."""

from __future__ import annotations

import contextvars
import functools
import json
import uuid
from collections.abc import Callable

from loyalty.audit.v1.audit_pb2 import AuditEntryRecorded
from loyalty.benefits.v1 import benefits_service_pb2 as benefits_pb
from loyalty.identity.v1 import identity_service_pb2 as identity_pb
from loyalty.identity.v1 import member_pb2
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty_devstack.access_docs import methods_of, specs
from loyalty_kit import audit
from loyalty_kit.caller import Caller, set_current_caller
from loyalty_kit.scopes import ADMIN

# Scopes that change members, money or the programme: a call under them that is not a read is
# an administrative act, and must leave a trace.
ADMIN_ISH = {
    ADMIN,
    "points:adjust",
    "members:manage",
    "coupons:issue",
    "members:import",
    "segments:write",
    "engagement:write",
}
READS = ("Get", "List", "Lookup", "Preview")


def test_every_administrative_rule_is_audited() -> None:
    missing = [
        f"{spec.name}.{method.name}"
        for spec in specs()
        for method in methods_of(spec)
        if (found := spec.access.get(method.name)) is not None
        and not found.audited
        and (
            (not method.name.startswith(READS) and found.scopes & ADMIN_ISH)
            or method.name == "ExportMemberData"
        )
    ]
    assert missing == []


def test_the_reason_comes_from_the_request_else_from_the_header() -> None:
    adjust = points_pb.AdjustPointsRequest(member="members/m-1", reason="goodwill: late delivery")
    assert audit.reason_of(adjust, [("x-loyalty-reason", "ignored")]) == "goodwill: late delivery"
    text = "合并重复会员"
    assert audit.reason_of(None, [("x-loyalty-reason-bin", text.encode())]) == text
    assert audit.reason_of(None, [("x-loyalty-reason", "by header")]) == "by header"
    assert audit.target_of(adjust) == "m-1"


def test_a_list_of_one_member_targets_that_member() -> None:
    one = benefits_pb.IssueCouponsRequest(template="welcome", members=["members/m-3"])
    assert audit.target_of(one) == "m-3"
    # Many members are no one member: the call is found by its method, not a target.
    many = benefits_pb.IssueCouponsRequest(template="welcome", members=["members/a", "members/b"])
    assert audit.target_of(many) == ""


def test_a_merge_and_an_unmerge_target_the_survivor() -> None:
    merge = identity_pb.MergeMembersRequest(survivor="members/s-1", absorbed="members/a-1")
    assert audit.target_of(merge) == "s-1"
    unmerge = identity_pb.UnmergeMembersRequest(survivor="members/s-1", restored="members/a-1")
    assert audit.target_of(unmerge) == "s-1"


def isolated(test: Callable[[], None]) -> Callable[[], None]:
    """Run the test in a context of its own: the caller and the draft it sets must not leak
    into the tests (and services) that run after it."""

    @functools.wraps(test)
    def run() -> None:
        contextvars.copy_context().run(test)

    return run


@isolated
def test_an_entry_names_the_caller_and_its_operator() -> None:
    set_current_caller(
        Caller(unit="mall", client_id="desk", scopes=frozenset({"points:adjust"}), operator="op-7")
    )
    request = points_pb.AdjustPointsRequest(
        member="members/m-2", request_id="r-2", unit="mall", reason="fix"
    )
    draft = audit.begin("points", "AdjustPoints", request, (), audited=True)
    assert draft is not None
    audit.note(before={"balance": 10}, after={"balance": 60})
    message = audit.entry(draft, "OK")
    assert isinstance(message, AuditEntryRecorded)
    assert (message.unit, message.client_id, message.operator_id) == ("mall", "desk", "op-7")
    assert (message.method, message.target, message.reason) == ("AdjustPoints", "m-2", "fix")
    assert message.request_id == "r-2"
    assert json.loads(message.before_json) == {"balance": 10}
    assert json.loads(message.after_json) == {"balance": 60}
    assert audit.begin("points", "GetBalance", request, (), audited=False) is None
    assert audit.pending() is None


@isolated
def test_personal_data_is_masked_in_every_part_of_an_entry() -> None:
    values = [f"{name}-{uuid.uuid4().hex}" for name in ("phone", "mail", "given", "street")]
    phone, mail, given, street = values
    request = identity_pb.RegisterMemberRequest(
        unit="mall",
        profile=member_pb2.Profile(full_name=given, region=street),
        identities=[
            member_pb2.Identity(type="phone", value=phone),
            member_pb2.Identity(value=mail),
        ],
    )
    as_json = json.dumps(audit.redact(request))
    assert "phone" in as_json  # the identity's type stays
    for value in values:
        assert value not in as_json
    audit.begin("identity", "UpdateProfile", request, (), audited=True)
    audit.note(
        before={"email": mail, "display_name": given, "home_address": street},
        after={"phone_number": phone, "identity": {"type": "card", "value": phone}},
    )
    draft = audit.current()
    assert draft is not None
    stored = audit.entry(draft, "OK").SerializeToString()
    for value in values:
        assert value.encode() not in stored


def test_a_request_json_cannot_render_is_recorded_by_its_type() -> None:
    # A hostile client's timestamp out of range: the draft (opened before the call is
    # validated) must not fail, or the caller would get UNKNOWN instead of INVALID_ARGUMENT.
    from loyalty.benefits.v1 import benefits_service_pb2 as benefits_pb

    request = benefits_pb.UpdateCatalogueRequest()
    request.catalogue.create_time.seconds = -(2**63)
    request.catalogue.create_time.nanos = -1
    assert audit.redact(request) == {"unreadable": "loyalty.benefits.v1.UpdateCatalogueRequest"}


@isolated
def test_a_replayed_call_leaves_no_draft_to_write() -> None:
    request = points_pb.AdjustPointsRequest(member="members/m-3", request_id="r-3", unit="mall")
    draft = audit.begin("points", "AdjustPoints", request, (), audited=True)
    assert audit.pending() is draft
    audit.replayed()
    assert audit.pending() is None
