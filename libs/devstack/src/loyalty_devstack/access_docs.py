"""docs/access.md, rendered from the access rules the services declare (their ServiceSpec's
`access`): `make access-docs` rewrites it, and a test fails when the committed file differs.

Also what tests use to walk every RPC of every service with its rule."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from google.protobuf import descriptor_pool
from google.protobuf.descriptor import MethodDescriptor
from loyalty_kit.access import render_markdown
from loyalty_kit.server import ServiceSpec

DOCUMENT = Path("docs") / "access.md"
COMMAND = "make access-docs"


def specs() -> list[ServiceSpec]:
    """The seven services, in the order of the platform's README."""
    from loyalty_benefits.app import SPEC as BENEFITS
    from loyalty_engagement.app import SPEC as ENGAGEMENT
    from loyalty_gateway.app import SPEC as GATEWAY
    from loyalty_identity.app import SPEC as IDENTITY
    from loyalty_insights.app import SPEC as INSIGHTS
    from loyalty_points.app import SPEC as POINTS
    from loyalty_tiers.app import SPEC as TIERS

    return [IDENTITY, POINTS, TIERS, BENEFITS, INSIGHTS, ENGAGEMENT, GATEWAY]


def methods_of(spec: ServiceSpec) -> list[MethodDescriptor]:
    """Every RPC method the service serves, in contract order."""
    pool = descriptor_pool.Default()
    return [m for name in spec.service_names for m in pool.FindServiceByName(name).methods]


def render(chosen: Sequence[ServiceSpec] | None = None) -> str:
    chosen = chosen or specs()
    tables = render_markdown(
        (spec.name, [m.name for m in methods_of(spec)], spec.access) for spec in chosen
    )
    return tables + uploads(chosen)


def uploads(chosen: Sequence[ServiceSpec]) -> str:
    """The gateway's upload routes (its HTTP side only) and the rule of the RPC each calls."""
    from loyalty_gateway.adapters.backends import exposed_services
    from loyalty_gateway.http.uploads import uploads_of

    found = uploads_of(s for services in exposed_services().values() for s in services)
    serving = {name: spec for spec in chosen for name in spec.service_names}
    if not found:
        return ""
    out = [
        "",
        "## gateway: uploads",
        "",
        "The client-streaming methods, which no `google.api.http` annotation can express, are",
        "POST routes of the gateway (`http/uploads.py`): it authenticates the caller, holds it to",
        "its rate limit and passes its token on; the service checks the method's rule above.",
        "",
        "| HTTP route | RPC | Scopes | Acts for the unit in |",
        "| --- | --- | --- | --- |",
    ]
    for upload in found:
        spec = serving[upload.service.full_name]
        rule = spec.access[upload.method.name]
        scopes = ", ".join(f"`{s}`" for s in sorted(rule.scopes)) or "any caller"
        unit = f"`{rule.unit_field}`" if rule.unit_field else "-"
        out.append(f"| POST {upload.path} | {spec.name} {upload.method.name} | {scopes} | {unit} |")
    out.append("")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    target = Path(args[0]) if args else DOCUMENT
    target.write_text(render())
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
