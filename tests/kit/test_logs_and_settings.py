"""Logs carry no personal data; settings come from LOYALTY_* variables."""

from __future__ import annotations

import json
import logging
import re
import uuid

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from loyalty_kit import correlation
from loyalty_kit.logs import configure_logging, get_logger, rpc_line, scrub
from loyalty_kit.settings import Settings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call +8613812345678 now", "call [number] now"),
        ("138 1234 5678", "[number]"),
        ("mail Li.Wei+vip@example.com.cn", "mail [email]"),
        ("member m_01J9Z earned 3086 points", "member m_01J9Z earned 3086 points"),
    ],
)
def test_scrub_masks_phones_and_emails_only(text: str, expected: str) -> None:
    assert scrub(text) == expected


def test_a_log_line_with_personal_data_is_masked(capfd: pytest.CaptureFixture[str]) -> None:
    configure_logging("test", "INFO", "json")
    get_logger("test").info("registered", note="phone 13812345678, mail wei@example.com")
    line = json.loads(capfd.readouterr().err.strip().splitlines()[-1])
    assert line["note"] == "phone [number], mail [email]"
    assert line["event"] == "registered" and line["level"] == "info"
    assert line["timestamp"].startswith("20")  # timestamps are not mistaken for numbers


def test_a_library_message_with_personal_data_is_masked_too(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A record of another library (an HTTP client logging the URL it called) is all message."""
    configure_logging("test", "INFO", "json")
    logging.getLogger("httpx").warning(
        "GET /v1/members:resolve?type=phone&value=13812345678 and value=wei%40example.com"
    )
    line = json.loads(capfd.readouterr().err.strip().splitlines()[-1])
    assert line["event"] == "GET /v1/members:resolve?type=phone&value=[number] and value=[email]"


def _without_time(line: str) -> str:
    return re.sub(r"\d{4}-\d{2}-\d{2}T[\d:.]+Z", "<time>", line)


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_the_access_line_is_the_structured_line_without_the_logging_records(
    fmt: str, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_logging("test", "INFO", fmt)
    try:
        _access_line_checks(capfd, monkeypatch)
    finally:
        configure_logging("test", "INFO", "json")  # as the test session configures it


def _access_line_checks(capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    capfd.readouterr()
    token = correlation.set_request_id(f"13812345678 {uuid.uuid4().hex[:6]}")
    try:
        method = "/loyalty.points.v1.PointsService/EarnPoints"
        get_logger("loyalty.rpc").info("rpc", method=method, code="NOT_FOUND", ms=1.25)
        records: list[str] = []
        made = logging.Logger.makeRecord

        def counted(self: logging.Logger, *args: object, **kwargs: object) -> logging.LogRecord:
            records.append(self.name)
            return made(self, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(logging.Logger, "makeRecord", counted)
        rpc_line(method, "NOT_FOUND", 1.25)
    finally:
        correlation.reset_request_id(token)
    ordinary, fast = capfd.readouterr().err.strip().splitlines()[-2:]
    assert _without_time(fast) == _without_time(ordinary)  # the same text, masked alike
    assert "13812345678" not in fast and "[number]" in fast
    assert records == []  # written without a standard library record
    # Below INFO nothing; a handler put in place of the kit's (a capture) gets the ordinary one.
    logging.getLogger("loyalty.rpc").setLevel(logging.WARNING)
    try:
        rpc_line(method, "OK", 0.5)
        assert capfd.readouterr().err == ""
    finally:
        logging.getLogger("loyalty.rpc").setLevel(logging.NOTSET)
    captured: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = captured.append  # type: ignore[method-assign,assignment]
    logging.getLogger().addHandler(handler)
    try:
        rpc_line(method, "OK", 0.5)
    finally:
        logging.getLogger().removeHandler(handler)
    assert [record.name for record in captured] == ["loyalty.rpc"]


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOYALTY_DATABASE_URL", "postgresql://postgres@db.internal:5433/postgres")
    monkeypatch.setenv("LOYALTY_POINTS_PORT", "6000")
    monkeypatch.setenv("LOYALTY_TIERS_TARGET", "tiers:50053")
    settings = Settings()
    url = settings.service_database_url("points")
    assert (url.drivername, url.host, url.port, url.database) == (
        "postgresql+asyncpg",
        "db.internal",
        5433,
        "loyalty_points",
    )
    assert settings.port_of("points") == 6000
    assert settings.target_of("points") == "127.0.0.1:6000"
    assert settings.target_of("tiers") == "tiers:50053"


def test_a_service_without_a_database_server_says_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LOYALTY_DATABASE_URL", raising=False)
    with pytest.raises(RuntimeError, match="make run"):
        Settings(database_url="").service_database_url("points")


def test_event_namespace_must_be_one_subject_token() -> None:
    with pytest.raises(ValueError, match="event_namespace"):
        Settings(event_namespace="a.b")


def test_error_references_survive_the_masking_of_long_numbers() -> None:
    """A reference must be findable in the log: hex ids such as 2639711e5348 hold seven-digit
    runs that the masking of phone numbers rewrites."""
    from loyalty_kit.status import error_reference

    for _ in range(200):
        reference = error_reference()
        assert len(reference) == 12 and not any(c.isdigit() for c in reference)


# Text around a value in a log message: ASCII words, punctuation and Chinese, never glued to it.
_AROUND = st.text(alphabet=st.sampled_from(list("abc XYZ,;:=()[]{}'\"/。电话订单号 ")), max_size=20)
_SEPARATOR = st.sampled_from([" ", "=", ": ", "(", "'", '"', "电话", ", "])


@st.composite
def _phones(draw: st.DrawFn) -> str:
    """Mainland mobile numbers as people and systems write them."""
    digits = (
        "1" + draw(st.sampled_from("3456789")) + draw(st.text("0123456789", min_size=9, max_size=9))
    )
    sep = draw(st.sampled_from(["", " ", "-", "."]))
    number = sep.join((digits[:3], digits[3:7], digits[7:])) if sep else digits
    prefix = draw(st.sampled_from(["", "+86", "+86 ", "(+86) ", "86-", "0086"]))
    return prefix + number


@given(value=st.uuids(version=4), before=_AROUND, after=_AROUND, sep=_SEPARATOR)
def test_any_uuid_survives_the_masking(value: uuid.UUID, before: str, after: str, sep: str) -> None:
    text = f"{before}{sep}{value}{sep[::-1]}{after}"
    assert str(value) in scrub(text)


@given(value=st.uuids(), reference=st.text("0123456789abcdef", min_size=8, max_size=32))
def test_hex_ids_and_references_survive_the_masking(value: uuid.UUID, reference: str) -> None:
    # A hex id with at least one letter is an id, not a number.
    assume(any(c.isalpha() for c in reference))
    text = f"checkout_id={value.hex} reference {reference} trace={value}"
    assert scrub(text) == text


@given(phone=_phones(), before=_AROUND, after=_AROUND, sep=_SEPARATOR)
def test_any_phone_in_a_message_is_masked(phone: str, before: str, after: str, sep: str) -> None:
    masked = scrub(f"{before}{sep}{phone} {after}")
    digits = "".join(c for c in phone if c.isdigit())
    assert digits[-8:] not in "".join(c for c in masked if c.isdigit())
    assert "[number]" in masked
