"""An import's spec from a small YAML (or JSON) file and the command's options.

The file is the contract's spec message (`MemberImportSpec`, `OrderImportSpec`) written with
the field names of the .proto files, read with protobuf's json_format (unknown fields refused),
so everything the contract can say the file can say:

    unit: mall
    encoding: gb18030
    mapping: {legacy_number: 卡号, phone: 手机号, name: 姓名, points_balance: 积分}
    tier_mapping: {金卡: gold, 白金卡: platinum}
    tier_grant_ends_at: 2027-12-31

Enums may be written short: `format: csv` or `jsonl`, `auto_merge: phone-and-name`, `mode:
activity-only` (or by their full names). `tier_grant_ends_at` may be a date: the grants then end
with that day, in the programme's time zone. The command's options (`--unit`, `--format`...)
override the file; what neither gives, the service defaults.

The request id of the upload is derived from the file's SHA-256 and the spec, so running the
same command again is the same import: the service answers the first one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from google.protobuf import json_format
from google.protobuf.message import Message

from loyalty_admin.document import TextTimesLoader
from loyalty_admin.imports.kinds import Kind

# Short names of enum values beside the contract's (`csv` for IMPORT_FORMAT_CSV).
ALIASES = {"jsonl": "json_lines", "ndjson": "json_lines"}
# Formats by the file's extension, when neither the file nor --format says.
EXTENSIONS = {".csv": "csv", ".jsonl": "json_lines", ".ndjson": "json_lines"}
# The spec's field whose date is the end of that day in the programme's time zone.
ENDS_AT = "tier_grant_ends_at"


class SpecError(ValueError):
    """The spec file or an option does not fit the contract."""


def load_spec_file(path: Path) -> dict[str, Any]:
    """The file's mapping (YAML, of which JSON is a part)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SpecError(f"{path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not UTF-8 text") from None
    try:
        data = yaml.load(text, Loader=TextTimesLoader)  # a safe loader
    except yaml.YAMLError as error:
        raise SpecError(f"{path}: not YAML or JSON ({error})".replace("\n", " ")) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a mapping of the spec's fields, e.g. `unit: mall`")
    return data


def _enum_value(field: Any, text: str) -> str:
    """An enum value's full name from its full or short name (`csv`, `phone-and-name`)."""
    names: list[str] = [value.name for value in field.enum_type.values]
    if text in names:
        return text
    prefix = names[0][: -len("UNSPECIFIED")]
    short = text.strip().lower().replace("-", "_")
    if short == "none":  # `auto_merge: none`: the default, which the contract leaves unnamed
        return names[0]
    wanted = prefix + ALIASES.get(short, short).upper()
    if wanted in names:
        return wanted
    choices = ", ".join(
        name[len(prefix) :].lower().replace("_", "-") for name in names if name != names[0]
    )
    raise SpecError(f"{field.name}: {text!r} is not one of {choices}")


def _shortened(data: dict[str, Any], message: type[Message]) -> dict[str, Any]:
    """`data` with short enum names made full (top-level fields: where the specs have them)."""
    out = dict(data)
    for field in message.DESCRIPTOR.fields:
        for key in (field.name, field.json_name):
            value = out.get(key)
            if field.enum_type is not None and isinstance(value, str):
                out[key] = _enum_value(field, value)
    return out


def end_of_day(day: date, time_zone: str) -> str:
    """The end of `day` in `time_zone` (the next midnight: grants end exclusive), RFC 3339."""
    midnight = datetime.combine(day + timedelta(days=1), time(), tzinfo=ZoneInfo(time_zone))
    return midnight.isoformat()


def is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == len("2027-12-31")


def build_spec(
    kind: Kind,
    data: dict[str, Any],
    options: dict[str, Any],
    *,
    file: Path,
    time_zone: Callable[[], str],
) -> Any:
    """The spec: the file's fields, the options over them, the format from the file's
    extension and its name for operators when neither says. `time_zone()` is asked (the
    programme's) only when the grants' end is a date. The kind's spec message (typed loosely:
    its fields are read by name)."""
    merged = {**data}
    for key, value in options.items():
        if value is None or value == {} or value is False:
            continue
        if key not in kind.spec.DESCRIPTOR.fields_by_name:
            raise SpecError(f"--{key.replace('_', '-')} is not an option of {kind.key} imports")
        merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
    if not merged.get("format") and file.suffix.lower() in EXTENSIONS:
        merged["format"] = EXTENSIONS[file.suffix.lower()]
    merged.setdefault("file_name", file.name)
    ends = merged.get(ENDS_AT)
    if isinstance(ends, date):  # a JSON-ish loader's date
        ends = ends.isoformat()
    if isinstance(ends, str) and is_date(ends):
        ends = end_of_day(date.fromisoformat(ends), time_zone())
    if ends is not None:
        merged[ENDS_AT] = ends
    spec = kind.spec()
    try:
        json_format.ParseDict(_shortened(merged, kind.spec), spec)
    except json_format.ParseError as error:
        raise SpecError(" ".join(str(error).split())) from None
    return spec


def file_digest(path: Path, part_bytes: int = 1 << 20) -> str:
    """The file's SHA-256 (hex), read a part at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while part := file.read(part_bytes):
            digest.update(part)
    return digest.hexdigest()


def request_id(kind: Kind, sha256: str, spec: Message) -> str:
    """The same file with the same spec, the same request id: a rerun is the same import."""
    text = json.dumps(
        [kind.resource, sha256, json_format.MessageToDict(spec)], sort_keys=True
    ).encode()
    return "cli-" + hashlib.sha256(text).hexdigest()
