"""Reading a service's /metrics as Prometheus would: over HTTP, in the text format."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from loyalty_kit.server import RunningService
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

# What a family's samples add to its name, by the family's type.
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("_count", "_sum"),
}


@dataclass(frozen=True)
class Scrape:
    text: str
    samples: tuple[Sample, ...]
    families: dict[str, str]  # name -> type, declared even while it has no samples

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples named `name` whose labels include `labels` (0 if none)."""
        return sum(
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def names(self) -> set[str]:
        return {s.name for s in self.samples}

    def exported(self) -> set[str]:
        """Every series name the scrape declares, sampled yet or not."""
        return {
            name + suffix
            for name, kind in self.families.items()
            for suffix in ("", *SUFFIXES.get(kind, ()))
        }

    def label_values(self) -> set[str]:
        return {value for s in self.samples for value in s.labels.values()}


async def scrape(service: RunningService) -> Scrape:
    """GET /metrics of a running service (async: the scrape asks the service's own loop)."""
    port = service.metrics_port
    assert port is not None, f"{service.spec.name} serves no /metrics"
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    families = list(text_string_to_metric_families(answer.text))
    samples = tuple(sample for family in families for sample in family.samples)
    return Scrape(answer.text, samples, {f.name: f.type for f in families})


async def scraped_until(
    service: RunningService, holds: Callable[[Scrape], bool], timeout: float = 15.0
) -> Scrape:
    """Scrape until `holds` (work the service does after answering: events, consumers)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await scrape(service)
        if holds(found) or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.1)


def moved(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)
