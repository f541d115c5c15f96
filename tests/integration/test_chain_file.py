"""`arroyo run` and `arroyo check` on a chain file, with real service processes."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys

import pytest

from services.serve import EXIT_MARGIN_S
from tests.support.arroyo_run import ChainRun
from tests.support.chains import chain_toml, write
from tests.support.ledgers import sink_frames, sink_runs
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def test_run_streams_and_ctrl_c_stops_every_service_without_loss(tmp_path, ipc, run_chain):
    text, stats = chain_toml(ipc, frames=100_000, rate=300)
    run = run_chain(write(tmp_path / "chain.toml", text))
    run.wait_ready()
    for name in ("source", "operator", "sink"):
        assert f"[{name}] READY {name}" in run.text()  # each service's log is shown
    wait_for(lambda: sink_frames(stats["sink"]) >= 200, 20, "frames at the sink")
    run.process.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground
    assert run.finish() == 0, run.text()
    assert "exit codes source 0, operator 0, sink 0" in run.text()
    # the sink saw the run end (the source's Stop got through) and nothing went missing
    summary = [line for line in run.lines if "[sink]" in line and "run summary" in line]
    assert summary and summary[-1].endswith("lost 0"), run.text()[-3000:]


def test_run_ends_when_a_service_fails(tmp_path, ipc, run_chain):
    text, stats = chain_toml(ipc, frames=100_000, rate=100)
    run = run_chain(write(tmp_path / "chain.toml", text))
    run.wait_ready()
    wait_for(lambda: sink_frames(stats["sink"]) > 0, 20, "frames at the sink")
    pid = int(run.text().split("operator pid ")[1].split(",")[0])
    os.kill(pid, signal.SIGKILL)
    assert run.finish() == 1
    assert "operator failed; stopping the chain" in run.text()
    assert "exit codes source 0" in run.text()  # the others were stopped cleanly


def test_check_accepts_a_good_chain_and_names_what_is_wrong(tmp_path, ipc):
    text, _ = chain_toml(ipc)
    good = write(tmp_path / "good.toml", text)
    result = subprocess.run([sys.executable, "-m", "services", "check", str(good)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "links ok: 2 connection(s)" in result.stdout
    assert result.stdout.count("config ok") == 3

    unbound = 1  # a port no service of the chain binds (`check` opens no socket)
    bad_text = re.sub(r'in = ">tcp://\{operator\}:\d+"', f'in = ">tcp://{{operator}}:{unbound}"',
                      text.replace('operator = "passthrough"', 'operator = "no_such_operator"'))
    bad = write(tmp_path / "bad.toml", bad_text)
    result = subprocess.run([sys.executable, "-m", "services", "check", str(bad)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "no operator named 'no_such_operator'" in result.stdout
    assert f"link: [sink] in >tcp://127.0.0.1:{unbound}: no service" in result.stdout


def test_run_starts_each_service_by_name_from_the_chain_file(tmp_path, ipc, run_chain):
    """No command line is rebuilt from the chain: each child is `arroyo service FILE NAME`
    and reads its settings (here under the deprecated 'stats' name, too) from the file."""
    text, stats = chain_toml(ipc, frames=100_000, rate=100)
    text = text.replace(f'status = "{stats["sink"]}"', f'stats = "{stats["sink"]}"')
    chain_file = write(tmp_path / "chain.toml", text)
    run = run_chain(chain_file)
    run.wait_ready()
    for name in ("source", "operator", "sink"):
        pid = int(run.text().split(f"{name} pid ")[1].split(",")[0].split()[0])
        argv = open(f"/proc/{pid}/cmdline", "rb").read().decode().split("\0")[:-1]
        assert argv[1:] == ["-P", "-m", "services", "service", str(chain_file), name], argv
    assert "[services.sink] 'stats' is deprecated: call it 'status'" in run.text()
    wait_for(lambda: sink_frames(stats["sink"]) > 0, 20, "frames at the sink (status answers)")
    run.process.send_signal(signal.SIGINT)
    assert run.finish() == 0, run.text()


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


def ready_chain(tmp_path, ipc, run_chain, **options) -> tuple[ChainRun, str, dict[str, str]]:
    text, stats = chain_toml(ipc, frames=1_000_000, rate=200, **options)
    run = run_chain(write(tmp_path / "chain.toml", text))
    run.wait_ready()
    return run, text, stats


# --- no service outlives `arroyo run` ---------------------------------------------------

def test_sighup_stops_the_chain_like_sigterm(tmp_path, ipc, run_chain):
    run, _, stats = ready_chain(tmp_path, ipc, run_chain)
    wait_for(lambda: sink_runs(stats["sink"]) and sink_runs(stats["sink"])[-1]["frames"] > 50,
             20, "frames at the sink")
    pids = run.pids()
    run.process.send_signal(signal.SIGHUP)  # what a closed terminal sends
    assert run.finish() == 0, run.text()[-3000:]
    assert "SIGHUP: stopping the chain" in run.text()
    assert "exit codes source 0, operator 0, sink 0" in run.text(), run.text()[-3000:]
    assert not any(alive(pid) for pid in pids.values())


def test_services_do_not_outlive_a_killed_arroyo_run(tmp_path, ipc, run_chain):
    run, text, stats = ready_chain(tmp_path, ipc, run_chain, tcp_status=True)
    pids = run.pids()
    ports = [int(port) for port in re.findall(r"127\.0\.0\.1:(\d+)", text)]
    assert set(pids) == {"source", "operator", "sink"} and len(ports) == 5
    run.process.kill()
    run.process.wait()
    # each service is sent SIGTERM by the kernel and stops as it always does
    wait_for(lambda: not any(alive(pid) for pid in pids.values()), 3 + EXIT_MARGIN_S + 2,
             "every service to exit after `arroyo run` was killed")
    wait_for(lambda: all(port_free(port) for port in ports), 5, "every port to be free")


# --- a normal end is not a warning --------------------------------------------------------

def test_a_clean_three_service_run_logs_no_warning(tmp_path, ipc, run_chain):
    text, stats = chain_toml(ipc, frames=300, rate=300)
    run = run_chain(write(tmp_path / "chain.toml", text))

    def complete() -> bool:
        try:
            return (sink_runs(stats["sink"]) or [{}])[-1].get("complete", False)
        except TimeoutError:  # the sink is not up yet (a slow start on a busy machine)
            return False

    wait_for(complete, 30, "the run to end at the sink")
    run.process.send_signal(signal.SIGINT)
    assert run.finish() == 0, run.text()[-3000:]
    assert "disconnected between runs" in run.text()  # the source left after its Stop
    warnings = [line for line in run.lines if " WARNING " in line]
    assert not warnings, "\n".join(warnings)
