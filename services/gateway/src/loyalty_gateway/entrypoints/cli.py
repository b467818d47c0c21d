"""`loyalty-gateway clients ...`: create, list, rotate and revoke business-unit API clients.

    loyalty-gateway clients create --unit hotel --scopes earn,redeem [--rate 50] [--description ...]
    loyalty-gateway clients list
    loyalty-gateway clients rotate <client_id>
    loyalty-gateway clients revoke <client_id>

A secret is printed once, when made; only its hash is stored. The command works on the
gateway's database: under `make run`, `. .loyalty/env` first.
"""

from __future__ import annotations

import argparse
import json
import sys

from loyalty_kit.errors import DomainError

from loyalty_gateway.adapters.clients import DEFAULT_RATE, SCOPES, ClientStore
from loyalty_gateway.bootstrap import Gateway


def _scopes(text: str) -> list[str]:
    """`earn,redeem` (or `earn redeem` as separate words): known scopes only."""
    scopes = [scope for scope in text.replace(",", " ").split() if scope]
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise argparse.ArgumentTypeError(
            f"unknown scope {', '.join(unknown) or '(none)'}; one of: {', '.join(sorted(SCOPES))}"
        )
    return scopes


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loyalty-gateway clients",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="a new client; prints its id and secret")
    create.add_argument("--unit", required=True, help="its business unit, e.g. hotel")
    create.add_argument(
        "--scopes",
        nargs="+",
        required=True,
        type=_scopes,
        help=f"comma-separated, of: {', '.join(sorted(SCOPES))}",
    )
    create.add_argument("--rate", type=int, default=DEFAULT_RATE, help="requests per second")
    create.add_argument("--description", default="")
    actions.add_parser("list", help="every client (never secrets)")
    for name, text in (("rotate", "a new secret"), ("revoke", "no new tokens")):
        action = actions.add_parser(name, help=text)
        action.add_argument("client_id")
    return parser


class ClientsCommand:
    """Create, list, rotate and revoke business-unit API clients."""

    # The kit's command line asks for it first, so `--help` and usage errors need no database.
    parser = staticmethod(_parser)

    async def __call__(self, gateway: Gateway) -> None:
        args = _parser().parse_args(gateway.context.args)
        try:
            async with gateway.uow() as uow:
                store = ClientStore(uow.session)
                if args.action == "create":
                    wanted = [scope for group in args.scopes for scope in group]
                    client, secret = await store.create(
                        args.unit, wanted, args.description, args.rate
                    )
                    out = {
                        "client_id": client.client_id,
                        "client_secret": secret,
                        "unit": client.unit,
                        "scopes": " ".join(client.scopes),
                    }
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
                        granted = " ".join(c.scopes)
                        print(f"{c.client_id}\t{c.unit}\t{granted}\t{c.rate_per_second}/s\t{state}")
                    return
                await uow.commit()
        except DomainError as error:
            print(f"error: {error.message}", file=sys.stderr)
            raise SystemExit(2) from None
        print(json.dumps(out))


clients = ClientsCommand()
