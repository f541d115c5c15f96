"""A service's Prometheus metrics, read from its status record at each scrape.

Nothing is counted twice: every series is a field of the service's
:class:`~arroyo_core.status.ServiceStatus` (the record ``arroyo status`` shows), read when
Prometheus asks, so the hot path pays nothing for the endpoint except the operator's
processing-time histogram (:mod:`arroyo_core.timing`), which the runtime keeps only
while a metrics endpoint is on. Names follow Prometheus conventions: an ``arroyo_``
prefix, ``_total`` on counters, seconds and bytes as units. Every series has the label
``service``; a link's also ``link`` (its name in the logs) and ``direction``.

The series (counters unless said):

==========================================  ==========================================
``arroyo_link_messages_total``              received (input) or sent (output)
``arroyo_link_bytes_total``                 their wire bytes
``arroyo_link_missing_messages_total``      sequence gaps on an input
``arroyo_link_duplicate_messages_total``    seen again on an input
``arroyo_link_malformed_messages_total``    rejected, by ``reason``
``arroyo_link_dropped_messages_total``      dropped by an overflow policy, by ``reason``
``arroyo_link_refused_connections_total``   failed handshakes (CURVE), by ``reason``
``arroyo_link_peers``                       gauge: connected peers
``arroyo_link_lag_seconds``                 gauge: behind the sender (``max_lag`` set)
``arroyo_link_late_messages_total``         later than ``max_lag``
``arroyo_run_info``                         gauge: 1, the latest run's id as ``run``
``arroyo_run_frames``                       gauge: its frame numbers the link saw
``arroyo_run_missing_frames``               gauge: those it has not seen (so far)
``arroyo_queue_messages``                   gauge: queued now (and ``_bytes``)
``arroyo_queue_capacity_messages``          gauge: its bounds (and ``_bytes``)
``arroyo_queue_dropped_messages_total``     dropped by the queue's policy, by ``reason``
``arroyo_operator_messages_total``          processed
``arroyo_operator_errors_total``            raised, by ``exception``
``arroyo_operator_{filtered,failed}_events_total``  no event returned / raised on
``arroyo_operator_processing_seconds``      histogram of ``process`` per message
``arroyo_service_ready``                    gauge: 1 once its sockets are open
``arroyo_service_uptime_seconds``           gauge
==========================================  ==========================================
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from arroyo_core.errors import ConfigError
from arroyo_core.status import LinkStatus, ServiceStatus

from .metrics_deploy import metrics_address

log = logging.getLogger(__name__)

LINK_LABELS = ("service", "link", "direction")


def _counter(name: str, doc: str, labels: tuple[str, ...]) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels))


def _gauge(name: str, doc: str, labels: tuple[str, ...]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


class _LinkFamilies:
    """The families of link series, filled link by link."""

    def __init__(self) -> None:
        by_reason = (*LINK_LABELS, "reason")
        self.messages = _counter("arroyo_link_messages", "Messages a link received (input) "
                                 "or sent (output).", LINK_LABELS)
        self.bytes = _counter("arroyo_link_bytes", "Wire bytes of those messages.",
                              LINK_LABELS)
        self.missing = _counter("arroyo_link_missing_messages", "Messages an input never "
                                "got (gaps in its senders' sequence numbers).", LINK_LABELS)
        self.duplicates = _counter("arroyo_link_duplicate_messages", "Messages an input got "
                                   "again.", LINK_LABELS)
        self.malformed = _counter("arroyo_link_malformed_messages", "Messages rejected as "
                                  "malformed, by reason.", by_reason)
        self.dropped = _counter("arroyo_link_dropped_messages", "Messages an output dropped "
                                "by its overflow policy, by reason.", by_reason)
        self.refused = _counter("arroyo_link_refused_connections", "Connections refused in "
                                "the handshake (e.g. a CURVE key not allowed), by reason.",
                                by_reason)
        self.peers = _gauge("arroyo_link_peers", "Peers connected to the link now.",
                            LINK_LABELS)
        self.lag = _gauge("arroyo_link_lag_seconds", "How far an input is behind its sender "
                          "(the last message).", LINK_LABELS)
        self.late = _counter("arroyo_link_late_messages", "Messages that came later than "
                             "the link's max_lag.", LINK_LABELS)
        self.run = _gauge("arroyo_run_info", "1, labelled with the run id of the latest run "
                          "the link saw.", (*LINK_LABELS, "run"))
        self.frames = _gauge("arroyo_run_frames", "Frame numbers of the latest run the link "
                             "saw (an output: sent).", LINK_LABELS)
        self.run_missing = _gauge("arroyo_run_missing_frames", "Frame numbers of the latest "
                                  "run the link has not seen (so far).", LINK_LABELS)

    def add(self, service: str, link: LinkStatus) -> None:
        labels = [service, link.name, link.direction]
        count = link.received if link.direction == "input" else link.sent
        if count is not None:
            self.messages.add_metric(labels, count)
        if link.bytes is not None:
            self.bytes.add_metric(labels, link.bytes)
        if link.direction == "input" and link.kind == "link":
            self.missing.add_metric(labels, link.missing)
            self.duplicates.add_metric(labels, link.duplicates)
        for reason, n in link.malformed.items():
            self.malformed.add_metric([*labels, reason], n)
        for reason, n in link.dropped.items():
            self.dropped.add_metric([*labels, reason], n)
        connections = link.transport.get("connections")
        if isinstance(connections, dict) and isinstance(connections.get("refused"), dict):
            for reason, n in connections["refused"].items():
                self.refused.add_metric([*labels, reason], n)
        peers = link.transport.get("peers")
        if isinstance(peers, dict) and isinstance(peers.get("peers"), int):
            self.peers.add_metric(labels, peers["peers"])
        if link.lag is not None:
            self.lag.add_metric(labels, link.lag.lag)
            self.late.add_metric(labels, link.lag.late)
        if link.run_ledger:
            latest = link.run_ledger[-1]
            self.run.add_metric([*labels, str(latest.run)], 1)
            self.frames.add_metric(labels, latest.seen)
            self.run_missing.add_metric(labels, latest.missing)

    def families(self) -> list[Metric]:
        return list(vars(self).values())


def _histogram(service: str, record: ServiceStatus) -> Metric | None:
    operator = record.operator
    if operator is None or operator.seconds is None:
        return None
    seconds = operator.seconds
    family = HistogramMetricFamily("arroyo_operator_processing_seconds", "Time the operator "
                                   "took to process one message.", labels=["service"])
    buckets, total = [], 0
    for bound, count in zip([*seconds.bounds, float("inf")], seconds.counts, strict=True):
        total += count
        buckets.append((_le(bound), total))
    family.add_metric([service], buckets, seconds.sum)
    return family


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def families(record: ServiceStatus) -> list[Metric]:
    """The metric families of one service's status record (see the module docstring)."""
    service = record.name
    labels = ("service",)
    found: list[Metric] = []
    ready = _gauge("arroyo_service_ready", "1 once the service has opened its sockets.",
                   labels)
    ready.add_metric([service], int(record.ready))
    uptime = _gauge("arroyo_service_uptime_seconds", "Seconds since the service started.",
                    labels)
    uptime.add_metric([service], record.uptime)
    found += [ready, uptime]
    links = _LinkFamilies()
    for link in [record.input, *record.outputs]:
        if link is not None:
            links.add(service, link)
    found += links.families()
    queue = record.queue
    if queue is not None:
        by_reason = ("service", "reason")
        for name, doc, value in (
                ("arroyo_queue_messages", "Messages queued between receiving and processing.",
                 queue.depth),
                ("arroyo_queue_bytes", "Payload bytes of those messages.", queue.bytes),
                ("arroyo_queue_capacity_messages", "Messages the queue holds at most.",
                 queue.max_items),
                ("arroyo_queue_capacity_bytes", "Bytes the queue holds at most.",
                 queue.max_bytes)):
            gauge = _gauge(name, doc, labels)
            gauge.add_metric([service], value)
            found.append(gauge)
        dropped = _counter("arroyo_queue_dropped_messages", "Messages the queue's policy "
                           "dropped, by reason.", by_reason)
        for reason, n in queue.dropped.items():
            dropped.add_metric([service, reason], n)
        found.append(dropped)
    operator = record.operator
    if operator is not None:
        for name, doc, value in (
                ("arroyo_operator_messages", "Messages the operator processed.",
                 operator.processed),
                ("arroyo_operator_filtered_events", "Events the operator returned no event "
                 "for.", operator.filtered),
                ("arroyo_operator_failed_events", "Events the operator raised on.",
                 operator.failed)):
            counter = _counter(name, doc, labels)
            counter.add_metric([service], value)
            found.append(counter)
        errors = _counter("arroyo_operator_errors", "Exceptions the operator raised, by "
                          "type.", ("service", "exception"))
        for exception, n in operator.errors.items():
            errors.add_metric([service, exception], n)
        found.append(errors)
    histogram = _histogram(service, record)
    if histogram is not None:
        found.append(histogram)
    return found


