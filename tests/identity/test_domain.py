"""The identity domain's rules, without I/O: normalisation, masking, profile checks, keys."""

from __future__ import annotations

import hashlib
import hmac
import random
from datetime import UTC, date, datetime
from pathlib import Path

import phonenumbers
import pytest
from cryptography.exceptions import InvalidTag
from email_validator import EmailNotValidError, validate_email
from hypothesis import given
from hypothesis import strategies as st
from loyalty_identity.adapters.crypto import KeyConfigError, Keyring, new_key_text, seal, unseal
from loyalty_identity.domain import masking
from loyalty_identity.domain.errors import LastIdentity, NotMergedInto
from loyalty_identity.domain.errors import MemberErased as MemberErasedError
from loyalty_identity.domain.errors import MemberMerged as MemberMergedError
from loyalty_identity.domain.identities import (
    PLAIN_EMAIL,
    ChannelIdentity,
    IdentityKind,
    IdentityType,
    canonical_email,
    normalise,
    phone_e164,
)
from loyalty_identity.domain.member import LinkedIdentity, Member, MemberState, Profile
from loyalty_kit.errors import InvalidArgument

PHONE = IdentityType("phone", IdentityKind.PHONE)
EMAIL = IdentityType("email", IdentityKind.EMAIL)
CARD = IdentityType("store_card", IdentityKind.TOKEN, r"[0-9A-Z]{6,32}")

mainland_mobiles = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)


@given(mainland_mobiles, st.sampled_from(["{n}", "+86{n}", "+86 {a} {b} {c}", "0086{n}", " {n} "]))
def test_every_spelling_of_a_mobile_number_is_one_identity(number: str, spelling: str) -> None:
    written = spelling.format(n=number, a=number[:3], b=number[3:7], c=number[7:])
    try:
        canonical = normalise(PHONE, number, "phone")
    except InvalidArgument:
        return  # a prefix phonenumbers does not (yet) allocate
    assert normalise(PHONE, written, "phone") == canonical
    assert canonical.value == f"+86{number}"


@given(mainland_mobiles)
def test_a_masked_phone_hides_the_middle_digits(number: str) -> None:
    masked = masking.mask_phone(f"+86{number}")
    assert masked == f"+86{number[:3]}****{number[-4:]}"


def test_foreign_numbers_keep_their_country() -> None:
    assert normalise(PHONE, "+852 9123 4567", "phone").value == "+85291234567"
    assert normalise(PHONE, "+1 650-253-0000", "phone").value == "+16502530000"


