"""Structured JSON logging (structlog over the standard library), with no personal data.

The rule is that code never logs personal data: it logs member ids, never phones, emails or
names. As a second line of defence a processor masks anything in a log event that looks like a
phone number or an email address before it is rendered.

Each line of work done for a request carries its `request_id`, and, traced, its `trace_id` and
`span_id` (`add_correlation`, from `loyalty_kit.correlation`): a line found in the logs leads to
the request's other lines, in every service, and to its trace.

The access logs' lines (one per RPC, `rpc_line`; one per HTTP request at the gateway,
`access_line`) are written on a shorter path: the same processors and renderer straight onto
the handler's stream, without the standard library's record, caller lookup and formatter (which
cost more than the rest of the line). The text is the same; where the one handler is not a
stream written with the formatter of `configure_logging` (a test's capture added beside it) a
line takes the ordinary path.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from loyalty_kit import correlation

_EMAIL = re.compile(r"[\w.+-]+(?:@|%40)[\w-]+(?:\.[\w-]+)+")  # in a URL, too
# One pass over the text: what must survive (UUIDs, ISO dates and times) is matched first and
# kept; a phone, card or id number is 7+ digits standing alone, optionally with a leading +, a
# country code in parentheses, and single spaces, hyphens or dots between its groups. "Alone"
# means no ASCII letter, digit, underscore or hyphen touches either end (Chinese text may), so
# the digit runs inside hex ids, references and UUIDs are never taken for numbers.
_ALONE_BEFORE, _ALONE_AFTER = r"(?<![A-Za-z0-9_-])", r"(?![A-Za-z0-9_-])"
_HEX = "[0-9a-fA-F]"
_TOKENS = re.compile(
    rf"(?P<keep>{_ALONE_BEFORE}(?:"
    rf"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"
    r"|\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
    rf"){_ALONE_AFTER})"
    rf"|(?P<number>{_ALONE_BEFORE}(?:\+|\(\+?\d{{1,4}}\)[ .-]?)?\d(?:[ .-]?\d){{6,}}{_ALONE_AFTER})"
)


def _mask(match: re.Match[str]) -> str:
    return match.group() if match.group("keep") else "[number]"


# Keys the logging machinery itself fills in. Not `event`: for a library's record (an HTTP
# client logging the URL it called) it is the whole message.
_TRUSTED_KEYS = frozenset(
    {"timestamp", "level", "logger", "service", "ms", "port", "method", "code"}
    | {"trace_id", "span_id"}  # hex made here; a request id is the caller's: scrubbed
)


def scrub(text: str) -> str:
    text = _EMAIL.sub("[email]", text)
    return _TOKENS.sub(_mask, text)


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_value(v) for v in value]
    return value


def scrub_personal_data(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in list(event_dict.items()):
        if key not in _TRUSTED_KEYS:
            event_dict[key] = _scrub_value(value)
    return event_dict


def add_correlation(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """The request id and the trace of the work the line was written in, when known."""
    request_id = correlation.current_request_id()
    if request_id:
        event_dict.setdefault("request_id", request_id)
    ids = correlation.trace_ids()
    if ids is not None:
        event_dict.setdefault("trace_id", ids[0])
        event_dict.setdefault("span_id", ids[1])
    return event_dict


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time of each record (test capture swaps it)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


class _Lines:
    """What `access_line` writes with: the configured formatter's processors."""

    def __init__(self, formatter: logging.Formatter, shared: list[Any], last: list[Any]) -> None:
        self.formatter = formatter
        self.processors = [*shared, *last]


RPC_LOGGER = "loyalty.rpc"
_lines: _Lines | None = None


def _fast_stream(lines: _Lines | None) -> Any:
    """The stream of the one handler, when it writes with the configured formatter (stderr, or
    the file the benchmarks put in its place); else None."""
    handlers = logging.root.handlers
    if lines is None or len(handlers) != 1:
        return None
    handler = handlers[0]
    if (
        not isinstance(handler, logging.StreamHandler)
        or handler.formatter is not lines.formatter
        or handler.level > logging.INFO
        or handler.filters
    ):
        return None
    return handler.stream


def access_line(logger: str, event: str, fields: dict[str, Any]) -> None:
    """An access log's line (`fields`, then `event`) at INFO on `logger`: the line
    `get_logger(logger).info(event, **fields)` writes, on the shorter path."""
    lines = _lines
    stream = _fast_stream(lines)
    if stream is None or lines is None:
        get_logger(logger).info(event, **fields)
        return
    named = logging.getLogger(logger)
    if not named.isEnabledFor(logging.INFO):
        return
    rendered: Any = fields
    fields["event"] = event
    for processor in lines.processors:
        rendered = processor(named, "info", rendered)
    handler = logging.root.handlers[0]
    handler.acquire()
    try:
        stream.write(rendered + "\n")
        stream.flush()
    finally:
        handler.release()


def rpc_line(method: str, code: str, ms: float) -> None:
    """The access log's line of a call: `rpc` with its method, code and milliseconds."""
    access_line(RPC_LOGGER, "rpc", {"method": method, "code": code, "ms": ms})


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_correlation,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    last: list[Any] = [scrub_personal_data, renderer]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            *last,
        ],
    )
    handler = _StderrHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    global _lines
    _lines = _Lines(formatter, shared, last)
    root.setLevel(level.upper())
    for noisy in ("asyncio", "nats", "alembic.runtime.migration", "sqlalchemy.engine"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