class StatusCollector(Collector):
    """A prometheus-client collector that reads ``status()`` at each scrape."""

    def __init__(self, status: Callable[[], ServiceStatus], name: str) -> None:
        self.status = status
        self.name = name

    def collect(self) -> Iterator[Metric]:
        try:
            record = self.status()
        except Exception:  # a racing counter must not fail the scrape for good
            log.exception("reading the status for metrics failed")
            return
        record.name = self.name
        yield from families(record)


class MetricsServer:
    """Serves the metrics of ``status()`` over HTTP at ``address`` (see
    :func:`metrics_address`) from a daemon thread until :meth:`close`; ``bound`` is
    ``host:port`` as it listens, a port 0 resolved."""

    def __init__(self, address: str, status: Callable[[], ServiceStatus], name: str) -> None:
        host, port = metrics_address(address, name)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StatusCollector(status, name))
        try:
            self._server, self._thread = start_http_server(port, host, registry=registry)
        except OSError as exc:
            raise ConfigError(f"[{name}] metrics: cannot listen at {address}: "
                              f"{exc.strerror or exc}") from None
        self.bound = f"{host}:{self._server.server_port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)


def with_runtime(runtime: Any) -> Callable[[], ServiceStatus]:
    """The status function of a runtime, its operator's processing timed from now on."""
    runtime.time_operator()
    return runtime.status  # type: ignore[no-any-return]
