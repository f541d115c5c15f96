"""Clean stops in every state, with real processes (issue 9, items 1, 2 and 4).

- `arroyo run` stops its chain on SIGHUP as on SIGTERM, and its services never outlive it,
  even when it is SIGKILLed (their ports are free again).
- A service exits within its grace period (drain_timeout + services.serve.EXIT_MARGIN_S)
  with no peer downstream, none upstream, and mid-run blocked on a full peer; under
  supervisord `supervisorctl stop` returns within stopwaitsecs with exit status 0. A second
  signal exits at once. The final ledger is logged every time.
- A run that ends normally logs no WARNING line.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from deploy_support import Supervisor, chain_toml, logged_ledger, sink_runs, write
from harness import exit_within, final_ledger, status, wait_for, wait_or_kill

from services.serve import EXIT_MARGIN_S

pytestmark = pytest.mark.integration

SOURCE = ["--source", "simulated", "-o", "shape=[32,32]", "-o", "rate=300",
          "-o", "frames=1000000"]  # a run that lasts far longer than any test


class Run:
    """`python -m services run CHAIN` as a child process, its output collected."""

    def __init__(self, chain_file) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services", "run", str(chain_file)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)

    def pids(self) -> dict[str, int]:
        """Each service's pid, from the 'READY chain' line."""
        line = next(line for line in self.lines if line.startswith("READY chain"))
        return {name: int(pid) for name, pid in re.findall(r"(\w+) pid (\d+)", line)}


@pytest.fixture
def run_chain():
    runs: list[Run] = []

    def start(chain_file) -> Run:
        runs.append(Run(chain_file))
        return runs[-1]

    yield start
    for run in runs:
        if run.process.poll() is None:
            run.process.terminate()
            wait_or_kill(run.process, 30)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie whose parent has not reaped it yet has exited all the same
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def port_free(port: int) -> bool:
    """Whether a service could bind ``port`` again (ZeroMQ binds with SO_REUSEADDR, so
    connections of the old process left in TIME_WAIT do not count)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def ready_chain(tmp_path, run_chain, **options) -> tuple[Run, str, dict[str, str]]:
    text, stats = chain_toml(frames=1_000_000, rate=200, **options)
    run = run_chain(write(tmp_path / "chain.toml", text))
    wait_for(lambda: any(line.startswith("READY chain") for line in run.lines), 30,
             "the chain to be ready")
    return run, text, stats


# --- item 1: `arroyo run` and its services ------------------------------------------------

def test_sighup_stops_the_chain_like_sigterm(tmp_path, run_chain):
    run, _, stats = ready_chain(tmp_path, run_chain)
    wait_for(lambda: sink_runs(stats["sink"]) and sink_runs(stats["sink"])[-1]["frames"] > 50,
             20, "frames at the sink")
    pids = run.pids()
    run.process.send_signal(signal.SIGHUP)  # what a closed terminal sends
    assert run.process.wait(30) == 0, run.text()[-3000:]
    run.reader.join(5)
    assert "SIGHUP: stopping the chain" in run.text()
    assert "exit codes source 0, operator 0, sink 0" in run.text(), run.text()[-3000:]
    assert not any(alive(pid) for pid in pids.values())


def test_services_do_not_outlive_a_killed_arroyo_run(tmp_path, run_chain):
    run, text, stats = ready_chain(tmp_path, run_chain)
    pids = run.pids()
    ports = [int(port) for port in re.findall(r"127\.0\.0\.1:(\d+)", text)]
    assert set(pids) == {"source", "operator", "sink"} and len(ports) == 5
    run.process.kill()
    run.process.wait()
    # each service is sent SIGTERM by the kernel and stops as it always does
    wait_for(lambda: not any(alive(pid) for pid in pids.values()), 3 + EXIT_MARGIN_S + 2,
             "every service to exit after `arroyo run` was killed")
    wait_for(lambda: all(port_free(port) for port in ports), 5, "every port to be free")


# --- item 2: a stop within the grace period in every state ----------------------------------

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


def test_no_downstream_under_supervisord_stops_within_stopwaitsecs(tmp_path):
    """The case measured at ~17 s: a source with no consumer, default drain_timeout (10 s),
    stopwaitsecs 15."""
    chain = write(tmp_path / "chain.toml", f"""
name = "alone"

[services.source]
role = "listener"
source = "simulated"
options = {{ shape = [32, 32], frames = 1000000, rate = 300 }}
out = "@tcp://127.0.0.1:{_free_port()}"
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


def test_no_upstream_stops_at_once(service, tcp):
    operator = service("operator", "--in", ">" + tcp(), "--out", "@" + tcp(), name="operator")
    stop_within(operator, 3.0)
    assert " WARNING " not in operator.output(), operator.output()


def test_mid_run_blocked_on_a_full_peer_stops_within_its_drain(service, tcp, tmp_path):
    hop1, hop2, stats = tcp(), tcp(), tcp()
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


def test_a_second_signal_exits_at_once_with_the_ledger(service, tcp):
    stats = tcp()
    source = service("listener", *SOURCE, "--out", "@" + tcp(), "--status", stats,
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


# --- item 4: a normal end is not a warning --------------------------------------------------

def test_a_clean_three_service_run_logs_no_warning(tmp_path, run_chain):
    text, stats = chain_toml(frames=300, rate=300)
    run = run_chain(write(tmp_path / "chain.toml", text))
    wait_for(lambda: (sink_runs(stats["sink"]) or [{}])[-1].get("complete"), 30,
             "the run to end at the sink")
    run.process.send_signal(signal.SIGINT)
    assert run.process.wait(30) == 0, run.text()[-3000:]
    run.reader.join(5)
    assert "disconnected between runs" in run.text()  # the source left after its Stop
    warnings = [line for line in run.lines if " WARNING " in line]
    assert not warnings, "\n".join(warnings)


def _free_port() -> int:
    from services.processes import free_port

    return free_port()


# --- item 8: a service that waits says what for -------------------------------------------

def test_a_source_without_a_consumer_says_what_it_waits_for(service, tcp, tmp_path):
    out = tcp()
    source = service("listener", *drain_config(tmp_path, 1.0), *SOURCE, "--out", "@" + out,
                     name="source")
    wait_for(lambda: "waiting 5 s to send" in source.output(), 12, "the first wait line")
    assert f"nothing has connected to {out} yet" in source.output(), source.output()
    assert " WARNING " not in source.output()


def test_inputs_with_no_peer_say_why(service, tcp):
    """Connecting to a port nothing binds, and to a host name that does not resolve."""
    nothing = service("publisher", "--in", ">" + tcp(), name="nothing")
    unresolved = service("publisher", "--in", ">tcp://no-such-host.invalid:5555",
                         name="unresolved")
    wait_for(lambda: "no peer for 5 s" in unresolved.output(), 12, "the first wait line")
    wait_for(lambda: "no peer for 5 s" in nothing.output(), 5, "the first wait line")
    assert "nothing accepts connections at tcp://127.0.0.1:" in nothing.output()
    assert "host name 'no-such-host.invalid' does not resolve" in unresolved.output(), \
        unresolved.output()
