"""Clean stops in every state, and waits that say what they wait for, with real processes
(`arroyo run`'s stops and a clean run's log: test_chain_file).

- A service exits within its grace period (drain_timeout + services.serve.EXIT_MARGIN_S)
  with no peer downstream, none upstream, and mid-run blocked on a full peer; under
  supervisord `supervisorctl stop` returns within stopwaitsecs with exit status 0. A second
  signal exits at once. The final ledger is logged every time.
- A service waiting for a peer says what it waits for, and why when it can tell.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from services.serve import EXIT_MARGIN_S
from tests.support.chains import write
from tests.support.ledgers import final_ledger, logged_ledger, sink_frames, sink_runs, status
from tests.support.supervisord import Supervisor
from tests.support.waiting import exit_within, wait_for

pytestmark = pytest.mark.integration

SOURCE = ["--source", "simulated", "-o", "shape=[32,32]", "-o", "rate=300",
          "-o", "frames=1000000"]  # a run that lasts far longer than any test


# --- a stop within the grace period in every state ---------------------------------------

def stop_within(process, grace: float, signum: int = signal.SIGTERM) -> float:
    """Signal ``process``; check it exits 0 within ``grace`` s; return the seconds taken."""
    began = time.monotonic()
    process.signal(signum)
    code = exit_within(process, grace + 5)
    seconds = time.monotonic() - began
    assert code == 0, process.output()[-3000:]
    assert seconds < grace, f"{process.name} took {seconds:.1f} s to stop:\n{process.output()}"
    final_ledger(process)  # logged
    return seconds


def drain_config(tmp_path, seconds: float) -> list[str]:
    path = tmp_path / f"drain{seconds}.toml"
    path.write_text(f"drain_timeout = {seconds}\n")
    return ["-c", str(path)]


@pytest.mark.slow
def test_no_downstream_under_supervisord_stops_within_stopwaitsecs(tmp_path):
    """The case measured at ~17 s: a source with no consumer, default drain_timeout (10 s),
    stopwaitsecs 15."""
    chain = write(tmp_path / "chain.toml", """
name = "alone"

[services.source]
role = "listener"
source = "simulated"
options = { shape = [32, 32], frames = 1000000, rate = 300 }
out = "@tcp://127.0.0.1:*"
""")
    supervisor = Supervisor(tmp_path / "supervisor", chain)
    try:
        wait_for(lambda: supervisor.state("alone:source") == "RUNNING", 30, "source RUNNING")
        wait_for(lambda: "READY source" in supervisor.log("alone:source"), 15, "READY")
        began = time.monotonic()
        stopped = supervisor.ctl("stop", "alone:source")
        seconds = time.monotonic() - began
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        info = supervisor.info("alone:source")
        log = supervisor.log("alone:source")
        assert info["statename"] == "STOPPED"
        assert info["exitstatus"] == 0, log[-3000:]  # it exited, it was not killed
        assert seconds < 15, f"supervisorctl stop took {seconds:.1f} s"
        assert logged_ledger(log)["outputs"][0]["dropped"]  # what no peer took is counted
    finally:
        supervisor.stop()


def test_no_upstream_stops_at_once(service, ipc):
    operator = service("operator", "--in", ">" + ipc(), "--out", "@" + ipc(), name="operator")
    stop_within(operator, 3.0)
    assert " WARNING " not in operator.output(), operator.output()


def test_mid_run_blocked_on_a_full_peer_stops_within_its_drain(service, ipc, tmp_path):
    hop1, hop2, stats = ipc(), ipc(), ipc()
    sink = service("publisher", "--in", ">" + hop2, name="sink")
    operator = service("operator", *drain_config(tmp_path, 2.0), "--in", ">" + hop1,
                       "--out", "@" + hop2, "--out-option", "hwm=5", "--status", stats,
                       name="operator")
    os.kill(sink.process.pid, signal.SIGSTOP)  # a full peer: it takes nothing more
    source = service("listener", "--source", "simulated", "-o", "shape=[256,256]",
                     "-o", "rate=2000", "-o", "frames=1000000", "--out", "@" + hop1,
                     name="source")
    try:
        # blocked: the stopped sink's buffers are full, and the operator's queue with them
        wait_for(lambda: status(stats)["queue"]["depth"] >= 10, 20, "the operator to block")
        stop_within(operator, 2.0 + EXIT_MARGIN_S)
        assert "abandoning sends still waiting for a peer" in operator.output(), \
            operator.output()[-4000:]
    finally:
        os.kill(sink.process.pid, signal.SIGCONT)
        for process in (source, sink):
            process.process.kill()
            process.process.wait()


def test_a_second_signal_exits_at_once_with_the_ledger(service, ipc):
    stats = ipc()
    source = service("listener", *SOURCE, "--out", "@" + ipc(), "--status", stats,
                     name="source")
    # its run has begun, so the stop has a Start with no peer to wait for
    wait_for(lambda: status(stats)["queue"]["sent"], 10, "the source's run to begin")
    source.signal(signal.SIGTERM)
    wait_for(lambda: "draining and stopping" in source.output(), 5, "the first signal")
    began = time.monotonic()
    source.signal(signal.SIGINT)
    code = exit_within(source, 5)
    assert time.monotonic() - began < 2.0
    assert code == 128 + signal.SIGINT
    assert "second SIGINT" in source.output()
    assert final_ledger(source)["outputs"][0]["sent"] == 0


def test_repeated_sighups_stop_it_once_as_sigterm_does(service, ipc):
    """A service's parent-death signal (services.processes) is SIGHUP, which the kernel
    sends more than once: the service stops once, as on SIGTERM, its run ended by a Stop."""
    hop, stats = ipc(), ipc()
    service("publisher", "--in", ">" + hop, "--sink", "stats", "--status", stats, name="sink")
    source = service("listener", *SOURCE, "--out", "@" + hop, name="source")
    wait_for(lambda: sink_frames(stats) > 10, 20, "frames at the sink")
    source.signal(signal.SIGHUP)
    source.signal(signal.SIGHUP)
    assert exit_within(source, 10) == 0, source.output()
    assert "received SIGHUP; draining" in source.output()
    assert "second SIGHUP" not in source.output()
    wait_for(lambda: sink_runs(stats)[-1]["complete"], 10, "the run's Stop at the sink")


HELD_LOG = """
import logging, threading, time
from services.serve import _exit_now, setup_logging

