"""Bounds on what a request may carry, checked once here for every service.

Strings that are stored in an indexed or unique column (order ids, request ids, partner
references, codes, tags, identity values) have one documented maximum, `MAX_KEY_LENGTH`
characters (protos/README.md, "Limits"): PostgreSQL cannot index an arbitrarily long value, and
a longer one is refused as INVALID_ARGUMENT naming the field rather than failing in the database.
Enum fields are open in proto3 (any number decodes); `enum_value` refuses numbers the contract
does not name.

Text is printable Unicode on one line (protos/README.md, "Characters in text"): every string of
every request, names and free text alike, is refused as INVALID_ARGUMENT / INVALID_CHARACTERS
when it holds a control character, a bidirectional control or an invisible character that lets
two different strings look the same (`text_violation`, and `request_text_violations` that the
server interceptor and the gateway run on every request). Letters of any script, CJK, emoji and
combining marks are text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from loyalty_kit.errors import FieldViolation, InvalidArgument

MAX_KEY_LENGTH = 128
INVALID_CHARACTERS = "INVALID_CHARACTERS"

# What no text may hold. Joiners (ZWNJ U+200C, ZWJ U+200D) are part of Persian, Indic and emoji
# spelling, so they pass between two non-ASCII characters; at either end or beside ASCII they
# only make 'Alice' and 'Al\u200dice' two names that look alike, and are refused there.
_REFUSED = re.compile(
    r"["
    r"\x00-\x1f\x7f-\x9f"  # C0 controls (tab and line breaks too: text is one line), DEL, C1
    r"\u00ad\u034f\u115f\u1160\u17b4\u17b5\u180e\u3164\uffa0"  # invisible, fillers
    r"\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidi marks, embeddings, overrides, isolates
    r"\u200b\u2060-\u2064\ufeff"  # zero width space, word joiner, invisible operators, BOM
    r"\u2028\u2029"  # line and paragraph separators
    r"\ufff9-\ufffb\ufdd0-\ufdef\ufffe\uffff"  # annotation controls, noncharacters
    r"\ud800-\udfff\U000e0000-\U000e007f"  # lone surrogates, tag characters
    r"]"
    r"|(?:\A|(?<=[\x00-\x7f]))[\u200c\u200d]|[\u200c\u200d](?=[\x00-\x7f]|\Z)"
)


def length_violation(
    text: str, field: str, *, maximum: int = MAX_KEY_LENGTH, required: bool = True
) -> FieldViolation | None:
    """What is wrong with `text`'s length, if anything (for validators collecting violations)."""
    if (required and not text.strip()) or len(text) > maximum:
        needs = "required, at most" if required else "at most"
        return FieldViolation(field, f"{needs} {maximum} characters")
    return None


def bounded(text: str, field: str, *, maximum: int = MAX_KEY_LENGTH, required: bool = True) -> str:
    """`text` if it is within `maximum` characters (and given, when required); otherwise
    INVALID_ARGUMENT naming `field`."""
    violation = length_violation(text, field, maximum=maximum, required=required)
    if violation is not None:
        raise InvalidArgument.of([violation])
    return text


def enum_violation(
    named: Iterable[int], value: int, field: str, *, unspecified_ok: bool = True
) -> FieldViolation | None:
    """What is wrong with an enum number, if anything (for validators collecting violations)."""
    if value not in named or (value == 0 and not unspecified_ok):
        return FieldViolation(field, "not one of the contract's values")
    return None


def enum_value(
    named: Iterable[int], value: int, field: str, *, unspecified_ok: bool = False
) -> int:
    """`value` if it is among the enum's `named` numbers (`Kind.values()`; 0, UNSPECIFIED, only
    when `unspecified_ok`); otherwise INVALID_ARGUMENT naming `field`."""
    violation = enum_violation(named, value, field, unspecified_ok=unspecified_ok)
    if violation is not None:
        raise InvalidArgument.of([violation])
    return value


def text_violation(text: str, field: str) -> FieldViolation | None:
    """What is wrong with the characters of `text`, if anything: the first refused one, by
    code point and position (never the text itself, which may be personal)."""
    found = _REFUSED.search(text)
    if found is None:
        return None
    return FieldViolation(
        field,
        f"U+{ord(found.group()):04X} at {found.start()}: control, bidirectional and invisible "
        "characters are not text",
        INVALID_CHARACTERS,
    )


def plain_text(
    text: str, field: str, *, maximum: int = MAX_KEY_LENGTH, required: bool = True
) -> str:
    """`text` if it is printable text within `maximum` characters; otherwise INVALID_ARGUMENT
    naming `field` (reason INVALID_CHARACTERS when its characters are what is wrong)."""
    bounded(text, field, maximum=maximum, required=required)
    refuse_text_violations([v for v in [text_violation(text, field)] if v is not None])
    return text


def request_text_violations(message: Message) -> list[FieldViolation]:
    """Every string of `message`, nested messages, repeated fields and maps included, checked
    with `text_violation`; each violation names its field's path (`lines[0].line_id`)."""
    return list(_violations(message, ""))


def refuse_text_violations(violations: list[FieldViolation]) -> None:
    if violations:
        message = "; ".join(f"{v.field}: {v.description}" for v in violations)
        raise InvalidArgument(message, reason=INVALID_CHARACTERS, field_violations=violations)


def refuse_hostile_text(message: Message) -> None:
    """INVALID_ARGUMENT / INVALID_CHARACTERS when any string of `message` is not text."""
    refuse_text_violations(request_text_violations(message))


def _violations(message: Message, prefix: str) -> Iterator[FieldViolation]:
    for described, value in message.ListFields():
        path = f"{prefix}{described.name}"
        entry = described.message_type
        if entry is not None and entry.GetOptions().map_entry:
            value_field = entry.fields_by_name["value"]
            for key, item in value.items():
                where = f"{path}[{key!r}]" if isinstance(key, str) else f"{path}[{key}]"
                if isinstance(key, str) and (bad := text_violation(key, path)) is not None:
                    yield bad
                    continue
                yield from _one(value_field, item, where)
        elif described.is_repeated:
            for index, item in enumerate(value):
                yield from _one(described, item, f"{path}[{index}]")
        else:
            yield from _one(described, value, path)


def _one(described: FieldDescriptor, value: object, path: str) -> Iterator[FieldViolation]:
    if described.type == FieldDescriptor.TYPE_STRING:
        assert isinstance(value, str)
        if (bad := text_violation(value, path)) is not None:
            yield bad
    elif described.type == FieldDescriptor.TYPE_MESSAGE:
        assert isinstance(value, Message)
        yield from _violations(value, f"{path}.")
