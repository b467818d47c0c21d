"""`loyalty-gateway operators ...`: the back-office console's operators.

    loyalty-gateway operators create --login li.na --role group_admin
    loyalty-gateway operators create --login hotel-mgr --role unit_manager --unit hotel
    loyalty-gateway operators list
    loyalty-gateway operators disable <login>
    loyalty-gateway operators reset-password <login>

Roles: group_admin, unit_manager (one unit), customer_service, analyst. A password is printed
once, when made (or read from standard input with --password-stdin); only its argon2 hash is
stored. Disabling or a new password ends the operator's open sessions. The command works on the
gateway's database: under `make run`, `. .loyalty/env` first.
"""

from __future__ import annotations

import argparse
import json
import sys

from loyalty_gateway.bootstrap import Gateway
from loyalty_gateway.console.operators import OperatorStore
from loyalty_gateway.console.roles import ROLES, RoleError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loyalty-gateway operators",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="a new operator; prints its password once")
    create.add_argument("--login", required=True, help="an opaque handle, e.g. ops-1")
    create.add_argument("--role", required=True, choices=sorted(ROLES))
    create.add_argument("--unit", default=None, help="the unit of a unit_manager, e.g. hotel")
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password (12+ characters)"
    )
    actions.add_parser("list", help="every operator (never passwords)")
    disable = actions.add_parser("disable", help="no more sign-ins; sessions end")
    disable.add_argument("login")
    reset = actions.add_parser("reset-password", help="a new password; prints it once")
    reset.add_argument("login")
    reset.add_argument("--password-stdin", action="store_true")
    return parser


class OperatorsCommand:
    """Create, list, disable operators and reset their passwords."""

    parser = staticmethod(_parser)

    async def __call__(self, gateway: Gateway) -> None:
        args = _parser().parse_args(gateway.context.args)
        given = (
            sys.stdin.readline().rstrip("\n") if getattr(args, "password_stdin", False) else None
        )
        try:
            async with gateway.uow() as uow:
                store = OperatorStore(uow.session)
                if args.action == "create":
                    made, password = await store.create(args.login, args.role, args.unit, given)
                    out = {
                        "operator_id": made.operator_id,
                        "login": made.login,
                        "role": made.role,
                        "unit": made.unit,
                        **({} if given else {"password": password}),
                    }
                elif args.action == "disable":
                    gone = await store.disable(args.login)
                    out = {"login": gone.login, "disabled": "true"}
                elif args.action == "reset-password":
                    password = await store.reset_password(args.login, given)
                    out = {"login": args.login, **({} if given else {"password": password})}
                else:
                    for o in await store.list():
                        state = "disabled" if o.disabled else "active"
                        print(f"{o.login}\t{o.role}\t{o.unit}\t{state}\t{o.operator_id}")
                    return
                await uow.commit()
        except (ValueError, LookupError, RoleError) as error:
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
        print(json.dumps(out))


operators = OperatorsCommand()
