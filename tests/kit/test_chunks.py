"""How far a chunked job goes in one call (`Chunks`, read from a Run* request by `chunks_of`)
and the page token a job carries on from (`read_token`)."""

from __future__ import annotations

import pytest
from loyalty.points.v1 import points_service_pb2 as points_pb
from loyalty.tiers.v1 import tiers_service_pb2 as tiers_pb
from loyalty_kit.errors import InvalidArgument
from loyalty_kit.jobs import DEFAULT_CHUNK_SIZE, Chunks, chunks_of
from loyalty_kit.pagination import next_token, read_token


def test_without_a_limit_every_chunk_is_whole() -> None:
    assert [Chunks(500).next(done) for done in (0, 500, 10_000)] == [500, 500, 500]


def test_a_limit_cuts_the_last_chunk_to_fit_and_then_stops() -> None:
    chunks = Chunks(size=2, limit=5)
    assert [chunks.next(done) for done in (0, 2, 4, 5, 7)] == [2, 2, 1, 0, 0]


def test_a_request_without_its_fields_set_runs_as_before() -> None:
    assert chunks_of(points_pb.RunExpiryRequest(), "max_members") == Chunks(DEFAULT_CHUNK_SIZE)
    assert chunks_of(
        points_pb.RunExpiryRequest(chunk_size=50, max_members=120), "max_members"
    ) == Chunks(50, 120)
    # Grant expiry has no chunk_size: the default size.
    assert chunks_of(tiers_pb.RunGrantExpiryRequest(max_grants=7), "max_grants") == Chunks(500, 7)


def test_negative_sizes_and_limits_are_refused_naming_each_field() -> None:
    with pytest.raises(InvalidArgument) as refused:
        chunks_of(points_pb.RunExpiryRequest(chunk_size=-1, max_members=-1), "max_members")
    assert [v.field for v in refused.value.field_violations] == ["chunk_size", "max_members"]
    with pytest.raises(InvalidArgument) as refused:
        chunks_of(tiers_pb.RunGrantExpiryRequest(max_grants=-3), "max_grants")
    assert [v.field for v in refused.value.field_violations] == ["max_grants"]


def test_a_token_gives_back_its_position_for_the_same_filters_only() -> None:
    token = next_token("member-7", {"birthday": "2026-09-09"})
    assert read_token(token, {"birthday": "2026-09-09"}) == "member-7"
    assert read_token("", {"birthday": "2026-09-09"}) is None
    for bad, filters in (
        (token, {"birthday": "2026-09-10"}),
        ("not a token", {"birthday": "2026-09-09"}),
        ("W10", {}),  # base64 of a JSON list
        ("x" * 2000, {}),
    ):
        with pytest.raises(InvalidArgument) as refused:
            read_token(bad, filters)
        assert [v.field for v in refused.value.field_violations] == ["page_token"]
