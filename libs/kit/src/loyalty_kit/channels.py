"""Client channels to other services: a deadline on every call and retries on UNAVAILABLE.

The deadline is what remains of the inbound call's (see `deadlines`), capped; calls made outside
any request (jobs, consumers) get the default. The request id of the work making the call goes
with it (`x-request-id`, `correlation`), unless the call names one itself. Retries follow
gRPC's service-config retry policy, which only retries when the server has not seen the
request or said UNAVAILABLE, so mutating calls stay safe (they are idempotent by request_id
anyway).

Load is spread per call, not per connection: the channel resolves its target to every address
(a headless Kubernetes Service's DNS name gives one per ready pod; write it `dns:///points:50052`
to say so) and `round_robin` sends each call to the next one. With a plain ClusterIP Service the
name is one address and round_robin behaves as pick_first. New replicas are found when the name
is resolved again, which gRPC does when a connection closes: servers close theirs after
`LOYALTY_GRPC_MAX_CONNECTION_AGE_SECONDS` (loyalty_kit.server), so callers pick up a scale-up
within that time. `LOYALTY_GRPC_LOAD_BALANCING=pick_first` restores one connection per peer.

Messages are bounded both ways (`LOYALTY_GRPC_MAX_MESSAGE_BYTES`, 4 MiB by default, the same
bound the servers keep): a larger one fails with gRPC's own RESOURCE_EXHAUSTED, which is never
retried.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

import grpc

from loyalty_kit.correlation import REQUEST_ID_METADATA, current_request_id
from loyalty_kit.deadlines import outbound_timeout
from loyalty_kit.settings import MAX_MESSAGE_BYTES, Settings

LoadBalancing = Literal["round_robin", "pick_first"]

_RETRY_POLICY: dict[str, Any] = {
    "methodConfig": [
        {
            "name": [{}],
            "retryPolicy": {
                "maxAttempts": 4,
                "initialBackoff": "0.05s",
                "maxBackoff": "1s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}


def service_config(load_balancing: LoadBalancing = "round_robin") -> str:
    """The channel's service config: the load-balancing policy and the retry policy."""
    return json.dumps({"loadBalancingConfig": [{load_balancing: {}}], **_RETRY_POLICY})


class _OutboundInterceptor(
    grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor
):
    def __init__(self, default: float, cap: float) -> None:
        self.default = default
        self.cap = cap

    def _outbound(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        timeout = details.timeout
        budget = outbound_timeout(self.default, self.cap)
        timeout = budget if timeout is None else min(timeout, budget)
        metadata = details.metadata
        request_id = current_request_id()
        if request_id and not any(key == REQUEST_ID_METADATA for key, _ in metadata or ()):
            metadata = grpc.aio.Metadata(*(metadata or ()), (REQUEST_ID_METADATA, request_id))
        return grpc.aio.ClientCallDetails(
            details.method, timeout, metadata, details.credentials, details.wait_for_ready
        )

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self._outbound(details), request)

    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self._outbound(details), request)


def channel(
    target: str,
    *,
    default_deadline: float = 5.0,
    max_deadline: float = 30.0,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    load_balancing: LoadBalancing = "round_robin",
) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.service_config", service_config(load_balancing)),
            ("grpc.enable_retries", 1),
            ("grpc.keepalive_time_ms", 30_000),
            # A service that was down is found again within seconds of answering (the default
            # backoff grows to two minutes, keeping calls failing long after it is back).
            ("grpc.initial_reconnect_backoff_ms", 500),
            ("grpc.max_reconnect_backoff_ms", 2_000),
            # Room for a rich google.rpc.Status in the trailers (the default soft cap is 8 KiB).
            ("grpc.max_metadata_size", 64 * 1024),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ],
        interceptors=[_OutboundInterceptor(default_deadline, max_deadline)],
    )


def channel_to(settings: Settings, service: str) -> grpc.aio.Channel:
    """A channel to another service of the suite, with the deadlines and message bounds of
    `settings`."""
    return channel(
        settings.target_of(service),
        default_deadline=settings.default_deadline_seconds,
        max_deadline=settings.max_deadline_seconds,
        max_message_bytes=settings.grpc_max_message_bytes,
        load_balancing=settings.grpc_load_balancing,
    )
