"""Personal data in clear, found in what a run leaves behind: logs, traces, events.

Three patterns find personal data whoever it belongs to: Chinese mobile numbers (11 digits from
13x to 19x, with or without +86), e-mail addresses, and 18-digit resident identity numbers
(their check digit verified, so other long numbers are not taken for one). Known values (the
demo members' names and identities, or whatever a test registered) are found as they are
written. Digits inside ids, UUIDs and hex strings are not numbers: a match must stand alone (no
ASCII letter or digit touching it). Percent-encoded text (a URL in a log line) is read decoded.

A finding never repeats the value in clear: it says where, what kind, and a masked form.
`loyalty-dev scan-pii <files...>` runs it on files (a `make reliability` run's logs).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

_ALONE_BEFORE, _ALONE_AFTER = r"(?<![A-Za-z0-9])", r"(?![A-Za-z0-9])"
_DATE = r"(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
PATTERNS: dict[str, re.Pattern[str]] = {
    "phone": re.compile(rf"{_ALONE_BEFORE}(?:\+?86[ -]?)?1[3-9]\d{{9}}{_ALONE_AFTER}"),
    "email": re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
    "id_number": re.compile(rf"{_ALONE_BEFORE}[1-9]\d{{5}}{_DATE}\d{{3}}[0-9Xx]{_ALONE_AFTER}"),
}
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_DIGITS = "10X98765432"


def is_resident_id(text: str) -> bool:
    """Whether 18 characters are a resident identity number (GB 11643: ISO 7064 MOD 11-2)."""
    if len(text) != 18 or not text[:17].isdigit():
        return False
    total = sum(int(digit) * weight for digit, weight in zip(text[:17], _WEIGHTS, strict=True))
    return _CHECK_DIGITS[total % 11] == text[17].upper()


def mask(value: str) -> str:
    """Enough to recognise a finding by, not to read the value: '138******00', '王*'."""
    keep = 3 if len(value) > 8 else 1
    tail = 2 if len(value) > 8 else 0
    return value[:keep] + "*" * (len(value) - keep - tail) + value[len(value) - tail :]


@dataclass(frozen=True)
class Finding:
    source: str  # a file, "stderr", "span ...", "event LOYALTY_IDENTITY#12"
    line: int
    kind: str  # phone, email, id_number, known
    masked: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.kind} {self.masked}"


class PersonalDataScanner:
    """Finds personal data in text: the patterns, and `known` values as they are written
    (shorter than two characters, a value is ignored: it would be found everywhere)."""

    def __init__(self, known: Iterable[str] = ()) -> None:
        values = sorted({v for v in known if len(v.strip()) >= 2}, key=len, reverse=True)
        alternatives = "|".join(map(re.escape, values))
        self.known = (
            re.compile(f"{_ALONE_BEFORE}(?:{alternatives}){_ALONE_AFTER}") if values else None
        )

    def scan(self, text: str, source: str) -> list[Finding]:
        return [
            finding
            for number, line in enumerate(text.splitlines(), 1)
            for finding in self._scan_line(line, source, number)
        ]

    def scan_bytes(self, data: bytes, source: str) -> list[Finding]:
        """Bytes as they are stored or sent (a protobuf event, a header): UTF-8 where it is."""
        return self.scan(data.decode("utf-8", errors="replace"), source)

    def scan_file(self, path: Path) -> list[Finding]:
        """A file line by line: any size, in bounded memory."""
        found: list[Finding] = []
        with path.open("r", encoding="utf-8", errors="replace") as lines:
            for number, line in enumerate(lines, 1):
                found.extend(self._scan_line(line, str(path), number))
        return found

    def _scan_line(self, line: str, source: str, number: int) -> Iterator[Finding]:
        if "%" in line:  # a URL's query: 'value=wei%40example.cn'
            line = unquote(line)
        seen: set[tuple[int, int]] = set()  # a known phone is one finding, not two
        for kind, pattern in PATTERNS.items():
            for match in pattern.finditer(line):
                if kind == "id_number" and not is_resident_id(match.group()):
                    continue
                seen.add(match.span())
                yield Finding(source, number, kind, mask(match.group()))
        if self.known is not None:
            for match in self.known.finditer(line):
                if match.span() not in seen:
                    yield Finding(source, number, "known", mask(match.group()))


def demo_values() -> list[str]:
    """The demo members' names and identity values (`loyalty-dev demo`)."""
    from loyalty_devstack.demo import MEMBERS

    values = [member.full_name for member in MEMBERS]
    values += [value for member in MEMBERS for _type, value in member.identities]
    return values