def parsed_e164(value: str, region: str) -> str | None:
    """What `phonenumbers` makes of a number when it parses it."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def test_mainland_mobiles_read_without_the_parser_read_as_the_parser_reads_them() -> None:
    tails = random.Random(17)
    for prefix in range(1000, 2000):  # every prefix, mobile or not, around the shortcut's edges
        for _ in range(3):
            digits = f"{prefix}{tails.randrange(10**7):07d}"
            spellings = [
                (digits, "CN"),
                (digits, "HK"),
                (f"+86{digits}", "CN"),
                (f"+86{digits}", "HK"),
                (f"+86 {digits}", "CN"),
                (f"+86 {digits}", "US"),
            ]
            for written, region in spellings:
                assert phone_e164(written, region) == parsed_e164(written, region), written


@given(
    st.from_regex(r"\+?(86 ?)?1[0-9]{9,11}", fullmatch=True), st.sampled_from(["CN", "HK", "US"])
)
def test_any_number_reads_as_the_parser_reads_it(written: str, region: str) -> None:
    assert phone_e164(written, region) == parsed_e164(written, region)


def test_a_number_without_country_code_is_read_in_the_default_region() -> None:
    assert normalise(PHONE, "9123 4567", "phone", default_region="HK").value == "+85291234567"
    assert normalise(PHONE, "+86 138 1234 5678", "phone", default_region="HK").value == (
        "+8613812345678"
    )
    with pytest.raises(InvalidArgument):
        normalise(PHONE, "9123 4567", "phone")  # not a mainland number


@pytest.mark.parametrize("bad", ["12345", "phone", "+86 123", "1381234567", "+999 1234567"])
def test_invalid_phones(bad: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        normalise(PHONE, bad, "identities[0].value")
    assert raised.value.field_violations[0].field == "identities[0].value"


def test_emails_are_validated_and_case_folded() -> None:
    assert normalise(EMAIL, "  Wei.Li@Example.COM ", "email").value == "wei.li@example.com"
    for bad in ("wei", "wei@", "@example.com", "wei@@example.com", "wei li@example.com"):
        with pytest.raises(InvalidArgument):
            normalise(EMAIL, bad, "email")


def validated_email(value: str) -> str | None:
    """What `email-validator` makes of an address (lower-cased, as the service keeps it)."""
    try:
        return str(validate_email(value, check_deliverability=False).normalized).lower()
    except EmailNotValidError:
        return None


def test_plain_emails_read_without_the_validator_read_as_the_validator_reads_them() -> None:
    """Around the shortcut's edges: lengths at and past the limits, dots and hyphens in every
    place, special-use and numeric top-level domains, punycode-like labels."""
    chars = random.Random(29)
    locals_ = "abcXYZ019_+-.-"
    tlds = ["com", "cn", "COM", "co", "x", "a1", "xn", "test", "local", "localhost", "arpa"]
    shortcut = 0
    for _ in range(100_000):
        local = "".join(chars.choice(locals_) for _ in range(chars.choice([1, 3, 10, 64, 65])))
        labels = [
            "".join(chars.choice("ab-9Z") for _ in range(chars.choice([1, 2, 4, 63, 64])))
            for _ in range(chars.randint(0, 4))
        ]
        written = f"{local}@{'.'.join([*labels, chars.choice(tlds)])}"
        assert canonical_email(written) == validated_email(written), written
        shortcut += PLAIN_EMAIL.fullmatch(written) is not None
    assert shortcut > 5_000  # the corpus reaches the shortcut, not only the validator


@given(
    st.from_regex(
        r"[a-zA-Z0-9_+.-]{1,70}@([a-zA-Z0-9-]{1,70}\.){1,5}[a-zA-Z0-9-]{1,8}", fullmatch=True
    )
)
def test_any_email_reads_as_the_validator_reads_it(written: str) -> None:
    assert canonical_email(written) == validated_email(written)


def test_long_plain_emails_reach_the_validator_at_the_limits() -> None:
    label = "a" * 63
    domain = ".".join([label] * 3) + "." + "b" * 61 + ".cn"  # 253 characters
    for local in ("w" * 64, "w" * 65, "w"):
        for written in (f"{local}@{domain}", f"{local}@{domain[2:]}", f"{local}@{'a' * 64}.cn"):
            assert canonical_email(written) == validated_email(written), written


def test_tokens_match_their_type_pattern() -> None:
    assert normalise(CARD, "HY2026", "card") == ChannelIdentity("store_card", "HY2026")
    with pytest.raises(InvalidArgument):
        normalise(CARD, "hy-2026", "card")


def test_masks() -> None:
    assert masking.mask_email("wei.li@example.com") == "w***@example.com"
    assert masking.mask_name("张伟") == "张*"
    assert masking.mask_name("Li Wei") == "L* W**"
    assert masking.mask_token("hotel:H000123456") == "hotel:******3456"
    assert masking.mask_token("oX7a") == "****"


def test_profile_rules() -> None:
    Profile(full_name="张伟", birthday=date(1990, 5, 17), preferred_language="zh-CN").validate()
    with pytest.raises(InvalidArgument) as raised:
        Profile(birthday=date(2030, 1, 1), preferred_language="Chinese!").validate(
            today=date(2026, 11, 22)
        )
    assert [v.field for v in raised.value.field_violations] == [
        "profile.birthday",
        "profile.preferred_language",
    ]


def keyring() -> Keyring:
    return Keyring.parse(f"k1:{new_key_text()}", new_key_text())


def test_sealed_values_open_only_for_their_member_and_field() -> None:
    data_key = Keyring.new_data_key()
    sealed = seal(data_key, "+8613812345678", "member-a/identity/phone")
    assert unseal(data_key, sealed, "member-a/identity/phone") == "+8613812345678"
    with pytest.raises(InvalidTag):
        unseal(data_key, sealed, "member-b/identity/phone")  # copied to another member's row
    with pytest.raises(InvalidTag):
        unseal(Keyring.new_data_key(), sealed, "member-a/identity/phone")  # after erasure


def test_data_keys_are_wrapped_per_member_and_survive_rotation() -> None:
    old = keyring()
    data_key = old.new_data_key()
    key_id, wrapped = old.wrap("member-a", data_key)
    assert key_id == "k1"
    with pytest.raises(InvalidTag):
        old.unwrap("member-b", key_id, wrapped)
    rotated = Keyring.parse(
        f"k2:{new_key_text()},k1:{_text(old.master_keys['k1'])}", _text(old.index_key)
    )
    assert rotated.unwrap("member-a", key_id, wrapped) == data_key
    assert rotated.wrap("member-a", data_key)[0] == "k2"


def _text(key: bytes) -> str:
    import base64

    return base64.b64encode(key).decode()


def test_blind_index_is_keyed_and_deterministic() -> None:
    ring = keyring()
    phone = ChannelIdentity("phone", "+8613812345678")
    assert ring.blind_index(phone) == ring.blind_index(ChannelIdentity("phone", "+8613812345678"))
    assert ring.blind_index(phone) != keyring().blind_index(phone)
    assert ring.blind_index(phone) != ring.blind_index(ChannelIdentity("store_card", phone.value))
    # HMAC-SHA256 of "type NUL value" under the index key: the indexes stored stay valid
    stored = hmac.new(ring.index_key, b"phone\x00+8613812345678", hashlib.sha256).digest()
    assert ring.blind_index(phone) == stored


@pytest.mark.parametrize(
    ("keys", "index"),
    [
        ("", new_key_text()),
        ("k1", new_key_text()),
        ("k1:short", new_key_text()),
        ("k1:" + new_key_text(), "x"),
    ],
)
def test_bad_key_configuration_is_refused(keys: str, index: str) -> None:
    with pytest.raises(KeyConfigError):
        Keyring.parse(keys, index)


def test_without_keys_the_service_refuses_to_invent_them_outside_development(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from loyalty_identity.settings import keyring_for
    from loyalty_kit.settings import Settings

    for name in ("KEYS", "BLIND_INDEX_KEY", "DEV_KEYS"):
        monkeypatch.delenv(f"LOYALTY_IDENTITY_{name}", raising=False)
    settings = Settings(data_dir=tmp_path)
    with pytest.raises(ValueError, match="LOYALTY_IDENTITY_KEYS"):
        keyring_for(settings)
    monkeypatch.setenv("LOYALTY_IDENTITY_KEYS", f"k1:{new_key_text()}")
    with pytest.raises(ValueError, match="both"):
        keyring_for(settings)
    monkeypatch.delenv("LOYALTY_IDENTITY_KEYS")
    monkeypatch.setenv("LOYALTY_IDENTITY_DEV_KEYS", "true")
    assert keyring_for(settings).active_key_id == "dev1"


# --- giving identities back (unmerge) ---------------------------------------------------------
def _member(member_id: str, *identities: ChannelIdentity, merged_into: str = "") -> Member:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    return Member(
        member_id=member_id,
        state=MemberState.MERGED if merged_into else MemberState.ACTIVE,
        registered_unit="mall",
        registered_channel="CHANNEL_POS",
        created_at=now,
        updated_at=now,
        merged_into=merged_into,
        identities=[LinkedIdentity(i, now) for i in identities],
    )


OWN = ChannelIdentity("phone", "+8613800138000")
THEIRS = ChannelIdentity("email", "wei@example.com")


def test_a_survivor_gives_back_identities_it_holds_and_keeps_one() -> None:
    survivor = _member("a", OWN, THEIRS)
    survivor.ensure_can_give_back(_member("b", merged_into="a"), [THEIRS])
    with pytest.raises(LastIdentity):
        survivor.ensure_can_give_back(_member("b", merged_into="a"), [THEIRS, OWN])


def test_only_a_member_merged_into_the_survivor_is_restored() -> None:
    survivor = _member("a", OWN, THEIRS)
    for other in (_member("b"), _member("b", merged_into="c")):
        with pytest.raises(NotMergedInto):
            survivor.ensure_can_give_back(other, [THEIRS])


def test_identities_the_survivor_does_not_hold_are_named() -> None:
    survivor = _member("a", OWN, THEIRS)
    stranger = ChannelIdentity("phone", "+8613900139000")
    with pytest.raises(InvalidArgument) as raised:
        survivor.ensure_can_give_back(_member("b", merged_into="a"), [THEIRS, stranger])
    assert [v.field for v in raised.value.field_violations] == ["identities[1]"]
    with pytest.raises(InvalidArgument) as raised:
        survivor.ensure_can_give_back(_member("b", merged_into="a"), [])
    assert [v.field for v in raised.value.field_violations] == ["identities"]


def test_a_survivor_merged_or_erased_since_gives_nothing_back() -> None:
    merged_since = _member("a", OWN, THEIRS, merged_into="z")
    with pytest.raises(MemberMergedError):
        merged_since.ensure_can_give_back(_member("b", merged_into="a"), [THEIRS])
    erased = _member("a", OWN, THEIRS)
    erased.state = MemberState.ERASED
    with pytest.raises(MemberErasedError):
        erased.ensure_can_give_back(_member("b", merged_into="a"), [THEIRS])
