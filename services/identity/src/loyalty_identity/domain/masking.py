"""How personal data looks to a caller without the `personal_data:read` scope."""

from __future__ import annotations


def mask_phone(e164: str) -> str:
    """+8613812345678 -> +86138****5678: enough for a cashier to confirm, not to call."""
    if len(e164) <= 7:
        return "*" * len(e164)
    return f"{e164[:-8]}****{e164[-4:]}"


def mask_email(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def mask_token(value: str) -> str:
    scope, sep, rest = value.rpartition(":")
    body = rest if sep else value
    shown = body[-4:] if len(body) > 6 else ""
    return f"{scope}{sep}{'*' * max(3, len(body) - len(shown))}{shown}"


def mask_name(name: str) -> str:
    """张伟 -> 张*, Li Wei -> L** W**."""
    if not name:
        return ""
    if " " in name:
        return " ".join(part[:1] + "*" * (len(part) - 1) for part in name.split())
    return name[:1] + "*" * (len(name) - 1)


def mask_identity(kind: str, value: str) -> str:
    if kind == "phone":
        return mask_phone(value)
    if kind == "email":
        return mask_email(value)
    return mask_token(value)
