"""The kit's mapping of domain events to contract messages: fields by name, converted by the
contract field's type, renamed or converted only where a rule says, and a mismatch on either
side refused loudly rather than published dropped or defaulted."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from loyalty.common.v1.channel_pb2 import CHANNEL_POS, CHANNEL_UNSPECIFIED
from loyalty.common.v1.money_pb2 import Money
from loyalty.identity.v1 import events_pb2 as identity_pb
from loyalty.points.v1 import events_pb2 as points_pb
from loyalty.points.v1 import programme_pb2
from loyalty_identity.domain.events import ConsentChanged, ProfileChanged
from loyalty_identity.domain.member import ConsentPurpose
from loyalty_kit.contract import ContractMismatch, EventContract, Rules, message_of
from loyalty_kit.money import Amount
from loyalty_points.domain.events import PointsReversed

MOMENT = datetime(2026, 3, 2, 10, 0, 0, 250_000, tzinfo=UTC)
STAMP = Timestamp(seconds=1_772_445_600, nanos=250_000_000)


# Stand-ins, named as the contract messages they become, where no domain event has the shape a
# test needs (the rest are the services' own events).
@dataclass(frozen=True)
class PointsExpired:
    member_id: str
    posting_id: str
    points: int
    occurred_at: datetime | None


@dataclass(frozen=True)
class PointsRedeemed:  # the contract's `unit` missing
    member_id: str
    posting_id: str
    points: int
    occurred_at: datetime


@dataclass(frozen=True)
class ProgrammePublished:
    version: int
    units: object
    effective_from: datetime
    base_currency_code: str = "CNY"
    point_value: str = "0.01"


@dataclass(frozen=True)
class ActivityRecorded:  # only the attributes of loyalty.points.v1.ActivityRecorded
    attributes: dict[str, str]


@dataclass(frozen=True)
class Cash:  # shaped as loyalty.common.v1.Money, field for field
    currency_code: str
    amount: str


@dataclass(frozen=True)
class Unit:  # shaped as loyalty.points.v1.UnitRule
    unit: str
    multiplier: str
    pending_days: int
    legacy_points_per_point: str = ""


@dataclass(frozen=True)
class Programme:
    version: int
    units: tuple[Unit, ...]
    expiry: None  # left unset


class Channel(Enum):
    POS = "pos"


@dataclass(frozen=True)
class MemberRegistered:
    member_id: str
    unit: str
    channel: str | Channel
    registered_at: datetime


REVERSED_RULES = Rules(renames={"base_spend": "qualifying_spend_base"})


def reversed_of(base_spend: object) -> PointsReversed:
    return PointsReversed("m", "p2", "p1", "shop", "o1", base_spend, -5, MOMENT)  # type: ignore[arg-type]


def test_fields_go_by_name_and_a_datetime_becomes_a_timestamp() -> None:
    message = message_of(PointsExpired("m", "p", -3, MOMENT), points_pb)

    assert message == points_pb.PointsExpired(
        member_id="m", posting_id="p", points=-3, occurred_at=STAMP
    )


def test_none_leaves_the_field_unset() -> None:
    message = message_of(PointsExpired("m", "p", -3, None), points_pb)

    assert not message.HasField("occurred_at")


def test_a_renamed_field_goes_to_its_contract_name_and_an_amount_becomes_money() -> None:
    message = message_of(
        reversed_of(Amount("KWD", Decimal("1.5"))), points_pb, renames=REVERSED_RULES.renames
    )

    assert isinstance(message, points_pb.PointsReversed)
    assert message.qualifying_spend_base == Money(currency_code="KWD", amount="1.500")
    assert (message.posting_id, message.points) == ("p2", -5)


def test_a_bare_decimal_is_not_money() -> None:
    with pytest.raises(ContractMismatch, match=r"base_spend.*Decimal cannot become"):
        message_of(reversed_of(Decimal("1.5")), points_pb, renames=REVERSED_RULES.renames)


def test_a_domain_field_with_no_contract_field_fails_loudly_at_first_use() -> None:
    with pytest.raises(ContractMismatch, match="'base_spend' has no contract field"):
        message_of(reversed_of(Amount("CNY", Decimal(1))), points_pb)


def test_a_contract_field_no_domain_field_fills_fails_loudly() -> None:
    with pytest.raises(ContractMismatch, match="no field fills 'unit'"):
        message_of(PointsRedeemed("m", "p", -1, MOMENT), points_pb)


def test_a_rule_naming_a_field_of_neither_side_fails_loudly() -> None:
    with pytest.raises(ContractMismatch, match="'spend', a field of neither"):
        message_of(PointsExpired("m", "p", 1, MOMENT), points_pb, renames={"spend": "points"})


def test_a_tuple_becomes_a_repeated_field_and_a_string_is_not_a_tuple() -> None:
    message = message_of(ProgrammePublished(3, ("shop", "web"), MOMENT), points_pb)

    assert isinstance(message, points_pb.ProgrammePublished)
    assert list(message.units) == ["shop", "web"]
    with pytest.raises(ContractMismatch, match="tuple or list is needed"):
        message_of(ProgrammePublished(3, "shop", MOMENT), points_pb)


def test_a_mapping_becomes_a_map_field_and_a_list_is_not_a_mapping() -> None:
    left_out = {"member_id", "unit", "activity_type", "activity_id", "occurred_at", "points"}
    left_out |= {"funding_unit", "posting_id", "limit_reason"}

    message = message_of(ActivityRecorded({"survey_id": "s-1"}), points_pb, omit=left_out)

    assert isinstance(message, points_pb.ActivityRecorded)
    assert dict(message.attributes) == {"survey_id": "s-1"}
    with pytest.raises(ContractMismatch, match="a mapping is needed"):
        message_of(ActivityRecorded([("survey_id", "s-1")]), points_pb, omit=left_out)  # type: ignore[arg-type]


def test_a_wrong_scalar_type_names_the_field() -> None:
    with pytest.raises(ContractMismatch, match=r"PointsExpired.points -> .*PointsExpired.points"):
        message_of(PointsExpired("m", "p", "many", MOMENT), points_pb)  # type: ignore[arg-type]


def test_nested_dataclasses_become_nested_messages_and_contract_fields_can_be_omitted() -> None:
    programme = Programme(4, (Unit("shop", "1.5", 14, "10"), Unit("web", "1", 0)), None)
    left_out = {"effective_from", "currencies", "tiers", "campaigns", "time_zone"}
    left_out |= {"base_currency_code", "transfer", "partners", "referral", "activities"}

    message = message_of(programme, programme_pb2, omit=left_out)

    assert message == programme_pb2.Programme(
        version=4,
        units=[
            programme_pb2.UnitRule(
                unit="shop", multiplier="1.5", pending_days=14, legacy_points_per_point="10"
            ),
            programme_pb2.UnitRule(unit="web", multiplier="1"),
        ],
    )
    cash = message_of(reversed_of(Cash("CNY", "7.00")), points_pb, renames=REVERSED_RULES.renames)
    assert isinstance(cash, points_pb.PointsReversed)
    assert cash.qualifying_spend_base == Money(currency_code="CNY", amount="7.00")


def test_a_name_becomes_its_enum_value_and_empty_is_unspecified() -> None:
    def channel_of(channel: str | Channel) -> int:
        event = MemberRegistered("m", "shop", channel, MOMENT)
        message = message_of(event, identity_pb)
        assert isinstance(message, identity_pb.MemberRegistered)
        return message.channel

    assert channel_of("CHANNEL_POS") == CHANNEL_POS
    assert channel_of("") == CHANNEL_UNSPECIFIED
    assert channel_of(Channel.POS) == CHANNEL_POS  # a domain enum by its contract name
    with pytest.raises(ContractMismatch, match="'CHANNEL_KIOSK' is not a value"):
        channel_of("CHANNEL_KIOSK")


def test_a_domain_enum_goes_out_as_its_contract_name_in_a_string_field() -> None:
    event = ConsentChanged("m", ConsentPurpose.PARTNER_SHARING, True, "app", MOMENT)

    message = message_of(event, identity_pb)

    assert isinstance(message, identity_pb.ConsentChanged)
    assert message.purpose == "CONSENT_PURPOSE_PARTNER_SHARING"


def test_a_field_carried_in_several_needs_a_conversion_giving_each() -> None:
    event = ProfileChanged("m", ("birthday",), date(1990, 7, 14), MOMENT)
    split = {"birthday": ("birthday_month", "birthday_day")}

    message = message_of(
        event, identity_pb, renames=split, convert={"birthday": lambda d: (d.month, d.day)}
    )

    assert isinstance(message, identity_pb.ProfileChanged)
    assert (message.birthday_month, message.birthday_day) == (7, 14)
    with pytest.raises(ContractMismatch, match="needs a conversion"):
        message_of(event, identity_pb, renames=split)
    with pytest.raises(ContractMismatch, match="one value for each"):
        message_of(event, identity_pb, renames=split, convert={"birthday": lambda d: d.month})


def test_an_event_needs_a_dataclass_and_a_message_of_its_name() -> None:
    with pytest.raises(ContractMismatch, match="has no message Unit"):
        message_of(Unit("shop", "1", 0), points_pb)
    with pytest.raises(ContractMismatch, match="is not a domain event"):
        message_of(points_pb.PointsExpired(), points_pb)


def test_a_contract_checks_an_event_class_with_no_event_at_hand() -> None:
    contract = EventContract(points_pb, {PointsReversed: REVERSED_RULES})

    contract.check(PointsReversed)
    with pytest.raises(ContractMismatch, match="'base_spend' has no contract field"):
        EventContract(points_pb).check(PointsReversed)
