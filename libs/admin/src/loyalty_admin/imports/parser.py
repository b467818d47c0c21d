"""`loyalty-admin imports ...`: bringing units' members (and past orders) in by file.

    imports create --unit mall --file mall.csv --mapping mall.yaml [--no-wait] ...
    imports get|follow|cancel NAME
    imports list [--unit mall]
    imports rows NAME [--outcome rejected] [--csv]
    imports candidates [--import NAME] [--state open]
    imports resolve CANDIDATE --survivor MEMBER [--merge] [--reason TEXT]
    imports dismiss CANDIDATE [--reason TEXT]

`create` uploads the file to the identity service and follows the import with a progress bar
until it ends. Exit status: 0 when the import succeeded, 1 when it failed (or a call was
refused), 3 when it was cancelled, 130 when Ctrl-C stopped the following (the import goes on).
A NAME is `memberImports/ID` (or a bare ID) or `orderImports/ID`; `--of orders` creates and
lists imports of past orders. docs/member-import.md walks through an import.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

# The kinds by name, for the parser (their contracts are imported when a command runs:
# `--help` stays quick); a test keeps them in step with `kinds.KINDS`.
KIND_KEYS = ["members", "orders"]
CANDIDATE_STATES = ("open", "resolved", "dismissed")


def add_parser(groups: Any) -> None:
    """The `imports` command group, under the command line's groups."""
    imports = groups.add_parser(
        "imports",
        help="bring units' members (or past orders) in by file, and decide merge candidates",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = imports.add_subparsers(dest="action", required=True)

    create = actions.add_parser("create", help="upload a file and follow its import")
    create.add_argument("--file", type=Path, required=True, help="the unit's export")
    create.add_argument(
        "--mapping",
        "--spec",
        dest="spec_file",
        type=Path,
        required=True,
        help="YAML or JSON: the spec's fields as the contract names them, e.g. "
        "`mapping: {legacy_number: 卡号, phone: 手机号}` (docs/member-import.md)",
    )
    create.add_argument("--of", choices=KIND_KEYS, default="members", help="what the file has")
    create.add_argument("--unit", help="the unit whose members these are (over the file's)")
    create.add_argument("--format", help="csv or jsonl (default: by the file's extension)")
    create.add_argument("--encoding", help="utf-8 (default) or gb18030 (CSV only)")
    create.add_argument(
        "--tier-mapping",
        action="append",
        default=[],
        metavar="LEGACY=TIER",
        help="a legacy tier and the ladder's tier it becomes, e.g. 金卡=gold (repeatable)",
    )
    create.add_argument(
        "--tier-ends",
        help="when carried-over tiers end: a date (the end of that day in the programme's time "
        "zone) or an RFC 3339 time (default: the end of next year)",
    )
    create.add_argument("--auto-merge", help="none (default) or phone-and-name")
    create.add_argument("--mode", help="orders: activity-only (default) or replay")
    create.add_argument(
        "--keep-file", action="store_true", help="keep the file after the import ends"
    )
    create.add_argument(
        "--no-wait", action="store_true", help="print the import's name once it is created"
    )

    for action, what in (
        ("get", "an import with its progress"),
        ("follow", "follow a running import until it ends"),
        ("cancel", "stop a running import after the chunk under way"),
    ):
        parser = actions.add_parser(action, help=what)
        parser.add_argument("name", help="memberImports/ID or orderImports/ID")
        if action == "get":
            parser.add_argument("--json", action="store_true", help="the import as JSON")

    listing = actions.add_parser("list", help="imports, newest first")
    listing.add_argument("--of", choices=KIND_KEYS, default="members")
    listing.add_argument("--unit", default="", help="only this unit's")

    rows = actions.add_parser("rows", help="an import's report, row by row (masked)")
    rows.add_argument("name")
    rows.add_argument("--outcome", help="only rows of this outcome, e.g. rejected")
    rows.add_argument("--csv", action="store_true", help="as CSV with a header")

    candidates = actions.add_parser("candidates", help="merge candidates")
    candidates.add_argument("--import", dest="member_import", default="", help="of this import")
    candidates.add_argument("--state", choices=CANDIDATE_STATES, help="only in this state")

    resolve = actions.add_parser("resolve", help="join a candidate's row to one of its members")
    resolve.add_argument("candidate", help="mergeCandidates/ID")
    resolve.add_argument("--survivor", required=True, help="the member the row joins")
    resolve.add_argument(
        "--merge", action="store_true", help="merge the candidate's other members into it"
    )
    resolve.add_argument("--reason", default="", help="kept in the audit log")

    dismiss = actions.add_parser("dismiss", help="leave a candidate's row out")
    dismiss.add_argument("candidate", help="mergeCandidates/ID")
    dismiss.add_argument("--reason", default="", help="kept in the audit log")
