"""Channel identities: their types (data, not code) and how values are normalised.

Phones become E.164 (via `phonenumbers`; a number without its country code is read in a default
region, CN unless a caller such as a unit's member import says otherwise); emails are validated and
lower-cased (via `email-validator`); other types are opaque tokens checked against the type's
pattern. Normalising before hashing is what makes "+86 138 1234 5678", "13812345678" and
"+8613812345678" the same person.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Collection
from dataclasses import dataclass
from enum import Enum

import phonenumbers
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from email_validator.rfc_constants import (
    DNS_LABEL_LENGTH_LIMIT,
    DOMAIN_MAX_LENGTH,
    EMAIL_MAX_LENGTH,
)
from loyalty_kit.errors import FieldViolation, InvalidArgument

from loyalty_identity.domain.member_code import MEMBER_CODE_TYPE

DEFAULT_PHONE_REGION = "CN"
MAX_VALUE_LENGTH = 256
MAX_CODE_LENGTH = 40
# A type's pattern and description are repeated in the answer for each value that does not
# match, and patterns are compiled and cached: both are kept short.
MAX_PATTERN_LENGTH = 256
MAX_DESCRIPTION_LENGTH = 200
# A business unit's code ("mall", "hot-spring"); `member.UNIT` is this pattern.
UNIT_CODE = r"[a-z][a-z0-9_-]{1,31}"
# A unit's legacy member numbers (member imports) are the type `legacy:<unit>`: editable too.
TYPE_CODE = re.compile(rf"^(?:[a-z][a-z0-9_]{{1,39}}|legacy:{UNIT_CODE})$")
# Types ResolveMember answers without the catalogue: never defined, never stored as identities.
RESERVED_TYPES = frozenset({MEMBER_CODE_TYPE})
KNOWN_TYPES_NAMED = 10  # in the answer to an unknown type; ListIdentityTypes has them all


class IdentityKind(Enum):
    PHONE = "phone"
    EMAIL = "email"
    TOKEN = "token"


@dataclass(frozen=True)
class IdentityType:
    code: str
    kind: IdentityKind
    pattern: str = ""
    description: str = ""

    def validate_definition(self, field: str = "identity_type") -> None:
        problems: list[FieldViolation] = []
        if not TYPE_CODE.match(self.code):
            problems.append(
                FieldViolation(
                    f"{field}.code",
                    "2-40 characters: a-z, 0-9, '_', starting with a letter "
                    "(or `legacy:` and a unit's code, such as `legacy:hot-spring`)",
                )
            )
        elif self.code in RESERVED_TYPES:
            problems.append(
                FieldViolation(f"{field}.code", f"{self.code} is reserved: it is not stored")
            )
        if len(self.description) > MAX_DESCRIPTION_LENGTH:
            problems.append(
                FieldViolation(
                    f"{field}.description", f"at most {MAX_DESCRIPTION_LENGTH} characters"
                )
            )
        if self.kind is IdentityKind.TOKEN:
            if len(self.pattern) > MAX_PATTERN_LENGTH:
                problems.append(
                    FieldViolation(f"{field}.pattern", f"at most {MAX_PATTERN_LENGTH} characters")
                )
            elif not self.pattern:
                problems.append(
                    FieldViolation(f"{field}.pattern", "required for TOKEN identity types")
                )
            else:
                try:
                    re.compile(self.pattern)
                except re.error as error:
                    problems.append(
                        FieldViolation(f"{field}.pattern", f"not a valid pattern: {error}")
                    )
        if problems:
            raise InvalidArgument.of(problems)


@dataclass(frozen=True)
class ChannelIdentity:
    """A normalised identity: what is hashed, stored and compared."""

    type: str
    value: str


def unknown_type(given: str, known: str) -> str:
    """The description of an unknown identity type `given`; `known` is `known_types(...)`."""
    return f"unknown identity type {_cut(given, MAX_CODE_LENGTH)!r}; {known}"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def known_types(codes: Collection[str]) -> str:
    """The first few type codes and how many more: made once per request, however many of its
    identities name an unknown type. Identity types are data and may be many; the whole list in
    every violation cost the size of the list times the identities (a 1,000-identity request
    under 2,500 types held 130 MB of text at once, all but a few lines of it cut from the
    answer anyway)."""
    named = heapq.nsmallest(KNOWN_TYPES_NAMED, codes)
    more = len(codes) - len(named)
    return f"known: {', '.join(named)}" + (
        f" and {more} more (ListIdentityTypes names them)" if more else ""
    )


def normalise(
    identity_type: IdentityType,
    raw: str,
    field: str,
    default_region: str = DEFAULT_PHONE_REGION,
) -> ChannelIdentity:
    """The identity's canonical value, or INVALID_ARGUMENT naming `field`. A phone written
    without its country code is read as dialled in `default_region` (ISO 3166 alpha-2)."""
    value = raw.strip()
    if not value:
        raise InvalidArgument.of([FieldViolation(field, "required")])
    if len(value) > MAX_VALUE_LENGTH:
        raise InvalidArgument.of([FieldViolation(field, f"at most {MAX_VALUE_LENGTH} characters")])
    if identity_type.kind is IdentityKind.PHONE:
        phone = phone_e164(value, default_region)
        if phone is None:
            raise InvalidArgument.of([FieldViolation(field, "not a valid phone number")])
        return ChannelIdentity(identity_type.code, phone)
    if identity_type.kind is IdentityKind.EMAIL:
        email = canonical_email(value)
        if email is None:
            raise InvalidArgument.of([FieldViolation(field, "not a valid email address")])
        return ChannelIdentity(identity_type.code, email)
    if not re.fullmatch(identity_type.pattern, value):
        raise InvalidArgument.of(
            [
                FieldViolation(
                    field,
                    f"not a valid {identity_type.code}: "
                    + _cut(identity_type.description, MAX_DESCRIPTION_LENGTH),
                )
            ]
        )
    return ChannelIdentity(identity_type.code, value)


# Most numbers given are mainland mobiles written as 11 digits, or with +86 (a space after it
# or not). Of those, `phonenumbers.parse` can make nothing but country code 86 with the digits as
# the national number (CN's trunk, carrier and international prefixes begin 0, 11, 12 or 179):
# built directly, they skip the parser (three quarters of the cost, which counts over a unit's
# million members). Their validity is the library's own: a national number that matches CN's
# general and mobile patterns of its metadata is a valid mobile to `is_valid_number` (86 is
# CN's alone), any other is asked of `is_valid_number`. tests/identity/test_domain.py proves
# both ways agree.
MAINLAND_MOBILE = re.compile(r"(\+86 ?)?(1(?:[3-689]\d|7[0-8])\d{8})", re.ASCII)
_CN = phonenumbers.PhoneMetadata.metadata_for_region("CN")


def _pattern(desc: object) -> re.Pattern[str] | None:
    """A number description's pattern, when it takes 11 digits (else None: no shortcut)."""
    pattern = getattr(desc, "national_number_pattern", None)
    lengths = getattr(desc, "possible_length", None) or ()
    return re.compile(pattern) if pattern and 11 in lengths else None


