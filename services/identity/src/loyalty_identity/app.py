"""The identity service as the kit runs it: its composition root (bootstrap.py), the servicers
(members, member imports, order imports, member codes, members' own sign-in and erasure
requests), the events it learns from, its background jobs (the import workers, forgetting used
member codes, the erasure sweep) and its operator commands (entrypoints/)."""

from __future__ import annotations

import grpc
from loyalty.identity.v1 import (
    identity_service_pb2_grpc,
    member_code_pb2_grpc,
    member_erasure_pb2_grpc,
    member_import_pb2_grpc,
    member_sign_in_pb2_grpc,
    order_import_pb2_grpc,
)
from loyalty_kit.server import ServiceSpec

from loyalty_identity.bootstrap import Identity, bootstrap
from loyalty_identity.entrypoints import (
    erasure_servicer,
    import_servicer,
    member_code_servicer,
    order_import_servicer,
)
from loyalty_identity.entrypoints.access import ACCESS
from loyalty_identity.entrypoints.commands import rotate_keys
from loyalty_identity.entrypoints.consumers import consumers
from loyalty_identity.entrypoints.jobs import jobs
from loyalty_identity.entrypoints.member_tokens import member_token_check
from loyalty_identity.entrypoints.servicer import SERVICE, IdentityServicer
from loyalty_identity.entrypoints.sign_in_servicer import SERVICE as SIGN_IN
from loyalty_identity.entrypoints.sign_in_servicer import MemberSignInServicer


def add_servicers(server: grpc.aio.Server, app: Identity) -> None:
    identity_service_pb2_grpc.add_IdentityServiceServicer_to_server(IdentityServicer(app), server)
    member_import_pb2_grpc.add_MemberImportServiceServicer_to_server(
        import_servicer.MemberImportServicer(app), server
    )
    order_import_pb2_grpc.add_OrderImportServiceServicer_to_server(
        order_import_servicer.OrderImportServicer(app), server
    )
    member_code_pb2_grpc.add_MemberCodeServiceServicer_to_server(
        member_code_servicer.MemberCodeServicer(app), server
    )
    member_sign_in_pb2_grpc.add_MemberSignInServiceServicer_to_server(
        MemberSignInServicer(app), server
    )
    member_erasure_pb2_grpc.add_MemberErasureServiceServicer_to_server(
        erasure_servicer.MemberErasureServicer(app), server
    )


SPEC = ServiceSpec(
    name="identity",
    access=ACCESS,
    service_names=(
        SERVICE,
        import_servicer.SERVICE,
        order_import_servicer.SERVICE,
        member_code_servicer.SERVICE,
        SIGN_IN,
        erasure_servicer.SERVICE,
    ),
    bootstrap=bootstrap,
    add_servicers=add_servicers,
    migrations="loyalty_identity:migrations",
    consumers=consumers,
    jobs=jobs,
    commands={"rotate-keys": rotate_keys},
    member_tokens=member_token_check,
)
