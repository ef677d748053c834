"""Prometheus metrics shared by every process.

The HTTP services serve them at /metrics on their own port (kezek.web); a
relay, consumer process or worker serves them on `metrics_port`
(KEZEK_METRICS_PORT, `serve`), and a worker serves the Temporal SDK's own
metrics on `temporal_metrics_port` (workflows/worker.py). Each process
exports what it does: the relays the outboxes they publish, the consumers
their lag, the notifications dispatcher its queue, the public projector its
parked events, the allocator its runs. docs/operations.md says what to alert
on."""
from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from kezek.logging import get_logger

log = get_logger(__name__)

REQUESTS = Counter("kezek_http_requests_total", "HTTP requests", ["service", "method", "route", "status"])
LATENCY = Histogram("kezek_http_request_seconds", "HTTP request latency", ["service", "route"])

# The outboxes, as their relays see them (every relay of an outbox reports the same numbers).
EVENTS_RELAYED = Counter("kezek_events_relayed_total", "Outbox rows published to Kafka", ["source"])
RELAY_ERRORS = Counter("kezek_relay_errors_total", "Failed relay rounds", ["source"])
OUTBOX_UNSENT = Gauge("kezek_outbox_unsent", "Outbox rows not yet published to Kafka", ["source"])
OUTBOX_OLDEST = Gauge("kezek_outbox_oldest_unsent_seconds", "Age of the oldest unpublished outbox row", ["source"])

# The consumers: what each replica has handled, and what waits on its partitions.
EVENTS_CONSUMED = Counter("kezek_events_consumed_total", "Events handled by consumers", ["consumer", "type"])
CONSUMER_LAG = Gauge("kezek_consumer_lag", "Events on this replica's partitions not yet handled "
                     "(sum over replicas: the group's lag)", ["consumer", "topic"])
CONSUMER_ERRORS = Counter("kezek_consumer_errors_total", "Polls that failed (the event is tried again)",
                          ["consumer"])

# Events waiting for another one to arrive first (topics are not ordered among themselves).
PARKED = Gauge("kezek_parked_events", "Events parked until the fact they depend on arrives", ["service"])
PARKED_OLDEST = Gauge("kezek_parked_oldest_seconds", "Age of the oldest parked event", ["service"])

# Notifications.
NOTIFICATIONS_WAITING = Gauge("kezek_notifications_waiting", "Messages queued or being sent", ["channel"])
NOTIFICATIONS_DEAD = Gauge("kezek_notifications_dead_letters", "Messages given up (dead letters)")

# Allocation.
ALLOCATION_SECONDS = Histogram("kezek_allocation_run_seconds", "Time of one allocation run, to its commit",
                               buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
ALLOCATION_REFERRALS = Counter("kezek_allocation_referrals_total", "Referrals issued by allocation runs")
CALENDAR_TRIGGER_ERRORS = Counter("kezek_calendar_trigger_errors_total",
                                  "Calendar triggers of the allocator loop that failed (the run went on)", ["trigger"])


def serve(port: int, host: str = "127.0.0.1") -> int | None:
    """Serves this process's metrics at http://host:port/metrics; 0: none.
    A port that is taken is logged, not fatal: the work matters more."""
    if not port:
        return None
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        log.error("metrics.port_unavailable", port=port, host=host, error=repr(exc))
        return None
    return port


class Every:
    """How often a loop measures what it exports: `due()` is true at most
    once per `seconds` (the first call is due)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._last: float | None = None

    def due(self) -> bool:
        now = time.monotonic()
        if self._last is not None and now - self._last < self.seconds:
            return False
        self._last = now
        return True
