"""The scenario registry.

A scenario is an async function taking the run's `BenchContext` and returning a `Measurement`.
It registers itself with `@scenario("name", ceiling="raw-name")`; the harness imports every
module of `bench.scenarios`, so adding a file there is all it takes to add scenarios.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.context import BenchContext


@dataclass
class Measurement:
    """What one scenario measured: `count` operations of `unit` in `seconds`."""

    count: int
    seconds: float
    concurrency: int
    unit: str = "ops"
    latencies_ms: list[float] | None = None  # one per operation, where that applies
    extra: dict[str, Any] = field(default_factory=dict)  # anything worth keeping with the numbers
    # Percentiles measured elsewhere (wrk's), where there are no latencies here
    p50_ms: float | None = None
    p99_ms: float | None = None

    @property
    def throughput(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0


ScenarioFn = Callable[["BenchContext"], Awaitable[Measurement]]


@dataclass(frozen=True)
class Scenario:
    name: str
    run: ScenarioFn
    ceiling: str | None  # the raw scenario this one is compared against
    description: str
    explicit: bool = False  # run only when named (--only, --deployed), not by default


SCENARIOS: dict[str, Scenario] = {}


def scenario(
    name: str, *, ceiling: str | None = None, description: str = "", explicit: bool = False
) -> Callable[[ScenarioFn], ScenarioFn]:
    """Register an async `fn(ctx) -> Measurement` under `name` (description: its docstring).
    `explicit`: only when named, never in a run of every scenario."""

    def register(fn: ScenarioFn) -> ScenarioFn:
        if name in SCENARIOS:
            raise ValueError(f"scenario {name!r} is registered twice")
        text = description or (inspect.getdoc(fn) or "").split("\n\n", 1)[0].replace("\n", " ")
        SCENARIOS[name] = Scenario(
            name=name, run=fn, ceiling=ceiling, description=text, explicit=explicit
        )
        return fn

    return register


def plan(names: list[str] | None) -> list[Scenario]:
    """The scenarios to run for `names` (all but the explicit ones when None), each ceiling just
    before its first user.

    Otherwise in registration order (module by module, alphabetically), so a ceiling and the
    scenarios compared with it run close together in time.
    """
    unknown = [n for n in names or () if n not in SCENARIOS]
    if unknown:
        raise KeyError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    ordered: list[Scenario] = []
    for name in SCENARIOS:
        if names and name not in names:
            continue
        if not names and SCENARIOS[name].explicit:
            continue
        ceiling = SCENARIOS[name].ceiling
        if ceiling is not None:
            if ceiling not in SCENARIOS:
                raise KeyError(f"scenario {name!r} names an unknown ceiling {ceiling!r}")
            if SCENARIOS[ceiling] not in ordered:
                ordered.append(SCENARIOS[ceiling])
        if SCENARIOS[name] not in ordered:
            ordered.append(SCENARIOS[name])
    return ordered
