"""A service's domain events as its protobuf contract's messages, by one rule for every service.

A domain event is a frozen dataclass named as its message (`PointsEarned` becomes
`loyalty.points.v1.PointsEarned`). Each of its fields fills the contract field of the same name,
converted by what that field is:

- `google.protobuf.Timestamp`: a datetime, through `loyalty_kit.timestamps.timestamp`;
- `loyalty.common.v1.Money`: the kernel's `Amount`, in its currency's minor digits (a bare
  Decimal has no currency, so it is refused);
- any other message: a nested dataclass, field by field by the same rule (or that message);
- repeated: a tuple or list, item by item;
- a map: a mapping, value by value (its keys as they are);
- an enum: its value's name (`"CHANNEL_POS"`; `""` is the unspecified 0);
- a domain `Enum` member goes out by its contract name, the enum's name in UPPER_SNAKE then the
  member's (`ConsentPurpose.PARTNER_SHARING` -> `"CONSENT_PURPOSE_PARTNER_SHARING"`, the buf
  style of enum values), as a string or as the contract enum's value;
- scalars as they are (protobuf refuses a value of the wrong type);
- None: the field is left unset.

Where an event differs from its message, its `Rules` say so by name: a field the contract calls
otherwise or carries in several fields (`renames`), a value to change first (`convert`), a field
deliberately left out (`omit`). Nothing else is guessed: a domain field with no contract field,
a contract field no domain field fills, or a rule naming a field neither has raises
`ContractMismatch` the first time an event of that class is mapped (and `EventContract.check`
does so with no event at hand, as the services' tests do for every class), so a field added on
one side and forgotten on the other is never published dropped or silently defaulted.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from functools import lru_cache
from types import ModuleType
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.protobuf.timestamp_pb2 import Timestamp
from loyalty.common.v1 import money_pb2

from loyalty_kit.kernel.money import Amount
from loyalty_kit.timestamps import timestamp

_WORD_START = re.compile(r"(?<!^)(?=[A-Z])")

Convert = Callable[[Any], Any]
Renames = Mapping[str, str | tuple[str, ...]]


class ContractMismatch(TypeError):
    """An event and its contract message do not match, or a value cannot be carried."""


@dataclass(frozen=True, eq=False)
class Rules:
    """Where one event differs from its message. `renames`: domain field -> the contract field
    (or fields, a tuple, which its `convert` then returns one value each for). `convert`: domain
    field -> what its value becomes before the rule by type applies. `omit`: domain fields the
    contract does not carry, and contract fields this event leaves at their default."""

    renames: Renames = field(default_factory=dict)
    convert: Mapping[str, Convert] = field(default_factory=dict)
    omit: Collection[str] = ()


_NO_RULES = Rules()


def message_of(
    event: object,
    module: ModuleType,
    *,
    renames: Renames | None = None,
    convert: Mapping[str, Convert] | None = None,
    omit: Collection[str] = (),
) -> Message:
    """The message of `module` (an `events_pb2`) named as `event`'s class, filled from it."""
    kind: type = type(event)
    return _plan(
        kind,
        _message_class(module, kind).DESCRIPTOR,
        tuple(sorted((renames or {}).items(), key=_first)),
        tuple(sorted((convert or {}).items(), key=_first)),
        frozenset(omit),
    ).build(event)


class EventContract:
    """One service's events as its contract: `message(event)` for the outbox, with the rules of
    the events that differ from their messages (each class's plan is made once, at first use)."""

    def __init__(self, module: ModuleType, rules: Mapping[type, Rules] | None = None) -> None:
        self.module = module
        self.rules = dict(rules or {})
        self._plans: dict[type, _Plan] = {}

    def message(self, event: object) -> Message:
        kind = type(event)
        plan = self._plans.get(kind) or self._plan(kind)
        return plan.build(event)

    def check(self, kind: type) -> None:
        """Raise `ContractMismatch` unless events of `kind` map to a message (no event needed)."""
        self._plan(kind)

    def _plan(self, kind: type) -> _Plan:
        rules = self.rules.get(kind, _NO_RULES)
        plan = _plan(
            kind,
            _message_class(self.module, kind).DESCRIPTOR,
            tuple(sorted(rules.renames.items(), key=_first)),
            tuple(sorted(rules.convert.items(), key=_first)),
            frozenset(rules.omit),
        )
        self._plans[kind] = plan
        return plan


def _first(item: tuple[str, object]) -> str:
    return item[0]


def _message_class(module: ModuleType, kind: type) -> type[Message]:
    found = getattr(module, kind.__name__, None)
    if not (isinstance(found, type) and issubclass(found, Message)):
        raise ContractMismatch(f"{module.__name__} has no message {kind.__name__}")
    return found


@dataclass(frozen=True)
class _Step:
    name: str  # the domain field
    targets: tuple[tuple[str, Convert], ...]  # each contract field and how a value becomes it
    convert: Convert | None  # the rule's conversion, first


