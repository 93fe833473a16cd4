"""Prometheus metrics of one process, on its own registry (tests build many apps).

Under ``onlinematch serve --workers N`` the workers are separate processes behind one port, and
a scrape reaches one of them. There ``PROMETHEUS_MULTIPROC_DIR`` is set (app/cli.py, before any
worker imports prometheus_client): every counter, histogram and gauge is kept in that directory
by pid, and ``exposition`` sums them over the workers, so a scrape gives the service's totals
whichever worker answers. Gauges say how workers combine (``multiprocess_mode``). The bundle
``Info`` cannot be kept there; the answering worker reports its own (all serve the current
bundle within the poller's 2 s).
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("om_http_requests_total", "HTTP requests", ["route", "status"], registry=r)
        self.latency = Histogram(
            "om_http_request_seconds", "HTTP latency", ["route", "status"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.recommendations = Counter(
            "om_recommended_items_total", "Served slots", ["surface", "explored"], registry=r
        )
        self.unknown_candidates = Counter(
            "om_unknown_candidates_total", "Candidates not in the serving bundle", ["surface"], registry=r
        )
        self.catalogue_changes = Counter(
            "om_catalogue_changes_total", "Catalogue changes accepted at the edge", ["kind"], registry=r
        )
        self.live_items = Gauge(
            "om_live_items", "Servable items published since the serving bundle", registry=r, multiprocess_mode="max"
        )
        self.degraded = Counter("om_degraded_responses_total", "Responses served degraded", ["reason"], registry=r)
        self.feedback = Counter("om_feedback_events_total", "Feedback events", ["type", "outcome"], registry=r)
        self.store_errors = Counter("om_store_errors_total", "Statistics store (Redis) errors", ["op"], registry=r)
        self.bus_errors = Counter("om_bus_errors_total", "Event bus (Kafka) errors", ["op"], registry=r)
        self.consumer_batch = Histogram(
            "om_consumer_batch_events", "Events per consumer batch", buckets=(1, 10, 100, 1000, 5000), registry=r
        )
        self.consumer_apply = Histogram(
            "om_consumer_apply_seconds", "Consumer batch apply time", buckets=LATENCY_BUCKETS, registry=r
        )
        self.freshness = Histogram(
            "om_feedback_freshness_seconds",
            "Event time to applied in the store",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=r,
        )
        # Decision records the producer could not send (queue full or broker errors): their
        # feedback is credited live but not by `onlinematch rebuild` (streaming/rebuild.py).
        self.decisions_dropped = Gauge(
            "om_decision_log_dropped", "Decision records dropped since the service started (all its workers)",
            registry=r, multiprocess_mode="sum",
        )  # fmt: skip
        self.consumer_lag = Gauge(
            "om_consumer_lag_records", "Records behind per assigned partition, as this member sees it", ["partition"],
            registry=r,
        )  # fmt: skip
        # Consumer processes (`onlinematch consume`, their own /metrics port):
        self.consumer_batches = Counter("om_consumer_batches_total", "Batches applied and committed", registry=r)
        self.consumer_errors = Counter(
            "om_consumer_errors_total", "Batches retried after a store or broker error", ["error"], registry=r
        )
        self.consumer_last_batch = Gauge(
            "om_consumer_last_batch_timestamp_seconds", "When this member last committed a batch", registry=r
        )
        # From the broker (end offset minus the group's committed offset), measured by every live
        # member: it keeps growing while the group is dead or re-joining, unlike a self-report.
        self.group_lag = Gauge(
            "om_consumer_group_lag_records", "Feedback records the group has not committed, per partition",
            ["partition"], registry=r,
        )  # fmt: skip
        self.group_lag_measured = Gauge(
            "om_consumer_group_lag_timestamp_seconds", "When the group lag was last read from the broker", registry=r
        )
        self.bundle = Info("om_bundle", "Serving bundle", registry=r)
        self.bundle_age = Gauge(
            "om_bundle_created_timestamp_seconds", "Serving bundle creation time", registry=r, multiprocess_mode="max"
        )

    def exposition(self) -> tuple[bytes, str]:
        """The text a scrape gets, and its content type: this process's metrics, or with
        ``PROMETHEUS_MULTIPROC_DIR`` every worker's summed, plus this worker's bundle ``Info``."""
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        merged = CollectorRegistry()
        MultiProcessCollector(merged)  # type: ignore[no-untyped-call]  # prometheus_client leaves it untyped
        local = CollectorRegistry()
        local.register(self.bundle)
        return generate_latest(merged) + generate_latest(local), CONTENT_TYPE_LATEST
