"""Reading an import file's records, whatever the import brings in (pure: no I/O; streaming):
the framing on bytes, the decoding per record, the CSV header and rows, the JSON Lines objects
(`import_file.py` says how, for the member imports; `order_file.py` reads orders the same way).
A kind's reader checks its spec and makes each row of its values (`_row`, `_json_row`)."""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from operator import itemgetter
from typing import Any, Generic, Protocol, TypeVar

from loyalty_identity.domain import masking
from loyalty_identity.domain.identities import (
    MAX_VALUE_LENGTH,
    ChannelIdentity,
    is_phone_region,
    phone_e164,
)
from loyalty_identity.domain.imports import ImportFileError, ImportFormat, RejectedRow

MAX_RECORD_BYTES = 1 << 20  # a line (a CSV record) longer than this is rejected unread
ENCODINGS = {"utf-8": "UTF-8", "gb18030": "GB18030"}  # codec name -> as told
# Read as one of those: GB18030 decodes GBK and GB2312 files the same (it extends them).
_READ_AS = {"utf-8-sig": "utf-8", "gbk": "gb18030", "gb2312": "gb18030"}
_CONTROL = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff]"
)
_BOMS = (codecs.BOM_UTF8, b"\x84\x31\x95\x33")  # UTF-8, GB18030
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_QUOTE = b'"'
_ABSENT = object()  # the JSON key of a field not mapped: no object has it

LEGACY_NUMBER = re.compile(r"[0-9A-Za-z_-]{1,64}")  # a unit's legacy member number

Record = tuple[bytes | None, int]  # a record's bytes (None: too long, not kept), where it ends
R = TypeVar("R")


class FileSpec(Protocol):
    """What the reading of records needs of a kind's spec."""

    @property
    def format(self) -> ImportFormat: ...

    @property
    def encoding(self) -> str: ...

    @property
    def default_region(self) -> str: ...

    @property
    def mapping(self) -> Any: ...  # a kind's column mapping (its `phone` column read here)


