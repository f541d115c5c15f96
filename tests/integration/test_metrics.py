"""A chain's metrics, scraped by a real Prometheus server and read back through its HTTP
API: every series matches the status record the same service reports."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from services.chain import service_command
from services.processes import ServiceProcess, free_port
from services.status_server import query_status
from tests.support.chains import chain_toml, write
from tests.support.prometheus_server import PrometheusServer, require_prometheus
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

FRAMES = 300


def with_metrics(text: str) -> tuple[str, dict[str, int]]:
    """The chain file with a fixed metrics port per service (so Prometheus can be told)."""
    ports = {}
    for name in ("source", "operator", "sink"):
        ports[name] = free_port()
        text = re.sub(rf"(\[services\.{name}\]\n)", rf'\1metrics = "127.0.0.1:{ports[name]}"\n',
                      text)
    return text, ports


@pytest.fixture
def processes():
    started: list[ServiceProcess] = []
    yield started
    for process in started:
        process.stop(timeout=10)


def value(server: PrometheusServer, promql: str) -> float | None:
    result = server.query(promql)
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_every_series_of_a_running_chain(tmp_path, ipc, processes):
    require_prometheus()
    text, status = chain_toml(ipc, name="metrics", frames=FRAMES, rate=100.0, shape="[16, 16]")
    text, ports = with_metrics(text)
    chain = write(tmp_path / "chain.toml", text)
    scrape = subprocess.run([sys.executable, "-m", "services", "deploy", "prometheus",
                             str(chain), "--interval", "0.5"],
                            capture_output=True, text=True, timeout=30, check=True).stdout
    for port in ports.values():
        assert f"127.0.0.1:{port}" in scrape
    server = PrometheusServer(tmp_path, scrape)
    try:
        for name in ("sink", "operator", "source"):
            if name == "source":  # its run is short: start it once Prometheus is scraping
                wait_for(lambda: (value(server, "sum(up)") or 0) >= 2, 60,
                         "Prometheus to scrape the operator and the sink")
            process = ServiceProcess.from_argv(service_command(chain, name), name)
            processes.append(process)
            process.wait_ready()
        for process in processes:  # each endpoint starts just after READY
            wait_for(lambda p=process: f"metrics at http://127.0.0.1:{ports[p.name]}/metrics"
                     in p.output(), 15, f"{process.name}'s metrics endpoint")

        def sink_record() -> dict:
            return query_status(status["sink"])

        wait_for(lambda: (sink_record()["outputs"][0]["runs"] or [{}])[-1].get("complete"),
                 40, "the run to reach the sink")
        sink, operator = sink_record(), query_status(status["operator"])

        # The counters as the services' own records have them, read back from Prometheus.
        expected = {
            'arroyo_link_messages_total{service="sink",direction="input"}':
                sink["input"]["received"],
            'arroyo_link_bytes_total{service="sink",direction="input"}': sink["input"]["bytes"],
            'arroyo_link_messages_total{service="operator",direction="output"}':
                operator["outputs"][0]["sent"],
            'arroyo_link_bytes_total{service="operator",direction="output"}':
                operator["outputs"][0]["bytes"],
            'arroyo_operator_messages_total{service="operator"}':
                operator["operator"]["processed"],
            'arroyo_operator_processing_seconds_count{service="operator"}':
                sum(operator["operator"]["seconds"]["counts"]),  # a sample of fast ones
        }
        assert sink["input"]["received"] == FRAMES + 2  # Start, events, Stop
        assert 0 < sum(operator["operator"]["seconds"]["counts"]) <= FRAMES + 2
        assert sink["input"]["bytes"] > FRAMES * 16 * 16 * 2  # uint16 frames, and headers

        def scraped_all() -> bool:
            return all(value(server, query) == want for query, want in expected.items())

        wait_for(scraped_all, 30, "Prometheus to scrape the final counters")
        assert value(server, 'arroyo_link_missing_messages_total{service="sink"}') == 0
        run = sink["input"]["run_ledger"][-1]["run"]
        assert value(server, f'arroyo_run_info{{service="sink",run="{run}"}}') == 1
        assert value(server, 'arroyo_run_frames{service="sink",direction="input"}') == FRAMES
        assert value(server, 'arroyo_run_missing_frames{service="sink"}') == 0
        assert value(server, 'arroyo_queue_capacity_messages{service="operator"}') == 64
        assert value(server, 'arroyo_service_ready{service="operator"}') == 1
        median = value(server, "histogram_quantile(0.5, "
                               'arroyo_operator_processing_seconds_bucket{service="operator"})')
        assert median is not None and 0 < median < 0.1
        # The source ended after its run; its last scrape is still in Prometheus.
        sent = value(server, 'last_over_time(arroyo_link_messages_total{service="source"}[5m])')
        assert sent is not None and sent > 0
        up = {target["labels"]["arroyo_service"]: target["health"]
              for target in server.targets()}
        assert up["operator"] == up["sink"] == "up", server.targets()
    finally:
        server.stop()


def test_a_taken_metrics_port_is_an_error_in_the_log_and_the_service_runs_on(service):
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        status = f"tcp://127.0.0.1:{free_port()}"
        process = service("publisher", "--in", f">tcp://127.0.0.1:{free_port()}",
                          "--metrics", f"127.0.0.1:{port}", "--status", status, name="sink")
        wait_for(lambda: "cannot listen at" in process.output(), 15, "the error")
        assert "the service runs on without metrics" in process.output()
        assert query_status(status)["ready"] is True
        assert process.process.poll() is None
