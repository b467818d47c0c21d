"""The member code's use cases on the fake unit of work: a secret made on first use and kept,
a scan resolved once in its window, a rotation retiring earlier codes, erasure and merges
deleting the secret, old uses forgotten."""

from __future__ import annotations

import pytest
from loyalty_identity.domain.errors import MemberErased
from loyalty_identity.domain.member_code import (
    MemberCodeExpired,
    MemberCodeMalformed,
    MemberCodeUnknown,
    MemberCodeUsed,
)
from loyalty_identity.service_layer import handlers
from loyalty_identity.service_layer.member_codes import (
    forget_old_uses,
    member_code,
    resolve_member_code,
    rotate_member_code,
)

from tests.identity.unit.conftest import Identity


async def test_the_secret_is_made_on_first_use_and_kept(identity: Identity) -> None:
    member = await identity.register()
    first = await identity(member_code, member.member_id, identity.now)
    later = await identity(member_code, member.member_id, identity.later(minutes=5))
    assert first.code[2:12] == later.code[2:12]
    assert len(identity.store.tables.member_codes) == 1


async def test_a_code_resolves_once_within_its_window(identity: Identity) -> None:
    member = await identity.register()
    code = (await identity(member_code, member.member_id, identity.now)).code
    found = await identity(resolve_member_code, code, identity.later(seconds=20))
    assert found.member_id == member.member_id
    with pytest.raises(MemberCodeUsed):
        await identity(resolve_member_code, code, identity.now)
    late = (await identity(member_code, member.member_id, identity.now)).code
    with pytest.raises(MemberCodeExpired):
        await identity(resolve_member_code, late, identity.later(seconds=90))
    with pytest.raises(MemberCodeMalformed):
        await identity(resolve_member_code, "66" + "1" * 15, identity.now)


async def test_a_rotation_retires_the_codes_shown_before(identity: Identity) -> None:
    member = await identity.register()
    before = (await identity(member_code, member.member_id, identity.now)).code
    after = await identity(rotate_member_code, member.member_id, "signed out", identity.now)
    assert after.code[2:12] != before[2:12]
    with pytest.raises(MemberCodeUnknown):
        await identity(resolve_member_code, before, identity.now)
    assert (await identity(resolve_member_code, after.code, identity.now)).member_id == (
        member.member_id
    )


async def test_erasure_and_merges_delete_the_secret(identity: Identity) -> None:
    erased, absorbed, survivor = [await identity.register() for _ in range(3)]
    erased_code = (await identity(member_code, erased.member_id, identity.now)).code
    absorbed_code = (await identity(member_code, absorbed.member_id, identity.now)).code
    await identity(handlers.erase, erased.member_id, identity.now)
    await identity(handlers.merge, survivor.member_id, absorbed.member_id, identity.now)
    assert identity.store.tables.member_codes == {}
    for code in (erased_code, absorbed_code):
        with pytest.raises(MemberCodeUnknown):
            await identity(resolve_member_code, code, identity.now)
    with pytest.raises(MemberErased):
        await identity(member_code, erased.member_id, identity.now)


async def test_uses_are_forgotten_once_no_till_accepts_the_code(identity: Identity) -> None:
    member = await identity.register()
    code = (await identity(member_code, member.member_id, identity.now)).code
    await identity(resolve_member_code, code, identity.now)
    assert await identity(forget_old_uses, identity.now) == 0
    assert await identity(forget_old_uses, identity.later(seconds=120)) == 1
