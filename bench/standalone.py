"""What a standalone measurement (`python -m bench.<name>`) ends with: its JSON result, named
and timed, printed and written to `--out` when given."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def emit(bench: str, found: dict[str, Any], out: Path | None) -> None:
    text = json.dumps({"bench": bench, "at": datetime.now(UTC).isoformat(), **found}, indent=2)
    print(text)
    if out:
        out.write_text(text + "\n")