class Ended:  # what _exit_now reads of a runtime: its final stats
    def stats(self):
        return {}

setup_logging("info", "t")
handler = logging.getLogger().handlers[0]
held = threading.Event()
threading.Thread(target=lambda: (handler.acquire(), held.set(), time.sleep(60)),
                 daemon=True).start()
held.wait()
_exit_now("t", Ended(), "a test", 7)
"""


def test_an_exit_at_once_is_not_held_up_by_a_lock_its_log_needs():
    """A second signal (or the last resort) may come while another thread holds the log's
    lock, or, in a signal handler, while the main thread does: the process still ends."""
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-c", HELD_LOG], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 7, done.stdout + done.stderr
    assert time.monotonic() - began < 10


# --- a service that waits says what for ---------------------------------------------------

def test_a_source_without_a_consumer_says_what_it_waits_for(service, ipc, tmp_path):
    out = ipc()
    source = service("listener", *drain_config(tmp_path, 1.0), *SOURCE, "--out", "@" + out,
                     name="source")
    wait_for(lambda: "waiting 5 s to send" in source.output(), 12, "the first wait line")
    assert f"nothing has connected to {out} yet" in source.output(), source.output()
    assert " WARNING " not in source.output()


def test_inputs_with_no_peer_say_why(service):
    """Connecting to a port nothing accepts on, and to a host name that does not resolve."""
    with socket.socket() as held:  # bound and not listening: connections to it are refused
        held.bind(("127.0.0.1", 0))
        nothing = service("publisher", "--in", f">tcp://127.0.0.1:{held.getsockname()[1]}",
                          name="nothing")
        unresolved = service("publisher", "--in", ">tcp://no-such-host.invalid:5555",
                             name="unresolved")
        wait_for(lambda: "no peer for 5 s" in unresolved.output(), 12, "the first wait line")
        wait_for(lambda: "no peer for 5 s" in nothing.output(), 5, "the first wait line")
    assert "nothing accepts connections at tcp://127.0.0.1:" in nothing.output()
    assert "host name 'no-such-host.invalid' does not resolve" in unresolved.output(), \
        unresolved.output()
