"""What text is (protos/README.md, "Characters in text"): printable Unicode of any script on one
line; control, bidirectional and invisible characters refused, naming the field."""

from __future__ import annotations

import pytest
from loyalty.identity.v1 import identity_service_pb2, member_pb2
from loyalty_kit.errors import InvalidArgument
from loyalty_kit.validation import (
    INVALID_CHARACTERS,
    plain_text,
    refuse_hostile_text,
    request_text_violations,
    text_violation,
)

TEXT = [
    "王芳",
    "Zhao Lei",
    "José Müller-Łukasiewicz",
    "محمد بن سلمان",
    "नमस्\u200dते",  # a joiner inside Devanagari
    "می\u200cخواهم",  # a non-joiner inside Persian
    "👩\u200d👩\u200d👧",  # an emoji family sequence
    "e\u0301",  # a combining accent
    "Ａｌｉｃｅ",  # full width letters
    "",
]
NOT_TEXT = [
    ("a\x00b", 0x0000),
    ("line\nbreak", 0x000A),
    ("tab\there", 0x0009),
    ("\x1b[31mred", 0x001B),
    ("del\x7f", 0x007F),
    ("next\x85line", 0x0085),
    ("abc\u202etxt.exe", 0x202E),
    ("\u2066isolated\u2069", 0x2066),
    ("mark\u200f", 0x200F),
    ("Al\u200dice", 0x200D),
    ("\u200c王", 0x200C),
    ("王\u200d", 0x200D),
    ("zero\u200bwidth", 0x200B),
    ("\ufeffbom", 0xFEFF),
    ("soft\u00adhyphen", 0x00AD),
    ("para\u2029graph", 0x2029),
    ("filler\u3164", 0x3164),
    ("tag\U000e0041", 0xE0041),
    ("non\ufffe", 0xFFFE),
]


@pytest.mark.parametrize("text", TEXT)
def test_letters_of_any_script_emoji_and_marks_are_text(text: str) -> None:
    assert text_violation(text, "name") is None


@pytest.mark.parametrize(("text", "code_point"), NOT_TEXT)
def test_control_bidi_and_invisible_characters_are_not(text: str, code_point: int) -> None:
    violation = text_violation(text, "profile.full_name")
    assert violation is not None
    assert violation.field == "profile.full_name"
    assert violation.reason == INVALID_CHARACTERS
    assert violation.description.startswith(f"U+{code_point:04X} at {text.index(chr(code_point))}")


def test_plain_text_checks_length_and_characters() -> None:
    assert plain_text("王芳", "name", maximum=4) == "王芳"
    with pytest.raises(InvalidArgument) as refused:
        plain_text("王\u202e芳", "name")
    assert refused.value.reason == INVALID_CHARACTERS
    with pytest.raises(InvalidArgument) as too_long:
        plain_text("王芳王芳王", "name", maximum=4)
    assert too_long.value.reason == "INVALID_ARGUMENT"


def test_every_string_of_a_request_is_checked_and_named_by_its_path() -> None:
    request = identity_service_pb2.RegisterMemberRequest(
        request_id="r-1",
        unit="mall",
        identities=[
            member_pb2.Identity(type="phone", value="13800138000"),
            member_pb2.Identity(type="email\t", value="a@example.com"),
        ],
        profile=member_pb2.Profile(full_name="王\u200b芳", region="上海"),
    )
    assert [v.field for v in request_text_violations(request)] == [
        "identities[1].type",
        "profile.full_name",
    ]
    with pytest.raises(InvalidArgument) as refused:
        refuse_hostile_text(request)
    assert refused.value.reason == INVALID_CHARACTERS
    assert "王" not in refused.value.message  # where and which code point, never the text


def test_a_clean_request_passes() -> None:
    request = identity_service_pb2.UpdateTagsRequest(
        member="members/x", request_id="r", add_tags=["bu:mall-active", "segment:vip"]
    )
    refuse_hostile_text(request)