class RecordReader(Generic[R]):
    """Reads one file's records into a kind's rows (`R`) and `RejectedRow`s. `rows` may be
    called once; it raises `ImportFileError` when the file as a whole cannot be read (before
    any row, or at the end for a file with no rows). A kind sets `spec`, `_columns` (the
    mapped columns, in its rows' order) and `_region` before reading."""

    not_json = "not a JSON value"  # the detail of a JSON line that does not parse
    spec: FileSpec
    bytes_read: int  # bytes consumed so far: up to the end of the last row yielded
    _columns: list[str]
    _region: str
    _legacy_type: str  # the identity type of the unit's legacy numbers
    _codec: str = "utf-8"
    _where: list[str]  # how a detail names each field's column
    _keys: list[object]  # each field's JSON key (one no object has, for a field not mapped)

    # --- the file ---------------------------------------------------------------------------
    def rows(self, parts: Iterable[bytes]) -> Iterator[R | RejectedRow]:
        """The file's rows in order, each parsed or rejected; `parts` are the file's bytes in
        order. Raises `ImportFileError` as it is iterated."""
        self._check_spec()
        records = _records(parts, self.spec.format is ImportFormat.CSV)
        if self.spec.format is ImportFormat.CSV:
            yield from self._csv_rows(records)
        else:
            yield from self._json_rows(records)

    def _check_spec(self) -> None:
        spec = self.spec
        try:
            codec = codecs.lookup(spec.encoding or "utf-8").name
        except LookupError:
            codec = ""
        codec = _READ_AS.get(codec, codec)
        if codec not in ENCODINGS or (codec != "utf-8" and spec.format is not ImportFormat.CSV):
            raise ImportFileError(
                "UNSUPPORTED_ENCODING",
                f"encoding {spec.encoding[:40]!r} is not supported: UTF-8, or GB18030 for CSV",
            )
        self._codec = codec
        if spec.mapping.phone and not is_phone_region(self._region):
            raise ImportFileError(
                "INVALID_REGION",
                f"default region {spec.default_region[:8]!r} is not a phone region (e.g. CN)",
            )

    def _row(self, number: int, values: Sequence[str], clean: bool) -> R | RejectedRow:
        """A row's values (in the kind's order), checked. `clean`: the record holds no control
        character."""
        raise NotImplementedError

    def _reject(self, number: int, reason: str, slot: int, problem: str) -> RejectedRow:
        """A row refused for a problem of its field `slot` (the detail names its column)."""
        raise NotImplementedError

    def _member_of(
        self, number: int, v: Sequence[str], clean: bool, *, legacy_required: bool
    ) -> list[ChannelIdentity] | RejectedRow:
        """The row's control characters refused (unless `clean`), and whom it names: its legacy
        number (field 0: `legacy:<unit>`; required or not) and phone (field 1, read in the
        spec's default region without a country code), in that order."""
        if not clean:
            for slot, value in enumerate(v):
                hidden = _CONTROL.search(value.strip(" \t\r\n")) if value else None
                if hidden:
                    return self._reject(
                        number,
                        "CONTROL_CHARACTERS",
                        slot,
                        f"a control character (U+{ord(hidden.group()):04X})",
                    )
        identities: list[ChannelIdentity] = []
        legacy = v[0].strip()
        if not legacy and legacy_required:
            return self._reject(number, "MISSING_LEGACY_NUMBER", 0, "empty")
        if legacy:
            if not LEGACY_NUMBER.fullmatch(legacy):
                return self._reject(
                    number,
                    "INVALID_LEGACY_NUMBER",
                    0,
                    f"{_masked_token(legacy)} is not 1-64 characters of A-Z, a-z, 0-9, '_' and '-'",
                )
            identities.append(ChannelIdentity(self._legacy_type, legacy))
        value = v[1].strip()
        if value:
            phone = phone_e164(value, self._region) if len(value) <= MAX_VALUE_LENGTH else None
            if phone is None:
                return self._reject(
                    number,
                    "INVALID_PHONE",
                    1,
                    f"{masking.mask_phone(value[:32])} is not a valid phone number "
                    f"(read in region {self._region} without a country code)",
                )
            identities.append(ChannelIdentity("phone", phone))
        return identities

    def _json_row(self, number: int, text: str, item: dict[Any, Any]) -> R | RejectedRow:
        """A JSON line's object (its text: `text`) as a row."""
        raise NotImplementedError

    def _csv_rows(self, records: Iterator[Record]) -> Iterator[R | RejectedRow]:
        header = self._header(records)
        width = len(header)
        place = {name: index for index, name in reversed(list(enumerate(header)))}
        missing = [c for c in self._columns if c and c not in place]
        if missing:
            raise ImportFileError(
                "MISSING_COLUMNS", "the header has no column " + ", ".join(map(_quoted, missing))
            )
        twice = [c for c in dict.fromkeys(self._columns) if c and header.count(c) > 1]
        if twice:
            raise ImportFileError(
                "DUPLICATE_COLUMNS", "the header has twice " + ", ".join(map(_quoted, twice))
            )
        self._where = [f"column {_quoted(c)}" for c in self._columns]
        # Index -1 is the empty value appended to every row: a field not mapped.
        pick = itemgetter(*[place[c] if c else -1 for c in self._columns])
        number = 0
        any_row = False
        for data, end in records:
            number += 1
            self.bytes_read = end
            if data is None:
                any_row = True
                yield _too_long(number)
                continue
            try:
                text = data.decode(self._codec).rstrip("\r\n")
            except UnicodeDecodeError as error:
                any_row = True
                yield self._undecodable(number, error)
                continue
            if not text:
                continue
            any_row = True
            if '"' in text:
                try:
                    fields = next(csv.reader((text,)))
                except csv.Error as error:
                    yield RejectedRow(number, "INVALID_CSV", f"not a CSV row: {error}")
                    continue
            else:
                fields = text.split(",")
            if len(fields) != width:
                yield RejectedRow(
                    number,
                    "WRONG_COLUMN_COUNT",
                    f"{len(fields)} fields where the header has {width} (a comma not quoted?)",
                )
                continue
            fields.append("")
            yield self._row(number, pick(fields), _CONTROL.search(text) is None)
        if not any_row:
            raise ImportFileError("EMPTY_FILE", "the file has a header and no rows")

    def _header(self, records: Iterator[Record]) -> list[str]:
        for data, end in records:
            self.bytes_read = end
            if data is None:
                raise ImportFileError(
                    "LINE_TOO_LONG", f"the header row is longer than {MAX_RECORD_BYTES} bytes"
                )
            text = self._first_text(data).rstrip("\r\n")
            if not text.strip():
                continue
            try:
                return [name.strip() for name in next(csv.reader((text,)))]
            except csv.Error as error:
                raise ImportFileError("INVALID_CSV", f"the header is not CSV: {error}") from None
        raise ImportFileError("EMPTY_FILE", "the file is empty")

    def _first_text(self, data: bytes) -> str:
        """The first record decoded, its byte order mark dropped, or the file refused."""
        try:
            return data.decode(self._codec).removeprefix("\ufeff")
        except UnicodeDecodeError:
            hint = " (it looks like UTF-16)" if data.startswith(_UTF16_BOMS) else ""
            raise ImportFileError(
                "INVALID_ENCODING",
                f"the file does not begin as {ENCODINGS[self._codec]}{hint}: save it as UTF-8",
            ) from None

    def _undecodable(self, number: int, error: UnicodeDecodeError) -> RejectedRow:
        return RejectedRow(
            number,
            "INVALID_ENCODING",
            f"not {ENCODINGS[self._codec]} at byte {error.start} of the row",
        )

    def _json_rows(self, records: Iterator[Record]) -> Iterator[R | RejectedRow]:
        self._where = [f"key {_quoted(c)}" for c in self._columns]
        self._keys = [c or _ABSENT for c in self._columns]
        number = 0
        any_line = False
        for data, end in records:
            number += 1
            self.bytes_read = end
            if data is None:
                any_line = True
                yield _too_long(number)
                continue
            if not any_line:
                text = self._first_text(data)
            else:
                try:
                    text = data.decode(self._codec)
                except UnicodeDecodeError as error:
                    yield self._undecodable(number, error)
                    continue
            if not text.strip():
                continue
            any_line = True
            try:
                item = json.loads(text)
            except (ValueError, RecursionError):
                yield RejectedRow(number, "INVALID_JSON", self.not_json)
                continue
            if not isinstance(item, dict):
                yield RejectedRow(number, "INVALID_JSON", "not a JSON object")
                continue
            yield self._json_row(number, text, item)
        if not any_line:
            raise ImportFileError("EMPTY_FILE", "the file is empty")


