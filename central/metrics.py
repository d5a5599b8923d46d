"""Prometheus metrics: hops and trains by state (read from the database at scrape time, so
every central process reports the same totals), dispatch latency and request latency."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from central.routing import HopStatus, TrainStatus

Counts = Callable[[], tuple[dict[str, int], dict[str, int]]]


class _StateCollector(Collector):
    def __init__(self, counts: Counts) -> None:
        self.counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        hops, trains = self.counts()
        hop_family = GaugeMetricFamily("pht_hops", "Hops by state", labels=["state"])
        for state in HopStatus:
            hop_family.add_metric([state.value], hops.get(state.value, 0))
        train_family = GaugeMetricFamily("pht_trains", "Trains by state", labels=["state"])
        for status in TrainStatus:
            train_family.add_metric([status.value], trains.get(status.value, 0))
        yield hop_family
        yield train_family


class Metrics:
    def __init__(self, counts: Counts) -> None:
        self.registry = CollectorRegistry()
        self.dispatch_latency = Histogram(
            "pht_dispatch_latency_seconds",
            "From a hop being queued to a station claiming it",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=self.registry,
        )
        self.request_latency = Histogram(
            "pht_http_request_seconds",
            "HTTP request handling time",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.leases_expired = Counter(
            "pht_leases_expired", "Hop leases that ran out", registry=self.registry
        )
        # a long poll woken by a ring checks the database once more: counting the wakes
        # shows whether a hop queued for one station wakes only that station's polls
        self.long_poll_wakes = Counter(
            "pht_long_poll_wakes",
            "Long polls woken by a hop queued for their station (each costs one claim query)",
            registry=self.registry,
        )
        self.registry.register(_StateCollector(counts))

    def render(self) -> bytes:
        return generate_latest(self.registry)
