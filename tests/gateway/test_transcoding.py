"""Path templates of google/api/http.proto, pure."""

from __future__ import annotations

import pytest
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty_gateway.http.transcoding import PathTemplate, TemplateError, set_field


def test_variables_with_patterns_match_whole_resource_names() -> None:
    template = PathTemplate.parse("/v1/{name=members/*/tierGrants/*}:revoke")
    assert template.match("/v1/members/m1/tierGrants/g%2D1:revoke") == {
        "name": "members/m1/tierGrants/g-1"
    }
    assert template.match("/v1/members/m1/tierGrants/g1") is None  # the verb is part of it
    assert template.match("/v1/members/m1:revoke") is None
    assert template.openapi_path() == (
        "/v1/members/{memberId}/tierGrants/{tierGrantId}:revoke",
        [("memberId", "name", "*"), ("tierGrantId", "name", "*")],
    )


def test_plain_variables_and_literals() -> None:
    template = PathTemplate.parse("/v1/units/{unit}/settlement")
    assert template.match("/v1/units/hotel/settlement") == {"unit": "hotel"}
    assert template.match("/v1/units/ho/tel/settlement") is None
    assert PathTemplate.parse("/v1/members:register").match("/v1/members:register") == {}


@pytest.mark.parametrize("text", ["v1/x", "/v1/{Bad}", "/v1//x", "/v1/{a=b/{c}}"])
def test_templates_outside_the_grammar_are_refused(text: str) -> None:
    with pytest.raises(TemplateError):
        PathTemplate.parse(text)


def test_fields_are_set_from_text_by_name_or_json_name() -> None:
    request = points_pb.ListPostingsRequest()
    set_field(request, "page_size", "20")
    set_field(request, "pageToken", "abc")
    assert (request.page_size, request.page_token) == (20, "abc")
    with pytest.raises(ValueError):
        set_field(request, "page_size", "lots")
    with pytest.raises(ValueError):
        set_field(request, "colour", "red")
