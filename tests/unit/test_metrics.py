"""The metric families of a status record, and where deployed services serve them."""

from __future__ import annotations

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from arroyo_core.errors import ConfigError
from arroyo_core.operators import PassThrough
from arroyo_core.runtime import Runtime
from arroyo_core.sinks import CollectingSink
from arroyo_core.sources import SimulatedDetector
from arroyo_core.status import (
    HistogramStatus,
    LagStatus,
    LinkStatus,
    OperatorStatus,
    QueueStatus,
    RunLedgerStatus,
    ServiceStatus,
)
from arroyo_core.timing import Histogram
from services.metrics import StatusCollector
from services.metrics_deploy import metrics_address, nth_metrics, scrape_config
from tests.unit.test_pools import pool_chain


def samples(record: ServiceStatus) -> dict[tuple[str, frozenset], float]:
    """Every sample of the exposition text (what Prometheus reads), by name and labels."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(lambda: record, "op"))
    text = generate_latest(registry).decode()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def record() -> ServiceStatus:
    link_in = LinkStatus(name="input pull >tcp://a:1", direction="input", received=10,
                         bytes=1000, missing=2, duplicates=1, malformed={"size": 3},
                         lag=LagStatus(lag=0.25, max_lag=1.0, late=4, worst_lag=2.0),
                         transport={"connections": {"dropped": 0,
                                                    "refused": {"curve": 5}},
                                    "peers": {"peers": 1}},
                         run_ledger=[RunLedgerStatus(run="r1", seen=5, first=0, next=6,
                                                     expected=None, missing=1,
                                                     missing_ranges=[[2, 2]], duplicates=0,
                                                     late=0)])
    link_out = LinkStatus(name="output push @tcp://*:2", direction="output", sent=7,
                          bytes=700, dropped={"no peer": 6})
    seconds = HistogramStatus(bounds=[0.001, 0.01], counts=[3, 2, 1], sum=0.5)
    return ServiceStatus(
        ready=True, uptime=3.0, input=link_in, outputs=[link_out],
        queue=QueueStatus(name="q", policy="block", max_items=64, max_bytes=2**30, depth=5,
                          bytes=50, sent=9, dropped={"keep-latest": 8}),
        operator=OperatorStatus(type="X", processed=6, errors={"ValueError": 2}, failed=2,
                                filtered=1, seconds=seconds))


def test_every_series_carries_the_record_s_value_with_conventional_names():
    got = samples(record())
    link_in = {("service", "op"), ("link", "input pull >tcp://a:1"), ("direction", "input")}
    link_out = {("service", "op"), ("link", "output push @tcp://*:2"), ("direction", "output")}
    op = {("service", "op")}
    expected = {
        ("arroyo_link_messages_total", frozenset(link_in)): 10,
        ("arroyo_link_bytes_total", frozenset(link_in)): 1000,
        ("arroyo_link_missing_messages_total", frozenset(link_in)): 2,
        ("arroyo_link_duplicate_messages_total", frozenset(link_in)): 1,
        ("arroyo_link_malformed_messages_total", frozenset(link_in | {("reason", "size")})): 3,
        ("arroyo_link_refused_connections_total", frozenset(link_in | {("reason", "curve")})): 5,
        ("arroyo_link_peers", frozenset(link_in)): 1,
        ("arroyo_link_lag_seconds", frozenset(link_in)): 0.25,
        ("arroyo_link_late_messages_total", frozenset(link_in)): 4,
        ("arroyo_run_info", frozenset(link_in | {("run", "r1")})): 1,
        ("arroyo_run_frames", frozenset(link_in)): 5,
        ("arroyo_run_missing_frames", frozenset(link_in)): 1,
        ("arroyo_link_messages_total", frozenset(link_out)): 7,
        ("arroyo_link_bytes_total", frozenset(link_out)): 700,
        ("arroyo_link_dropped_messages_total", frozenset(link_out | {("reason", "no peer")})): 6,
        ("arroyo_queue_messages", frozenset(op)): 5,
        ("arroyo_queue_bytes", frozenset(op)): 50,
        ("arroyo_queue_capacity_messages", frozenset(op)): 64,
        ("arroyo_queue_dropped_messages_total", frozenset(op | {("reason", "keep-latest")})): 8,
        ("arroyo_operator_messages_total", frozenset(op)): 6,
        ("arroyo_operator_errors_total", frozenset(op | {("exception", "ValueError")})): 2,
        ("arroyo_operator_failed_events_total", frozenset(op)): 2,
        ("arroyo_operator_filtered_events_total", frozenset(op)): 1,
        ("arroyo_service_ready", frozenset(op)): 1,
        # cumulative buckets, as Prometheus has them
        ("arroyo_operator_processing_seconds_bucket", frozenset(op | {("le", "0.001")})): 3,
        ("arroyo_operator_processing_seconds_bucket", frozenset(op | {("le", "0.01")})): 5,
        ("arroyo_operator_processing_seconds_bucket", frozenset(op | {("le", "+Inf")})): 6,
        ("arroyo_operator_processing_seconds_count", frozenset(op)): 6,
        ("arroyo_operator_processing_seconds_sum", frozenset(op)): 0.5,
    }
    for key, want in expected.items():
        assert got.get(key) == want, key
    names = {name for name, _ in got}
    assert all(name.startswith("arroyo_") for name in names)
    assert "arroyo_link_missing_messages_total" in names


def test_the_histogram_is_there_only_while_the_runtime_times_its_operator():
    sink = CollectingSink()
    runtime = Runtime(SimulatedDetector(frames=20, rate=0), PassThrough(), [sink])
    assert runtime.status().operator.seconds is None  # off unless asked: it costs per message
    runtime.time_operator()
    runtime.run()
    seconds = runtime.status().operator.seconds
    assert 0 < seconds.count <= runtime.processed == 22  # Start, 20 events, Stop: sampled
    assert ServiceStatus.from_dict(runtime.status().to_dict()).operator.seconds == seconds


def test_fast_operators_are_timed_one_message_in_a_few_slow_ones_every_message():
    fast, slow = Histogram(), Histogram()
    for _ in range(64):
        fast.observe(10e-6)
        slow.observe(1e-3)
    assert fast.every == 5  # timing (0.5 us) is 1 % of 5 x 10 us
    assert slow.every == 1
    assert fast.skip == 5 and fast.status().counts[0] == 64


def test_histogram_buckets_hold_a_value_equal_to_their_bound():
    histogram = Histogram((1.0, 2.0))
    for seconds in (0.5, 1.0, 1.5, 2.0, 3.0):
        histogram.observe(seconds)
    assert histogram.status().counts == [2, 2, 1]
    assert histogram.status().sum == 8.0


@pytest.mark.parametrize("text,expected", [
    ("127.0.0.1:9400", ("127.0.0.1", 9400)), (":9400", ("0.0.0.0", 9400)),
    ("http://localhost:0", ("localhost", 0))])
def test_metrics_addresses(text, expected):
    assert metrics_address(text, "svc") == expected


@pytest.mark.parametrize("text", ["9400", "tcp://127.0.0.1:9400", "host:port", "h:1/x"])
def test_a_wrong_metrics_address_names_the_service(text):
    with pytest.raises(ConfigError, match=r"\[svc\] metrics: expected HOST:PORT"):
        metrics_address(text, "svc")


def test_pool_workers_get_a_port_each_and_prometheus_scrapes_them_all():
    assert nth_metrics(":9401", 2) == ":9403"
    assert nth_metrics("127.0.0.1:0", 2) == "127.0.0.1:0"
    chain = pool_chain()
    config = yaml.safe_load(scrape_config(chain, interval=0.5))
    [job] = config["scrape_configs"]
    assert job["scrape_interval"] == "500ms"
    targets = {group["labels"]["arroyo_service"]: group["targets"]
               for group in job["static_configs"]}
    assert targets == {"source": ["127.0.0.1:9400"],
                       "worker": ["127.0.0.1:9401", "127.0.0.1:9402", "127.0.0.1:9403"],
                       "sink": ["127.0.0.1:9404"]}
    compose = yaml.safe_load(scrape_config(chain, "compose"))["scrape_configs"][0]
    assert {"names": ["worker"], "type": "A", "port": 9401} in compose["dns_sd_configs"]


def test_the_committed_scrape_config_is_generated_from_the_default_chain():
    from pathlib import Path

    from services.chain import load_chain

    root = Path(__file__).resolve().parents[2]
    assert (root / "deploy/prometheus.yml").read_text() == scrape_config(
        load_chain(root / "deploy/chain.toml")), \
        "regenerate: arroyo deploy prometheus deploy/chain.toml -o deploy/prometheus.yml"


def test_the_grafana_dashboard_asks_only_for_series_a_service_serves():
    import json
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    dashboard = json.loads((root / "deploy/grafana-dashboard.json").read_text())
    asked = {name for panel in dashboard["panels"] for target in panel["targets"]
             for name in re.findall(r"\barroyo_\w+", target["expr"])}
    served = {sample for sample, _ in samples(record())}
    served |= {name.removesuffix("_total") for name in served}  # families, as Prometheus
    assert asked and asked <= served, asked - served


def test_each_worker_of_a_pool_started_by_hand_serves_metrics_on_a_port_of_its_own():
    from arroyo_core.config import ServiceConfig
    from services.replicas import worker_argv

    config = ServiceConfig.from_mapping("operator", {"replicas": 3, "metrics": ":9500",
                                                     "in": ">tcp://a:1"})
    argv = worker_argv(config, ["operator", "--metrics", ":9500"], 2)
    assert argv[-2:] == ["--metrics", ":9502"]  # the last of a repeated option wins
