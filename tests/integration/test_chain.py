"""Three separate service processes deliver every message, in order, over real sockets."""

import pytest

from arroyo_core.transports.status import query_status

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
def test_three_process_chain_loses_nothing(service, tcp, pattern, in_pattern):
    hop1, hop2, sink_stats = tcp(), tcp(), tcp()
    service("publisher", "--in", ">" + hop2, "--in-pattern", in_pattern, "--sink", "stats",
            "--stats", sink_stats, name="sink")
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
