"""OpenTelemetry traces: one trace from a parent's request through the
services, the outboxes and Kafka, to the consumers' effects and the referral
workflow's activities.

How a trace crosses each boundary, all in the core:
- HTTP into a service: FastAPI's own telemetry (kezek.web) reads the
  caller's `traceparent` header; out of a service, kezek.client writes it on
  every call to another service.
- the outbox and Kafka: `Outbox.add` writes the current `traceparent` (and
  `tracestate`) into the event's envelope as CloudEvents extension
  attributes (the distributed-tracing extension); the relay sends a producer
  span under it; the consumer continues the trace from it (kezek.consumer),
  so events written by a handler carry the handler's span on.
- Temporal: the SDK's TracingInterceptor on every client (kezek.connections)
  and so on every worker carries the context in the headers of workflow
  starts, updates and activities; an update (a parent's cancel, a
  caseworker's decision) and the activities it calls stay in the trace of
  the request that sent it (`_temporal_interceptor`).

Nothing is exported unless `otlp_endpoint` is set (`configure`); without it
the API's no-op tracer still passes an incoming trace's context on, so a
trace begun by a caller that does trace is not cut by a process that does
not."""
from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import context, propagate, trace
from opentelemetry.trace import Span, SpanKind

TRACER = "kezek"


def configure(settings, process: str) -> bool:
    """Exports this process's spans by OTLP/HTTP to `settings.otlp_endpoint`
    (nothing when it is empty); `process` names the service in the traces
    (kezek-gateway, kezek-relay ...). Returns whether spans are exported."""
    if not settings.otlp_endpoint:
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    from kezek.cli import version

    headers = dict(pair.split("=", 1) for pair in settings.otlp_headers.get_secret_value().split(",") if "=" in pair)
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"kezek-{process}", "service.namespace": "kezek",
                                  "service.version": version(), "deployment.environment": settings.env}),
        sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio)))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(
        endpoint=f"{settings.otlp_endpoint.rstrip('/')}/v1/traces", headers=headers or None)))
    trace.set_tracer_provider(provider)
    return True


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER)


def current_context() -> dict[str, str]:
    """The current trace as W3C headers: {"traceparent": ..., "tracestate": ...}
    (empty outside a trace)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {k: v for k, v in carrier.items() if k in ("traceparent", "tracestate")}


@contextmanager
def continued(carrier: dict[str, str | None], name: str, kind: SpanKind = SpanKind.CONSUMER,
              attributes: dict | None = None) -> Iterator[Span]:
    """A span continuing the trace a message carries (its traceparent), made
    current for what runs inside."""
    parent = propagate.extract({k: v for k, v in carrier.items() if v})
    token = context.attach(parent)
    try:
        with tracer().start_as_current_span(name, kind=kind, attributes=attributes) as span:
            yield span
    finally:
        context.detach(token)


def temporal_interceptors() -> list:
    """Temporal's OpenTelemetry interceptor, for every client (and so every
    worker made from one): starts, updates, queries, workflow and activity
    executions carry the trace in their headers."""
    return [_temporal_interceptor()()]


@functools.cache
def _temporal_interceptor() -> type:
    """Temporal's TracingInterceptor with one change, made the way its
    documentation asks (subclasses of both of its classes): an update runs,
    with the activities it calls, in the trace of the request that sent it.
    The stock interceptor keeps every workflow span in the trace of the
    workflow's start and only links the update's caller; a referral's start
    is weeks before a parent cancels it, and the operator following the
    cancel must see its activity and the events that follow from it."""
    import opentelemetry.context
    import temporalio.worker
    from temporalio.contrib.opentelemetry import TracingInterceptor, TracingWorkflowInboundInterceptor

    class UpdateInCallersTrace(TracingWorkflowInboundInterceptor):
        async def handle_update_handler(self, input):
            header = input.headers.get(self.header_key)
            if header is None:
                return await super().handle_update_handler(input)
            carrier = self.payload_converter.from_payloads([header])[0]
            caller = self._set_on_context(self.text_map_propagator.extract(carrier))
            token = opentelemetry.context.attach(caller)
            try:
                self._completed_span(f"HandleUpdate:{input.update}", kind=SpanKind.SERVER)
                return await temporalio.worker.WorkflowInboundInterceptor.handle_update_handler(self, input)
            finally:
                # The handler may finish in another contextvars.Context (an
                # evicted workflow): then there is nothing to detach here.
                if opentelemetry.context.get_current() is caller:
                    try:
                        token.var.reset(token)
                    except ValueError:
                        pass

    class Interceptor(TracingInterceptor):
        def workflow_interceptor_class(self, input):
            super().workflow_interceptor_class(input)
            return UpdateInCallersTrace

    return Interceptor
