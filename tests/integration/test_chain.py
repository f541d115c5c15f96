"""Three separate service processes deliver every message, in order, over real sockets."""

import pytest

from services.status_server import query_status
from tests.support.plugins import plugin_env
from tests.support.waiting import exit_within, wait_for

pytestmark = pytest.mark.integration


def wait_for_run(status_endpoint, deadline_s=30.0):
    import time

    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        runs = query_status(status_endpoint)["outputs"][0]["runs"]
        if runs and runs[-1]["complete"]:
            return runs[-1]
        time.sleep(0.1)
    raise AssertionError(f"run did not complete: {query_status(status_endpoint)}")


@pytest.mark.parametrize("pattern,in_pattern", [("push", "pull"), ("pub", "sub")])
def test_three_process_chain_loses_nothing(service, ipc, pattern, in_pattern):
    hop1, hop2, sink_stats = ipc(), ipc(), ipc()
    service("publisher", "--in", ">" + hop2, "--in-pattern", in_pattern, "--sink", "stats",
            "--status", sink_stats, name="sink")
    service("operator", "--in", ">" + hop1, "--in-pattern", in_pattern, "--out", "@" + hop2,
            "--out-pattern", pattern, name="operator")
    service("listener", "--source", "simulated", "-o", "shape=[64,64]", "-o", "frames=500",
            "-o", "rate=0", "--out", "@" + hop1, "--out-pattern", pattern, name="source")
    run = wait_for_run(sink_stats)
    assert run["frames_sent"] == 500
    assert run["frames"] == 500
    assert run["lost"] == 0 and run["duplicates"] == 0
    link = query_status(sink_stats)["input"]
    assert link["missing"] == 0 and link["received"] == 502  # Start + 500 events + Stop


def order_report(status_endpoint):
    """The OrderSink's view: every run, in arrival order, and anything out of place."""
    return query_status(status_endpoint)["outputs"][0]


@pytest.mark.parametrize("pattern,in_pattern", [("push", "pull"), ("pub", "sub")])
def test_runs_back_to_back_arrive_whole_and_in_frame_order(service, ipc, pattern, in_pattern):
    """Three runs from one source, then two more from a restarted source (a new sender id
    starting again at seq 0): every frame index arrives in order, end to end."""
    hop1, hop2, sink_stats, operator_stats = ipc(), ipc(), ipc(), ipc()
    service("publisher", "--in", ">" + hop2, "--in-pattern", in_pattern,
            "--sink", "arroyo_testplugins.sinks:OrderSink", "--status", sink_stats,
            name="sink", env=plugin_env())
    service("operator", "--in", ">" + hop1, "--in-pattern", in_pattern, "--out", "@" + hop2,
            "--out-pattern", pattern, "--status", operator_stats, name="operator")
    source_args = ["--source", "simulated", "-o", "shape=[16,16]", "-o", "rate=0",
                   "--out", "@" + hop1, "--out-pattern", pattern]
    first = service("listener", *source_args, "-o", "frames=300", "-o", "runs=3", name="first")
    assert exit_within(first, 30) == 0  # a source ends by itself after its runs
    wait_for(lambda: len(order_report(sink_stats)["runs"]) == 3
             and order_report(sink_stats)["runs"][-1]["stopped"], 30, "three runs at the sink")
    second = service("listener", *source_args, "-o", "frames=200", "-o", "runs=2",
                     "-o", "seed=7", name="second")
    assert exit_within(second, 30) == 0
    wait_for(lambda: len(order_report(sink_stats)["runs"]) == 5
             and order_report(sink_stats)["runs"][-1]["stopped"], 30, "five runs at the sink")

    report = order_report(sink_stats)
    assert report["stray"] == []
    assert [run["frames"] for run in report["runs"]] == [300, 300, 300, 200, 200]
    assert [run["frames_sent"] for run in report["runs"]] == [300, 300, 300, 200, 200]
    assert all(run["out_of_order"] == [] for run in report["runs"]), report["runs"]
    assert len({run["run"] for run in report["runs"]}) == 5
    sink_link = query_status(sink_stats)["input"]
    assert sink_link["missing"] == 0 and sink_link["duplicates"] == 0
    assert sink_link["received"] == 3 * 302 + 2 * 202
    operator_link = query_status(operator_stats)["input"]
    assert len(operator_link["senders"]) == 2  # the restarted source is a new sender
    assert operator_link["missing"] == 0 and operator_link["received"] == 3 * 302 + 2 * 202
