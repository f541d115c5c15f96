"""Numbers that add up, with real processes: several subscribers of one PUB each get the
whole run, and an operator's filtered and failed events are counted as such, not lost."""

from __future__ import annotations

import pytest
from harness import status, wait_for

pytestmark = pytest.mark.integration


def source_args(frames: int, rate: float) -> list[str]:
    return ["--source", "simulated", "-o", "shape=[16,16]", "-o", f"frames={frames}",
            "-o", f"rate={rate}"]


def completed_run(endpoint: str, timeout: float = 30.0) -> dict:
    def run() -> dict:
        runs = status(endpoint)["outputs"][0]["runs"]
        return runs[-1] if runs and runs[-1]["complete"] else {}
    return wait_for(run, timeout, f"the run to complete at {endpoint}")


def test_a_pub_told_its_subscribers_gives_each_the_whole_run(service, tcp):
    hop, first, second = tcp(), tcp(), tcp()
    service("publisher", "--in", ">" + hop, "--in-pattern", "sub", "--sink", "stats",
            "--status", first, name="sink1")
    source_stats = tcp()
    service("listener", *source_args(1000, 2000), "--out", "@" + hop, "--out-pattern", "pub",
            "--out-option", "subscribers=2", "--status", source_stats, name="source")
    # One subscriber is there: the run does not begin until the second one is.
    wait_for(lambda: status(first)["input"]["senders"] == {} and
             status(source_stats)["queue"]["depth"] > 0, 10, "the source held back")
    assert status(source_stats)["outputs"][0]["sent"] == 0
    service("publisher", "--in", ">" + hop, "--in-pattern", "sub", "--sink", "stats",
            "--status", second, name="sink2")
    for endpoint in (first, second):
        run = completed_run(endpoint)
        assert run["frames"] == run["frames_sent"] == 1000 and run["lost"] == 0, run
