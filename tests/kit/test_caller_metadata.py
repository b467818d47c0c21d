"""Caller metadata the contract does not expect: a `-bin` header (bytes) that is not UTF-8 is
ignored unless it is one we read, which is refused as UNAUTHENTICATED, never a
UnicodeDecodeError."""

from __future__ import annotations

import pytest
from loyalty_kit.auth import TokenVerifier
from loyalty_kit.caller import caller_from_metadata
from loyalty_kit.errors import Unauthenticated


def test_a_bin_header_we_do_not_read_is_ignored_one_we_read_is_refused() -> None:
    caller = caller_from_metadata([("x-anything-bin", b"\xff"), ("x-loyalty-unit", "hotel")])
    assert caller.unit == "hotel"
    with pytest.raises(Unauthenticated) as refused:
        caller_from_metadata([("x-loyalty-unit", b"\xff")])
    assert refused.value.reason == "METADATA_INVALID"
    trusting = TokenVerifier({}, trust_headers=True)
    assert trusting.caller_of([("x-anything-bin", b"\xff")]).unit == ""
    with pytest.raises(Unauthenticated):
        trusting.caller_of([("authorization", b"Bearer \xff")])
