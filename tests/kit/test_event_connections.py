"""LOYALTY_NATS_URL names one server or a cluster's nodes, comma-separated: the connection takes
any node that answers and keeps reconnecting."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
from loyalty_devstack.embedded import free_port
from loyalty_kit import events
from loyalty_kit.settings import Settings

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_one_url_or_several_comma_separated() -> None:
    assert events.server_urls("nats://127.0.0.1:4222") == ["nats://127.0.0.1:4222"]
    assert events.server_urls(" nats://a:4222, nats://b:4222,nats://c:4222 ,") == [
        "nats://a:4222",
        "nats://b:4222",
        "nats://c:4222",
    ]


async def test_a_node_that_does_not_answer_is_passed_over(settings: Settings) -> None:
    down = f"nats://127.0.0.1:{free_port()}"
    client = await events.connect(f"{down},{settings.nats_url}", "kit-tests-cluster")
    try:
        assert client.is_connected
        assert client.connected_url is not None
        assert client.connected_url.port == urlparse(settings.nats_url).port
        await client.jetstream().account_info()
    finally:
        await client.close()
