"""The gateway's own gRPC service (`loyalty.gateway.v1.GatewayService`), whose methods the
flows answer: its methods by descriptor, and the idempotency scope of each."""

from __future__ import annotations

from google.protobuf.descriptor import MethodDescriptor
from loyalty.gateway.v1 import gateway_service_pb2 as pb
from loyalty_kit.idempotency import request_scope

GATEWAY = pb.DESCRIPTOR.services_by_name["GatewayService"]


def method(name: str) -> MethodDescriptor:
    """One of the gateway's methods (a name it does not have fails at import)."""
    return GATEWAY.methods_by_name[name]


def scope_of(rpc: MethodDescriptor) -> str:
    """The scope of a method's request ids (its kept answers, its checkout log rows)."""
    return request_scope(rpc.containing_service.full_name, rpc.name)
