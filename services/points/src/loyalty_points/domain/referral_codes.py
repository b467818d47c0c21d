"""Referral codes (推荐码): a member's own short code to share, stable once made. Eight
characters of an alphabet without the ones people misread (0/O, 1/I/L) or that spell words
(U): 30^8 (about 6.6 * 10^11) codes, drawn from the OS's CSPRNG. Pure rules, no I/O."""

from __future__ import annotations

import secrets

from loyalty_kit.errors import FieldViolation, InvalidArgument, NotFound

ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 8
_SEPARATORS = str.maketrans("", "", " -")


class ReferralCodeNotFound(NotFound):
    reason = "REFERRAL_CODE_NOT_FOUND"

    def __init__(self, code: str) -> None:
        super().__init__(f"no member has the referral code {code!r}", metadata={"code": code})


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def code_of(text: str, field: str = "referral_code") -> str:
    """A code as a member typed it (any case, spaces or dashes between), or INVALID_ARGUMENT
    naming `field`."""
    code = text.translate(_SEPARATORS).upper()
    if len(code) != CODE_LENGTH or any(c not in ALPHABET for c in code):
        raise InvalidArgument.of([FieldViolation(field, f"{CODE_LENGTH} characters of {ALPHABET}")])
    return code


def masked_member(member_id: str) -> str:
    """A referred member as the referrer sees them: the last 4 characters of the ID."""
    return "*" * (len(member_id) - 4) + member_id[-4:]
