"""Numbers that add up, with real processes: several subscribers of one PUB each get the
whole run, and an operator's filtered and failed events are counted as such, not lost."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from tests.support.ledgers import status
from tests.support.plugins import plugin_env
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def source_args(frames: int, rate: float) -> list[str]:
    return ["--source", "simulated", "-o", "shape=[16,16]", "-o", f"frames={frames}",
            "-o", f"rate={rate}"]


def completed_run(endpoint: str, timeout: float = 30.0) -> dict:
    def run() -> dict:
        runs = status(endpoint)["outputs"][0]["runs"]
        return runs[-1] if runs and runs[-1]["complete"] else {}
    return wait_for(run, timeout, f"the run to complete at {endpoint}")


def test_a_pub_told_its_subscribers_gives_each_the_whole_run(service, ipc):
    hop, first, second = ipc(), ipc(), ipc()
    service("publisher", "--in", ">" + hop, "--in-pattern", "sub", "--sink", "stats",
            "--status", first, name="sink1")
    source_stats = ipc()
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
        service, ipc, operator, options, filtered, failed):
    hop1, hop2, operator_stats, sink_stats = ipc(), ipc(), ipc(), ipc()
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


def test_json_logs_and_the_final_ledger_as_json(service, ipc):
    hop = ipc()
    sink = service("publisher", "--in", ">" + hop, "--sink", "stats", "--log-format", "json",
                   name="sink")
    service("listener", *source_args(5, 0), "--out", "@" + hop, name="source")
    wait_for(lambda: "run summary" in sink.output(), 20, "the run summary")
    assert sink.stop() == 0
    lines = [line for line in sink.output().splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    assert records and all(r["service"] == "sink" and r["level"] for r in records), lines
    (last,) = [r["message"] for r in records if " stopped; ledger: " in r["message"]]
    ledger = json.loads(last.partition(" stopped; ledger: ")[2])
    assert ledger["outputs"][0]["runs"][0]["frames"] == 5, ledger


def arroyo_status(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services", "status", "--timeout", "5",
                           *args], capture_output=True, text=True, timeout=60)


def test_a_run_as_it_goes_a_sink_restarted_mid_run_and_a_run_cut_short(service, ipc):
    hop, source_stats, first_stats, second_stats = ipc(), ipc(), ipc(), ipc()
    first = service("publisher", "--in", ">" + hop, "--sink", "stats", "--status",
                    first_stats, name="sink")
    source = service("listener", *source_args(100_000, 500), "--out", "@" + hop,
                     "--status", source_stats, name="source")
    wait_for(lambda: (completed := status(first_stats)["outputs"][0]["runs"]) and
             completed[-1]["frames"] >= 100, 20, "frames at the sink")
    # Mid-run the source's row counts what it made so far, and nothing reads "None".
    mid = status(source_stats)
    assert mid["input"]["sent"] > 0 and mid["outputs"][0]["sent"] > 0, mid
    table = arroyo_status(source_stats, first_stats)
    assert "None" not in table.stdout and "frames so far" in table.stdout, table.stdout
    assert "unaccounted -" not in table.stdout, table.stdout
    document = json.loads(arroyo_status("--json", source_stats, first_stats).stdout)
    assert [record["name"] for record in document] == ["source", "sink"], document

    first.signal(signal.SIGKILL)
    first.process.wait(10)
    service("publisher", "--in", ">" + hop, "--sink", "stats", "--status", second_stats,
            name="sink")
    wait_for(lambda: (runs := status(second_stats)["outputs"][0]["runs"]) and
             runs[-1]["frames"] >= 100, 20, "frames at the restarted sink")
    source.signal(signal.SIGTERM)  # ends the run early
    run = completed_run(second_stats)
    # What the first instance received is not this one's loss; it says it joined mid-run,
    # rates from its first frame, and that the source cut the run short.
    assert run["joined_at"] > 0 and run["lost"] == 0 and run["cut_short"], run
    assert run["rate_from"] == "first frame" and run["run"] is not None, run
    assert run["frames"] == run["frames_sent"] - run["joined_at"], run
    table = arroyo_status(second_stats)
    assert table.returncode == 0, table.stdout + table.stderr
    assert f"cut short by its source, joined mid-run at frame {run['joined_at']}" \
        in table.stdout, table.stdout