@dataclass(frozen=True)
class _Plan:
    kind: type
    message_class: type[Message]
    steps: tuple[_Step, ...]

    def build(self, event: object) -> Message:
        """The message, made in one call (the fast path: one event of many in a batch)."""
        values: dict[str, Any] = {}
        for step in self.steps:
            value = getattr(event, step.name)
            if step.convert is not None:
                value = step.convert(value)
            if len(step.targets) == 1:
                parts = (value,)
            elif isinstance(value, tuple) and len(value) == len(step.targets):
                parts = value
            else:
                names = [name for name, _ in step.targets]
                raise ContractMismatch(
                    f"{self.kind.__name__}.{step.name}: its conversion must give one value for"
                    f" each of {names}, not {value!r}"
                )
            for (target, to_contract), part in zip(step.targets, parts, strict=True):
                if part is not None:  # None: left unset
                    try:
                        values[target] = to_contract(part)
                    except (TypeError, ValueError) as error:
                        raise self._mismatch(step.name, target, error) from error
        try:
            return self.message_class(**values)
        except (TypeError, ValueError):
            self._blame(values)
            raise

    def _blame(self, values: Mapping[str, Any]) -> None:
        """Which field protobuf refused (the one-call constructor does not say)."""
        fields = {target: step.name for step in self.steps for target, _ in step.targets}
        for target, value in values.items():
            try:
                self.message_class(**{target: value})
            except (TypeError, ValueError) as error:
                raise self._mismatch(fields[target], target, error) from error

    def _mismatch(self, name: str, target: str, error: Exception) -> ContractMismatch:
        where = f"{self.message_class.DESCRIPTOR.full_name}.{target}"
        return ContractMismatch(f"{self.kind.__name__}.{name} -> {where}: {error}")


@lru_cache(maxsize=1024)  # one entry per event class and its rules: the plans are built once
def _plan(
    kind: type,
    descriptor: Descriptor,
    renames: tuple[tuple[str, str | tuple[str, ...]], ...],
    convert: tuple[tuple[str, Convert], ...],
    omit: frozenset[str],
) -> _Plan:
    if not (isinstance(kind, type) and dataclasses.is_dataclass(kind)):
        raise ContractMismatch(f"{kind.__name__} is not a domain event (a dataclass)")
    contract: Mapping[str, FieldDescriptor] = descriptor.fields_by_name
    names = [f.name for f in dataclasses.fields(kind)]
    renamed, converted = dict(renames), dict(convert)
    problems = [
        f"a rule names {name!r}, a field of neither"
        for name in sorted({*renamed, *converted, *omit})
        if name not in names and not (name in omit and name in contract)
    ]
    filled: dict[str, str] = {}  # contract field -> the domain field that fills it
    steps: list[_Step] = []
    for name in names:
        if name in omit:
            continue
        target = renamed.get(name, name)
        targets = (target,) if isinstance(target, str) else tuple(target)
        if len(targets) > 1 and name not in converted:
            problems.append(f"{name!r} goes to several fields, so it needs a conversion")
        for one in targets:
            if one not in contract:
                problems.append(f"{name!r} has no contract field {one!r} (rename or omit it)")
            elif one in filled:
                problems.append(f"{one!r} is filled by both {filled[one]!r} and {name!r}")
            else:
                filled[one] = name
        found = tuple((t, _converter(contract[t])) for t in targets if t in contract)
        steps.append(_Step(name, found, converted.get(name)))
    problems += [
        f"no field fills {f.name!r} (add it to the event, or omit it)"
        for f in descriptor.fields
        if f.name not in filled and f.name not in omit
    ]
    if problems:
        raise ContractMismatch(f"{kind.__name__} -> {descriptor.full_name}: " + "; ".join(problems))
    return _Plan(kind, GetMessageClass(descriptor), tuple(steps))


def _converter(target: FieldDescriptor) -> Convert:
    """How a domain value becomes what the constructor takes for `target`, chosen once by the
    field's type."""
    if target.message_type is not None and target.message_type.GetOptions().map_entry:
        value = _one_converter(target.message_type.fields_by_name["value"])

        def entries(values: Any) -> dict[Any, Any]:
            if not isinstance(values, Mapping):
                raise TypeError(f"a mapping is needed, not {type(values).__name__}")
            return {key: value(item) for key, item in values.items()}

        return entries
    one = _one_converter(target)
    if not target.is_repeated:
        return one

    def each(values: Any) -> list[Any]:
        if not isinstance(values, (tuple, list)):
            raise TypeError(f"a tuple or list is needed, not {type(values).__name__}")
        return [one(value) for value in values]

    return each


def _one_converter(target: FieldDescriptor) -> Convert:
    if target.message_type is not None:
        return _nested(target.message_type)
    if target.enum_type is not None:
        return _enum(target.enum_type)
    return _scalar


# The contract's own types, and what the domain holds for them.
_WELL_KNOWN: dict[str, tuple[type, Convert]] = {
    Timestamp.DESCRIPTOR.full_name: (datetime, timestamp),
    money_pb2.Money.DESCRIPTOR.full_name: (Amount, Amount.message),
}


def _nested(descriptor: Descriptor) -> Convert:
    name = descriptor.full_name
    well_known = _WELL_KNOWN.get(name)
    plans: dict[type, _Plan] = {}  # a repeated field's values are mostly of one class

    def message(value: Any) -> Any:
        plan = plans.get(type(value))
        if plan is not None:
            return plan.build(value)
        if well_known is not None and isinstance(value, well_known[0]):
            return well_known[1](value)
        if isinstance(value, Message) and value.DESCRIPTOR.full_name == name:
            return value
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            plan = plans[type(value)] = _plan(type(value), descriptor, (), (), frozenset())
            return plan.build(value)
        raise TypeError(f"{type(value).__name__} cannot become a {name}")

    return message


def _enum(enum_type: EnumDescriptor) -> Convert:
    def number(value: Any) -> Any:
        value = _scalar(value)
        if not isinstance(value, str):
            return value
        if not value:
            return 0  # the enum's unspecified value
        known = enum_type.values_by_name.get(value)
        if known is None:
            raise ValueError(f"{value!r} is not a value of {enum_type.full_name}")
        return known.number

    return number


def _scalar(value: Any) -> Any:
    """A scalar as it is (protobuf refuses a wrong type), a domain enum by its contract name."""
    if isinstance(value, Enum):
        return f"{_WORD_START.sub('_', type(value).__name__).upper()}_{value.name}"
    return value