def _records(parts: Iterable[bytes], csv_quoting: bool) -> Iterator[Record]:
    """The file's records with the offset just past each: a line, or with `csv_quoting` the
    lines of a record whose quoted field spans them. A record over `MAX_RECORD_BYTES` comes as
    None, read past to the next newline and never held."""
    held = bytearray()  # the record under way: its complete lines, then a partial line
    line_at = 0  # where the partial line begins in `held`
    in_quotes = False  # the complete lines held end inside a quoted field
    skipping = False  # reading past a record too long
    first_line = True  # a byte order mark may come before its first field
    offset = 0  # of the part in the file
    for part in parts:
        size = len(part)
        at = 0
        while at < size:
            newline = part.find(b"\n", at)
            end = size if newline < 0 else newline + 1
            if skipping:
                if newline >= 0:
                    skipping = False
                    yield None, offset + end
            elif len(held) + end - at > MAX_RECORD_BYTES:
                first_line = False
                held = bytearray()
                line_at = 0
                in_quotes = False
                if newline < 0:
                    skipping = True
                else:
                    yield None, offset + end
            elif newline < 0:
                held += memoryview(part)[at:]
            else:
                if held:
                    held += memoryview(part)[at:end]
                    line: bytes | bytearray = held[line_at:]
                else:
                    line = part[at:end]
                if csv_quoting and (in_quotes or _QUOTE in line):
                    start = _bom_length(line) if first_line else 0
                    in_quotes = _ends_in_quotes(line, in_quotes, start)
                first_line = False
                if in_quotes:
                    if not held:
                        held += line
                    line_at = len(held)
                else:
                    yield bytes(held or line), offset + end  # (bytes(b) is b)
                    if held:
                        held = bytearray()
                        line_at = 0
            at = end
        offset += size
    if skipping:
        yield None, offset
    elif held:
        yield bytes(held), offset


def _bom_length(line: bytes | bytearray) -> int:
    for bom in _BOMS:
        if line.startswith(bom):
            return len(bom)
    return 0


def _ends_in_quotes(line: bytes | bytearray, in_quotes: bool, field_start: int = 0) -> bool:
    """Whether a CSV line ends inside a quoted field, so that its record goes on. Read as the
    `csv` module reads: a quote opens a quoted field only as the field's first character;
    inside one, two quotes are a quote and one closes it."""
    at = 0
    if in_quotes:
        field_start = -1
    while True:
        quote = line.find(_QUOTE, at)
        if quote < 0:
            return in_quotes
        if in_quotes:
            if line[quote + 1 : quote + 2] == _QUOTE:
                at = quote + 2
                continue
            in_quotes = False
            field_start = -1
        else:
            comma = line.rfind(b",", at, quote)
            if comma >= 0:
                field_start = comma + 1
            in_quotes = quote == field_start
        at = quote + 1


def _too_long(number: int) -> RejectedRow:
    return RejectedRow(
        number, "LINE_TOO_LONG", f"the row is longer than {MAX_RECORD_BYTES} bytes; not read"
    )


def _quoted(column: str) -> str:
    return '"' + (column if len(column) <= 64 else column[:64] + "…") + '"'


def _masked_token(value: str) -> str:
    # A colon would keep what precedes it visible (mask_token shows a scope).
    return masking.mask_token(value[-16:].replace(":", "*"))