_CN_GENERAL = _pattern(_CN.general_desc) if _CN is not None else None
_CN_MOBILE = _pattern(_CN.mobile) if _CN is not None else None


def _valid_mainland(digits: str) -> bool:
    if (
        _CN_GENERAL
        and _CN_MOBILE
        and _CN_GENERAL.fullmatch(digits)
        and _CN_MOBILE.fullmatch(digits)
    ):
        return True
    number = phonenumbers.PhoneNumber(country_code=86, national_number=int(digits))
    return bool(phonenumbers.is_valid_number(number))


def phone_e164(value: str, region: str = DEFAULT_PHONE_REGION) -> str | None:
    """The phone number in E.164 (a number without its country code is read as dialled in
    `region`), or None when it is not a valid number."""
    mobile = MAINLAND_MOBILE.fullmatch(value)
    if mobile and (mobile.group(1) or region == "CN"):
        digits = mobile.group(2)
        return f"+86{digits}" if _valid_mainland(digits) else None
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def is_phone_region(region: str) -> bool:
    """Whether phone numbers can be read in `region` (ISO 3166 alpha-2, e.g. "CN")."""
    return region in phonenumbers.SUPPORTED_REGIONS


# Most e-mail addresses are plain ASCII: a dot-atom of letters, digits, "_", "+" and "-" before
# the @, and after it dot-separated labels of letters, digits and inner hyphens (never two in a
# row) ending in an alphabetic top-level domain that is not special-use. Every such address
# within the lengths is valid to `email-validator` and normalised by it to itself, save case:
# those skip it (a fifth of a row's reading). Anything else is asked of it.
# tests/identity/test_domain.py proves both ways agree.
PLAIN_EMAIL = re.compile(
    r"(?P<local>[a-z0-9_+-]+(?:\.[a-z0-9_+-]+)*)@"
    r"(?P<domain>(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+(?P<tld>[a-z]{2,63}))",
    re.ASCII | re.IGNORECASE,
)
_SPECIAL_USE_TLDS = frozenset(SPECIAL_USE_DOMAIN_NAMES)


def _plain_email(value: str) -> str | None:
    found = PLAIN_EMAIL.fullmatch(value)
    if found is None or len(value) > EMAIL_MAX_LENGTH or len(found["local"]) > 64:
        return None
    domain = found["domain"].lower()
    if (
        len(domain) > DOMAIN_MAX_LENGTH
        or "--" in domain
        or found["tld"].lower() in _SPECIAL_USE_TLDS
        or any(len(label) > DNS_LABEL_LENGTH_LIMIT for label in domain.split("."))
    ):
        return None
    return value.lower()


def canonical_email(value: str) -> str | None:
    """The e-mail address validated and lower-cased, or None when it is not valid."""
    plain = _plain_email(value)
    if plain is not None:
        return plain
    try:
        checked = validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        return None
    # The domain is case-insensitive by standard; the local part is in practice too (and
    # treating it so is what stops two members for Wei@ and wei@).
    return str(checked.normalized).lower()
