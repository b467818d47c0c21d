"""Referral codes as members type them, referred members as their referrer sees them, and
the member a merged member's code speaks for."""

from __future__ import annotations

import uuid

import pytest
from loyalty_kit.errors import InvalidArgument
from loyalty_kit.kernel.members import MemberState
from loyalty_points.domain.account import Account
from loyalty_points.domain.referral_codes import ALPHABET, code_of, masked_member, new_code
from loyalty_points.service_layer.accounts import surviving_member

from tests.points.unit.fakes import FakeDirectory, FakeLedger


def test_codes_are_read_as_typed_and_only_of_the_alphabet() -> None:
    assert code_of(" k7qm-3xhd ") == "K7QM3XHD"
    for misread in ("K7QM3XH0", "K7QM3XHI", "K7QM3XH", "K7QM3XHDD"):
        with pytest.raises(InvalidArgument):
            code_of(misread)
    assert all(set(new_code()) <= set(ALPHABET) for _ in range(100))


def test_a_referred_member_shows_only_the_end_of_its_id() -> None:
    assert masked_member("0b8a6f1e-1c2d-4e5f-8a9b-0c1d2e3f4a5b") == "*" * 32 + "4a5b"


async def test_a_code_of_a_merged_member_speaks_for_the_last_survivor() -> None:
    ledger, directory = FakeLedger(), FakeDirectory()
    first, second, last, lone = (str(uuid.uuid4()) for _ in range(4))
    ledger.accounts[first] = Account(first, MemberState.MERGED, second)
    directory.register(second, "merged", last)  # points never saw it: identity tells
    ledger.accounts[last] = Account(last, MemberState.ACTIVE, "")

    assert await surviving_member(ledger, first, directory) == last
    assert await surviving_member(ledger, last, directory) == last
    assert await surviving_member(ledger, lone, directory) == lone  # nobody knows it
