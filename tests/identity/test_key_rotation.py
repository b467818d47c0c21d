"""`loyalty-identity rotate-keys`: every member's data key (and every member import's, which
seals a file kept after its import) re-wrapped with the new master key, after which the old
master key can be removed and every member and kept file still opens."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from loyalty.identity.v1 import identity_service_pb2 as pb
from loyalty_devstack.testing import ServiceRunner
from loyalty_identity.adapters.crypto import new_key_text
from loyalty_identity.app import SPEC
from loyalty_kit.caller import PERSONAL_DATA_READ, Caller
from loyalty_kit.settings import Settings

from tests.identity.conftest import IdentityClient
from tests.identity.import_files import imported, importer, mall_file, mall_spec
from tests.identity.test_registration import phone, register

pytestmark = pytest.mark.asyncio(loop_scope="session")

DESK = Caller(
    unit="mall", client_id="desk", scopes=frozenset({PERSONAL_DATA_READ, "members:register"})
)


async def test_rotating_the_master_key_without_losing_anyone(
    make_settings: Callable[..., Settings], run_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(database_prefix=f"{run_id}_rot_")
    old, index = new_key_text(), new_key_text()
    monkeypatch.setenv("LOYALTY_IDENTITY_KEYS", f"k1:{old}")
    monkeypatch.setenv("LOYALTY_IDENTITY_BLIND_INDEX_KEY", index)

    async def members_readable(numbers: list[str], kept: list[str]) -> list[str]:
        """The members' phones, and the first bytes of a member import's file kept."""
        runner = ServiceRunner(settings)
        service = await runner.start(SPEC)
        try:
            async with grpc.aio.insecure_channel(service.target) as channel:
                client = IdentityClient(service, channel).as_(DESK)
                if not numbers:
                    for _ in range(3):
                        numbers.append((await client.RegisterMember(register(phone()))).member.name)
                    made = await imported(
                        channel, importer("mall"), mall_spec(keep_file=True), mall_file([])
                    )
                    kept.append(made.name.removeprefix("memberImports/"))
                async with service.root.uow(read_only=True) as uow:
                    part = await uow.imports.part(kept[0], 0)
                return [
                    *[
                        (await client.GetMember(pb.GetMemberRequest(name=n)))
                        .member.identities[0]
                        .value
                        for n in numbers
                    ],
                    (part or b"")[:7].decode(),
                ]
        finally:
            await runner.stop_all()

    names: list[str] = []
    kept: list[str] = []
    before = await members_readable(names, kept)
    assert before[-1] == "card_no"

    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
    env.update(
        LOYALTY_DATABASE_URL=settings.database_url,
        LOYALTY_DATABASE_PREFIX=settings.database_prefix,
        LOYALTY_IDENTITY_KEYS=f"k2:{new_key_text()},k1:{old}",
        LOYALTY_IDENTITY_BLIND_INDEX_KEY=index,
    )
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "loyalty-identity"),
        "rotate-keys",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    assert "re-wrapped 3 data keys" in out.decode()
    assert "re-wrapped 1 data keys of member imports" in out.decode()

    monkeypatch.setenv("LOYALTY_IDENTITY_KEYS", env["LOYALTY_IDENTITY_KEYS"].split(",")[0])
    assert await members_readable(names, kept) == before
