"""Numbers that add up, with real processes: several subscribers of one PUB each get the
whole run, and an operator's filtered and failed events are counted as such, not lost."""

from __future__ import annotations

import subprocess
import sys

import pytest
from harness import plugin_env, status, wait_for

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


@pytest.mark.parametrize("operator,options,filtered,failed", [
    ("arroyo_testplugins.operators:Flaky", ["-o", "every=1"], 0, 40),
    ("arroyo_testplugins.operators:DropOdd", [], 20, 0),
    ("threshold", ["-o", "level=1e30", "-o", "drop_empty=true"], 40, 0),
])
def test_what_an_operator_filters_or_fails_on_is_counted_as_such_not_lost(
        service, tcp, operator, options, filtered, failed):
    hop1, hop2, operator_stats, sink_stats = tcp(), tcp(), tcp(), tcp()
    service("publisher", "--in", ">" + hop2, "--sink", "stats", "--status", sink_stats,
            name="sink")
    service("operator", "--in", ">" + hop1, "--operator", operator, *options, "--out",
            "@" + hop2, "--status", operator_stats, name="operator", env=plugin_env())
    service("listener", *source_args(40, 0), "--out", "@" + hop1, name="source")
    run = completed_run(sink_stats)
    assert run["frames_sent"] == 40 and run["frames"] == 40 - filtered - failed, run
    assert (run["filtered"], run["failed"], run["lost"]) == (filtered, failed, 0), run
    record = status(operator_stats)
    assert record["operator"]["filtered"] == filtered, record["operator"]
    assert record["operator"]["failed"] == failed, record["operator"]
    (ledger,) = record["outputs"][0]["run_ledger"]
    assert (ledger["filtered"], ledger["failed"]) == (filtered, failed), ledger
    (ledger,) = status(sink_stats)["input"]["run_ledger"]
    assert ledger["missing"] == filtered + failed and ledger["complete"], ledger

    table = subprocess.run([sys.executable, "-m", "services", "status", operator_stats,
                            sink_stats], capture_output=True, text=True, timeout=30)
    assert table.returncode == 0, table.stdout + table.stderr
    end = next(line for line in table.stdout.splitlines() if "sink run" in line)
    assert f"{40 - filtered - failed} of 40 frames, lost 0," in end, table.stdout
    if filtered:
        assert f"filtered {filtered}" in end, table.stdout
    if failed:
        assert f"failed {failed}" in end, table.stdout
