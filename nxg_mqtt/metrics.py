"""Prometheus metrics: one registry per process, read at scrape time from the counters the code
already keeps (broker `stats`, ingest and command `Counters`, live connections), so the hot path
pays no prometheus-client call. Components add a *source* (a function yielding metric families)
when they start; `GET /metrics` renders `Metrics.render()`.

The few counters kept only for metrics are plain: `ChannelCounts` (messages by channel, one dict
increment per message) and `Buckets` (a histogram as a list of ints, observed once per ingest
batch); they become Prometheus families at scrape time (`channel_counter`, `histogram`).
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from nxg_mqtt.topics import PREFIX, parse_device_topic

Family = CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily
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


# ---- plain counters for the hot path ------------------------------------------------------------

OTHER = "other"  # a topic outside the nxg/… vocabulary
PAIRING = "pair"  # nxg/pair/{C}[/req]
_TOPIC_LIMIT = 20_000


def channel_label(topic: str) -> str:
    """The channel of `topic` as a metric label: a `topics.Channel` value, `pair`, or `other`
    (a bounded set whatever clients send)."""
    parsed = parse_device_topic(topic)
    if parsed is not None:
        return parsed.channel.value
    return PAIRING if topic.startswith(PREFIX + "/pair/") else OTHER


class ChannelCounts:
    """Messages by channel. `add` (called for every PUBLISH) is one dict increment keyed by the
    topic as given; topics are folded into channel labels at scrape time (`totals`), or when the
    per-topic table reaches its bound (pairing topics carry random client ids)."""

    __slots__ = ("_by_topic", "_totals")

    def __init__(self) -> None:
        self._by_topic: dict[str, int] = {}
        self._totals: dict[str, int] = {}

    def add(self, topic: str, n: int = 1) -> None:
        by_topic = self._by_topic
        count = by_topic.get(topic)
        if count is None:
            if len(by_topic) >= _TOPIC_LIMIT:
                self._fold()
            by_topic[topic] = n
        else:
            by_topic[topic] = count + n

    def _fold(self) -> None:
        totals = self._totals
        for topic, count in self._by_topic.items():
            label = channel_label(topic)
            totals[label] = totals.get(label, 0) + count
        self._by_topic.clear()

    def totals(self) -> dict[str, int]:
        """Messages so far by channel label."""
        self._fold()
        return dict(self._totals)


class Buckets:
    """A histogram as plain ints: `observe` is a bisect and two additions."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last: above every bound (+Inf only)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


BATCH_ROWS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000)
WRITE_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def histogram(name: str, text: str, buckets: Buckets) -> HistogramMetricFamily:
    cumulative: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip((*buckets.bounds, float("inf")), buckets.counts, strict=True):
        running += count
        cumulative.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
    return HistogramMetricFamily(name, text, buckets=cumulative, sum_value=buckets.sum)


def channel_counter(name: str, text: str, counts: ChannelCounts) -> CounterMetricFamily:
    return counter(name, text, "channel", counts.totals())


class IngestCounts(Protocol):
    stored: int
    batch_rows: Buckets
    write_seconds: Buckets


def ingest_families(ingest: IngestCounts) -> list[Family]:
    """History rows written and, per committed batch, its size and write time."""
    return [
        total("nxg_history_rows_written", "History rows committed to the database", ingest.stored),
        histogram("nxg_ingest_batch_rows", "Rows per committed history batch", ingest.batch_rows),
        histogram("nxg_ingest_write_seconds", "Time to write and commit one history batch", ingest.write_seconds),
    ]
