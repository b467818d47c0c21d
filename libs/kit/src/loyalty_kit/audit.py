"""The audit log's entries, drafted by the kit for every method whose access rule is `audited`.

The interceptor opens a draft when such a call comes in (`begin`): the method, the request
(redacted), its reason (the request's `reason` field, or one a message field down, else the
`x-loyalty-reason-bin` header in UTF-8, else `x-loyalty-reason` percent-encoded: the gateway
passes HTTP's `X-Loyalty-Reason` on as that), its target and its request id; the caller (unit,
client, operator) is read when the entry is written. Handlers add what they know of the
change (`note(before=, after=)`: a balance, a status, a version).

Where the entry goes:
- a call that commits a change: `UnitOfWork.commit` writes the entry to the service's outbox in
  the same transaction (`pending`/`written`), so it exists exactly when the change committed;
- a call that committed nothing (refused, failed): the interceptor writes it afterwards in a
  short transaction of its own, with the call's status code;
- an idempotent replay (a retry answered with the first call's stored answer, `replayed`):
  none, the first call's entry stands.

Every entry is published as `loyalty.audit.v1.AuditEntryRecorded` on the shared audit stream
(`LOYALTY_AUDIT`), which the gateway keeps in its `audit_log` table.

No personal data in clear: `redact` masks a member's profile, identity values, and any field
named like a phone, an e-mail address, a name, an address or a birthday, in the request and in
the before/after notes.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from google.protobuf import json_format
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from loyalty.audit.v1.audit_pb2 import AuditEntryRecorded

from loyalty_kit.caller import current_caller
from loyalty_kit.correlation import current_request_id
from loyalty_kit.timestamps import timestamp

AUDIT_STREAM = "audit"  # the shared stream's token: <namespace>.audit.v1.> in LOYALTY_AUDIT
REASON_HEADER = "x-loyalty-reason"
REASON_BIN_HEADER = "x-loyalty-reason-bin"
MASK = "***"
MAX_REASON = 500

# Field names that hold personal data, whatever message they are in.
PERSONAL_FIELD = re.compile(
    r"(^|_)(phone|phones|mobile|email|emails|e_mail|name|names|first_name|last_name|"
    r"address|addresses|birthday|birth|birthdate|dob|gender|profile)(_|$)",
    re.IGNORECASE,
)
# Fields a target is read from, in this order (top level first, then one message down).
TARGET_FIELDS = ("member_id", "member", "survivor", "survivor_member_id", "absorbed_member_id")


@dataclass
class AuditDraft:
    service: str
    method: str
    at: datetime
    reason: str = ""
    request_id: str = ""
    target: str = ""
    request: dict[str, Any] = field(default_factory=dict)
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    entry_id: uuid.UUID = field(default_factory=uuid.uuid4)
    written: bool = False
    replay: bool = False  # answered with a first call's stored answer: no entry of its own


_draft: ContextVar[AuditDraft | None] = ContextVar("loyalty_audit_draft", default=None)


def begin(
    service: str,
    method: str,
    request: Any,
    metadata: Iterable[tuple[str, str | bytes]] | None,
    *,
    audited: bool,
) -> AuditDraft | None:
    """The draft of this call's entry (None, and none current, when the method is not
    audited)."""
    if not audited:
        _draft.set(None)
        return None
    message = request if isinstance(request, Message) else None
    draft = AuditDraft(
        service=service,
        method=method,
        at=datetime.now(UTC),
        reason=reason_of(message, metadata),
        request_id=request_id_of(message),
        target=target_of(message),
        request=redact(message) if message is not None else {},
    )
    _draft.set(draft)
    return draft


def describe(request: Any) -> None:
    """The request of a call read after its draft was opened (a client stream's first
    message): its reason (unless a header gave one), target and redacted body."""
    draft = _draft.get()
    if draft is None or not isinstance(request, Message):
        return
    draft.reason = draft.reason or reason_of(request, ())
    draft.target = draft.target or target_of(request)
    draft.request_id = request_id_of(request)
    draft.request = redact(request)


def current() -> AuditDraft | None:
    return _draft.get()


def note(
    *,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    target: str = "",
) -> None:
    """What the handler knows of the change (kept redacted); nothing outside an audited call."""
    draft = _draft.get()
    if draft is None:
        return
    if before is not None:
        draft.before = _masked(dict(before))
    if after is not None:
        draft.after = _masked(dict(after))
    if target:
        draft.target = target


def pending() -> AuditDraft | None:
    """The draft a commit should carry: one not written yet (and not a replay's)."""
    draft = _draft.get()
    return draft if draft is not None and not draft.written and not draft.replay else None


def replayed() -> None:
    """The current call is a retry answered with the first call's stored answer (its
    request_id was taken): it changed nothing, and the first call's entry stands."""
    draft = _draft.get()
    if draft is not None:
        draft.replay = True


def entry(draft: AuditDraft, outcome: str) -> AuditEntryRecorded:
    """The event of a draft, for the caller of the current call."""
    caller = current_caller()
    return AuditEntryRecorded(
        entry_id=str(draft.entry_id),
        at=timestamp(draft.at),
        service=draft.service,
        method=draft.method,
        outcome=outcome,
        unit=caller.unit,
        client_id=caller.client_id,
        operator_id=caller.operator,
        reason=draft.reason,
        request_id=draft.request_id,
        target=draft.target,
        before_json=_json(draft.before),
        after_json=_json(draft.after),
        request_json=_json(draft.request) or "{}",
    )


def _json(value: dict[str, Any] | None) -> str:
    return "" if value is None else json.dumps(value, sort_keys=True, default=str)


def request_id_of(message: Message | None) -> str:
    """The request's own id (its idempotency key) where it has one, else the call's
    `x-request-id`."""
    found = getattr(message, "request_id", "") if message is not None else ""
    if isinstance(found, str) and found:
        return found
    return current_request_id() or ""


def reason_of(message: Message | None, metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The request's `reason` field (or a message field's) where it has one, else the reason
    header."""
    for candidate in (message, *_message_fields(message)) if message is not None else ():
        found = getattr(candidate, "reason", "") if _has(candidate, "reason") else ""
        if isinstance(found, str) and found.strip():
            return found.strip()[:MAX_REASON]
    for key, value in metadata or ():
        name = key.lower()
        if name in (REASON_BIN_HEADER, REASON_HEADER):
            if isinstance(value, bytes):
                text = value.decode("utf-8", "replace")
            else:  # text metadata is ASCII: UTF-8 comes percent-encoded
                text = unquote(value, errors="replace")
            if text.strip():
                return text.strip()[:MAX_REASON]
    return ""


def target_of(message: Message | None) -> str:
    """What the call acts on: a member named by the request (a list of `members` naming one
    only: that one, as a coupon issued to a member from the console), else a resource name,
    else its first `*_id` field, else a `code` or `key` (in the request, then one message field
    down)."""
    if message is None:
        return ""
    for candidate in (message, *_message_fields(message)):
        for name in TARGET_FIELDS:
            value = getattr(candidate, name, "") if _has(candidate, name) else ""
            if isinstance(value, str) and value:
                return value.removeprefix("members/")
        listed = getattr(candidate, "members", None) if _has(candidate, "members") else None
        if listed is not None and len(listed) == 1 and isinstance(listed[0], str) and listed[0]:
            return str(listed[0]).removeprefix("members/")
        # A resource name (`members/{id}`, `segments/{id}`): never a person's name, which
        # has no slash.
        value = getattr(candidate, "name", "") if _has(candidate, "name") else ""
        if isinstance(value, str) and "/" in value:
            return value.removeprefix("members/")
        for descriptor, value in candidate.ListFields():
            if (
                descriptor.name.endswith("_id")
                and descriptor.name not in ("request_id", "idempotency_key")
                and isinstance(value, str)
                and value
            ):
                return value
        for name in ("code", "key"):
            value = getattr(candidate, name, "") if _has(candidate, name) else ""
            if isinstance(value, str) and value:
                return value
    return ""


def _has(message: Message, name: str) -> bool:
    return name in message.DESCRIPTOR.fields_by_name


def _message_fields(message: Message) -> list[Message]:
    return [
        value
        for descriptor, value in message.ListFields()
        if descriptor.message_type is not None and isinstance(value, Message)
    ]


def redact(message: Message) -> dict[str, Any]:
    """The message as JSON data with personal data masked (see the module's note). A message
    JSON cannot render (a timestamp out of range, a hostile client's) is recorded by its type
    only: the call itself is refused by its validation, and its entry still written."""
    try:
        as_json = MessageToDict(message, preserving_proto_field_name=True)
    except (json_format.Error, ValueError, TypeError):
        return {"unreadable": message.DESCRIPTOR.full_name}
    data: dict[str, Any] = _masked(as_json)
    return data


def _masked(value: Any, parent: str = "") -> Any:
    if isinstance(value, dict):
        # An identity (a phone, a card): its type stays, its value never does.
        identity = "type" in value or "identit" in parent.lower()
        out: dict[str, Any] = {}
        for key, item in value.items():
            if PERSONAL_FIELD.search(str(key)) or (identity and key == "value"):
                out[key] = MASK
            else:
                out[key] = _masked(item, str(key))
        return out
    if isinstance(value, list):
        return [_masked(item, parent) for item in value]
    return value
