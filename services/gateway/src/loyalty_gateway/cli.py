"""`loyalty-gateway clients ...`: create, list, rotate and revoke business-unit API clients.

    loyalty-gateway clients create --unit hotel --scopes earn redeem [--rate 50] [--description ...]
    loyalty-gateway clients list
    loyalty-gateway clients rotate <client_id>
    loyalty-gateway clients revoke <client_id>

A secret is printed once, when made; only its hash is stored.
"""

from __future__ import annotations

import argparse
import json
import sys

from loyalty_kit.errors import DomainError
from loyalty_kit.server import ServiceContext

from loyalty_gateway.clients import DEFAULT_RATE, SCOPES, ClientStore


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loyalty-gateway clients")
    actions = parser.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="a new client; prints its id and secret")
    create.add_argument("--unit", required=True, help="its business unit, e.g. hotel")
    create.add_argument("--scopes", nargs="+", required=True, choices=sorted(SCOPES))
    create.add_argument("--rate", type=int, default=DEFAULT_RATE, help="requests per second")
    create.add_argument("--description", default="")
    actions.add_parser("list", help="every client (never secrets)")
    for name, text in (("rotate", "a new secret"), ("revoke", "no new tokens")):
        action = actions.add_parser(name, help=text)
        action.add_argument("client_id")
    return parser


async def clients(context: ServiceContext) -> None:
    args = _parser().parse_args(context.extras.get("args", []))
    try:
        async with context.uow() as uow:
            store = ClientStore(uow.session)
            if args.action == "create":
                client, secret = await store.create(
                    args.unit, args.scopes, args.description, args.rate
                )
                out = {"client_id": client.client_id, "client_secret": secret, "unit": client.unit}
                out["scopes"] = " ".join(client.scopes)
            elif args.action == "rotate":
                out = {
                    "client_id": args.client_id,
                    "client_secret": await store.rotate(args.client_id),
                }
            elif args.action == "revoke":
                await store.revoke(args.client_id)
                out = {"client_id": args.client_id, "revoked": "true"}
            else:
                for c in await store.list():
                    state = "revoked" if c.revoked_at else "active"
                    scopes = " ".join(c.scopes)
                    print(f"{c.client_id}\t{c.unit}\t{scopes}\t{c.rate_per_second}/s\t{state}")
                return
            await uow.commit()
    except DomainError as error:
        print(f"error: {error.message}", file=sys.stderr)
        raise SystemExit(2) from None
    print(json.dumps(out))
