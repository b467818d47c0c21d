"""What a check found, and how it is shown: a line per finding and a summary table, or JSON.

Only ids and numbers are ever put into a finding (member ids, posting ids, units, order ids,
counts, points): nothing personal, so the output can be shared with whoever fixes the data.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Finding:
    """One thing that is wrong. `member_id` is empty when the finding is not a member's (an
    outbox row, a unit's settlement); `detail` names what else identifies it."""

    rule: str
    member_id: str
    expected: str
    found: str
    detail: str = ""


@dataclass
class RuleResult:
    """A rule's findings: the first `limit` of them, and how many there were in all."""

    rule: str
    description: str
    findings: list[Finding] = field(default_factory=list)
    total: int = 0
    seconds: float = 0.0
    skipped: str = ""  # why the rule did not run (e.g. --no-rpc)

    @property
    def more(self) -> int:
        return max(self.total - len(self.findings), 0)

    def add(self, found: list[Finding], total: int, limit: int) -> None:
        """Findings of one query (already limited), `total` of them in all."""
        room = max(limit - len(self.findings), 0)
        self.findings.extend(found[:room])
        self.total += total


@dataclass
class Report:
    results: list[RuleResult]
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return all(r.total == 0 for r in self.results)

    def as_json(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "seconds": round(self.seconds, 3),
            "rules": [
                {
                    "rule": r.rule,
                    "description": r.description,
                    "findings": r.total,
                    "shown": len(r.findings),
                    "more": r.more,
                    "seconds": round(r.seconds, 3),
                    "skipped": r.skipped or None,
                }
                for r in self.results
            ],
            "findings": [asdict(f) for r in self.results for f in r.findings],
        }

    def text(self) -> str:
        lines: list[str] = []
        for result in self.results:
            for f in result.findings:
                who = f"member {f.member_id}" if f.member_id else "-"
                line = f"{f.rule}  {who}  expected {f.expected}  found {f.found}"
                lines.append(f"{line}  ({f.detail})" if f.detail else line)
            if result.more:
                lines.append(f"{result.rule}  ... and {result.more} more")
        if lines:
            lines.append("")
        width = max(len(r.rule) for r in self.results) if self.results else 4
        lines.append(f"{'rule':<{width}}  {'findings':>9}  {'seconds':>8}")
        for r in self.results:
            count = "skipped" if r.skipped else f"{r.total:,}"
            lines.append(f"{r.rule:<{width}}  {count:>9}  {r.seconds:>8.2f}")
        verdict = "clean" if self.clean else f"{sum(r.total for r in self.results):,} findings"
        lines.append(f"{'total':<{width}}  {verdict:>9}  {self.seconds:>8.2f}")
        return "\n".join(lines)

    def dumps(self) -> str:
        return json.dumps(self.as_json(), indent=2)
