"""Prometheus metrics shared by every process; each service exposes /metrics."""
from prometheus_client import Counter, Histogram

REQUESTS = Counter("kezek_http_requests_total", "HTTP requests", ["service", "method", "route", "status"])
LATENCY = Histogram("kezek_http_request_seconds", "HTTP request latency", ["service", "route"])
EVENTS_RELAYED = Counter("kezek_events_relayed_total", "Outbox rows published to Kafka", ["source"])
RELAY_ERRORS = Counter("kezek_relay_errors_total", "Failed relay rounds", ["source"])
EVENTS_CONSUMED = Counter("kezek_events_consumed_total", "Events handled by consumers", ["consumer", "type"])
