"""Prometheus metrics: one registry per process, read at scrape time from the counters the code
already keeps (broker `stats`, ingest and command `Counters`, live connections), so the hot path
pays nothing for them. Components add a *source* (a function yielding metric families) when they
start; `GET /metrics` renders `Metrics.render()`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

Family = CounterMetricFamily | GaugeMetricFamily
Source = Callable[[], Iterable[Family]]
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LAG_PROBE_S = 0.5


class _Sources(Collector):
    def __init__(self) -> None:
        self.sources: list[Source] = []

    def collect(self) -> Iterator[Family]:
        for source in list(self.sources):
            yield from source()


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(namespace="nxg", registry=self.registry)  # RSS, CPU seconds, open fds
        self._sources = _Sources()
        self.registry.register(self._sources)
        self.loop_lag = Histogram(
            "nxg_event_loop_lag_seconds",
            "How late the event loop ran a timer (probed every 0.5 s)",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )

    def add_source(self, source: Source) -> Callable[[], None]:
        """Register `source`; returns the function that removes it (at the component's stop)."""
        self._sources.sources.append(source)
        return lambda: self._sources.sources.remove(source)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def probe_loop_lag(self) -> None:
        """Runs until cancelled: the event loop's lag, as a histogram."""
        while True:
            start = time.monotonic()
            await asyncio.sleep(LAG_PROBE_S)
            self.loop_lag.observe(max(0.0, time.monotonic() - start - LAG_PROBE_S))


def counter(name: str, text: str, label: str, values: Mapping[str, int]) -> CounterMetricFamily:
    """A counter family `name` with one sample per key of `values` (labelled `label`)."""
    family = CounterMetricFamily(name, text, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def total(name: str, text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, text, value=value)


def gauge(name: str, text: str, labels: list[str], values: Mapping[tuple[str, ...], float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, text, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(list(key), value)
    return family
