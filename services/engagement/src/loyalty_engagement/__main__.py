"""`loyalty-engagement [serve|migrate]`: run the engagement service, or migrate its database."""

from __future__ import annotations

import sys

from loyalty_kit.server import main as run_service

from loyalty_engagement.app import SPEC


def main() -> int:
    return run_service(SPEC, sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
