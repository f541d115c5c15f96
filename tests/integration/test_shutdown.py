"""SIGTERM (or SIGINT) to a service in the middle of a stream ends it within a few seconds,
with exit code 0, and nothing it had taken in is lost: it all went out (or into its sink)."""

from __future__ import annotations

import signal
import time

import pytest

from tests.support.ledgers import final_ledger, status
from tests.support.waiting import exit_within, wait_for

pytestmark = pytest.mark.integration

DRAIN = 2.0  # the stopped service's drain_timeout (default 10 s): the most a stop may wait
FEW_SECONDS = DRAIN + 3.0
SOURCE = ["--source", "simulated", "-o", "shape=[32,32]", "-o", "rate=300",
          "-o", "frames=1000000"]  # a run that lasts far longer than any test


@pytest.fixture
def drain(tmp_path) -> list[str]:
    """Arguments giving a service a drain_timeout of DRAIN seconds (a config-file key)."""
    path = tmp_path / "drain.toml"
    path.write_text(f"drain_timeout = {DRAIN}\n")
    return ["-c", str(path)]


def kill(*processes) -> None:
    """End services that are not under test at once (they would wait for a vanished peer)."""
    for process in processes:
        process.process.kill()
        process.process.wait()


def sink_run(stats: str) -> dict:
    runs = status(stats)["outputs"][0]["runs"]
    return runs[-1] if runs else {}


def frames_at(stats: str, count: int) -> None:
    wait_for(lambda: sink_run(stats).get("frames", 0) >= count, 20, f"{count} frames at the sink")


def stop_with(process, signum: int) -> float:
    """Send ``signum``; return the seconds until the process exited (checked: code 0)."""
    began = time.monotonic()
    process.signal(signum)
    code = exit_within(process, 3 * FEW_SECONDS)
    seconds = time.monotonic() - began
    assert code == 0, process.output()[-3000:]
    return seconds


def assert_nothing_lost_inside(ledger: dict) -> None:
    """Everything the service received went through its operator and out."""
    assert ledger["operator"]["errors"] == {}
    assert ledger["queue"]["dropped"] == {} and ledger["queue"]["depth"] == 0
    assert ledger["operator"]["processed"] == ledger["input"]["received"]
    for output in ledger["outputs"]:
        assert output.get("dropped", {}) == {}, output


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_operator_stopped_mid_stream_forwards_all_it_took(service, ipc, drain, signum):
    hop1, hop2, sink_stats = ipc(), ipc(), ipc()
    sink = service("publisher", "--in", ">" + hop2, "--status", sink_stats, name="sink")
    operator = service("operator", *drain, "--in", ">" + hop1, "--out", "@" + hop2,
                       name="operator")
    source = service("listener", *SOURCE, "--out", "@" + hop1, name="source")
    frames_at(sink_stats, 100)

    seconds = stop_with(operator, signum)
    ledger = final_ledger(operator)
    assert_nothing_lost_inside(ledger)
    assert ledger["outputs"][0]["sent"] == ledger["input"]["received"]
    # ... and the sink got every one of them, in order.
    wait_for(lambda: status(sink_stats)["input"]["received"] == ledger["outputs"][0]["sent"],
             FEW_SECONDS, "the sink to receive all the operator sent")
    received = status(sink_stats)["input"]
    assert received["missing"] == 0 and received["duplicates"] == 0
    assert sink_run(sink_stats)["lost"] == 0
    kill(source, sink)
    assert seconds < FEW_SECONDS, f"the operator took {seconds:.1f} s to stop"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_source_stopped_mid_run_closes_the_run_with_nothing_lost(service, ipc, drain, signum):
    hop, sink_stats = ipc(), ipc()
    service("publisher", "--in", ">" + hop, "--status", sink_stats, name="sink")
    source = service("listener", *drain, *SOURCE, "--out", "@" + hop, name="source")
    frames_at(sink_stats, 100)

    seconds = stop_with(source, signum)
    ledger = final_ledger(source)
    wait_for(lambda: sink_run(sink_stats).get("complete"), FEW_SECONDS, "the run's Stop")
    run = sink_run(sink_stats)
    assert run["frames"] == run["frames_sent"] >= 100 and run["lost"] == 0
    assert ledger["outputs"][0]["sent"] == run["frames_sent"] + 2  # Start, Events, Stop
    assert ledger["outputs"][0]["dropped"] == {}
    assert seconds < FEW_SECONDS, f"the source took {seconds:.1f} s to stop"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_sink_stopped_mid_stream_hands_its_sink_all_it_received(service, ipc, drain, signum):
    hop, sink_stats = ipc(), ipc()
    sink = service("publisher", *drain, "--in", ">" + hop, "--status", sink_stats, name="sink")
    source = service("listener", *SOURCE, "--out", "@" + hop, name="source")
    frames_at(sink_stats, 100)

    seconds = stop_with(sink, signum)
    ledger = final_ledger(sink)
    assert_nothing_lost_inside(ledger)
    [run] = ledger["outputs"][0]["runs"]
    assert run["frames"] + 1 == ledger["input"]["received"]  # the Start, then Events
    assert run["lost"] == 0
    kill(source)
    assert seconds < FEW_SECONDS, f"the sink took {seconds:.1f} s to stop"


def test_whole_chain_stopped_at_once_loses_nothing(service, ipc):
    """As supervisord stops a group: every service gets SIGTERM at the same moment."""
    hop1, hop2, sink_stats = ipc(), ipc(), ipc()
    sink = service("publisher", "--in", ">" + hop2, "--status", sink_stats, name="sink")
    operator = service("operator", "--in", ">" + hop1, "--out", "@" + hop2, name="operator")
    source = service("listener", *SOURCE, "--out", "@" + hop1, name="source")
    frames_at(sink_stats, 100)

    began = time.monotonic()
    for process in (sink, operator, source):
        process.signal(signal.SIGTERM)
    codes = [exit_within(process, 3 * FEW_SECONDS) for process in (source, operator, sink)]
    seconds = time.monotonic() - began
    assert codes == [0, 0, 0]
    run = final_ledger(sink)["outputs"][0]["runs"][-1]
    assert run["complete"] and run["frames"] == run["frames_sent"] and run["lost"] == 0
    assert final_ledger(operator)["outputs"][0]["sent"] == run["frames_sent"] + 2
    assert seconds < FEW_SECONDS, f"the chain took {seconds:.1f} s to stop"
