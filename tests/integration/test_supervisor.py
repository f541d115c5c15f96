"""The project's supervisord configuration, for real: a chain generated from a chain file
runs under supervisord; kill -9 of the operator mid-stream is restarted and the sink
counts exactly what was lost; `supervisorctl stop all` loses nothing; a misconfigured
service ends FATAL with a clear message."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from services.status_server import query_status
from tests.support.chains import chain_toml, write
from tests.support.ledgers import logged_ledger, sink_frames, sink_runs
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.mark.slow
def test_kill_9_restarts_and_counts_losses_and_stop_all_loses_nothing(tmp_path, ipc,
                                                                        supervisor):
    # the run outlasts startsecs (3 s; a shorter one waits that long to exit)
    frames, rate = 4000, 250.0
    text, stats = chain_toml(ipc, frames=frames, rate=rate, drain_timeout=3.0)
    sv = supervisor(write(tmp_path / "chain.toml", text))
    names = ["t:source", "t:operator", "t:sink"]

    # RUNNING (after startsecs) only ever follows READY (sockets open)
    for name in names:
        wait_for(lambda n=name: sv.state(n) == "RUNNING", 20, f"{name} RUNNING")
        assert f"READY {name[2:]}" in sv.log(name)
    wait_for(lambda: sink_frames(stats["sink"]) >= 250, 20, "frames at the sink")

    old_pid = sv.info("t:operator")["pid"]
    killed = time.monotonic()
    os.kill(old_pid, signal.SIGKILL)
    wait_for(lambda: sv.info("t:operator")["pid"] not in (0, old_pid), 20, "a new operator")
    spawned = time.monotonic()
    wait_for(lambda: sv.log("t:operator").count("READY operator") == 2, 20, "operator READY")
    ready = time.monotonic()
    at_ready = sink_frames(stats["sink"])
    wait_for(lambda: sink_frames(stats["sink"]) > at_ready, 20, "the stream to resume")
    resumed = time.monotonic()

    run = wait_for(lambda: (sink_runs(stats["sink"]) or [{}])[-1].get("complete")
                   and sink_runs(stats["sink"])[-1], 60, "the run to end")
    link = query_status(stats["sink"])["input"]
    # The source sent `frames` (its Stop says so, and it is what we asked for); the sink's
    # loss figure must be exactly what was sent minus what arrived, by two separate counts.
    assert run["frames_sent"] == frames
    assert link["received"] == run["frames"] + 2  # link ledger: Start + events + Stop
    assert run["duplicates"] == 0
    assert run["lost"] == frames - run["frames"] >= 0
    wait_for(lambda: sv.state("t:source") == "EXITED", 20, "the source to finish")
    assert sv.info("t:source")["exitstatus"] == 0  # a finished run is not restarted

    # clean stop: a second run, stopped mid-stream with every service signalled at once
    sv.rpc.startProcess("t:source", False)
    wait_for(lambda: len(sink_runs(stats["sink"])) == 2
             and sink_runs(stats["sink"])[-1]["frames"] >= 250, 30, "the second run")
    began = time.monotonic()
    result = sv.ctl("stop", "all")
    stop_all_s = time.monotonic() - began
    assert result.returncode == 0, result.stdout + result.stderr
    stopwaitsecs = 3 + 5  # drain_timeout + margin, as generated
    assert stop_all_s < stopwaitsecs, result.stdout
    for name in names:
        info = sv.info(name)
        assert info["statename"] == "STOPPED" and info["exitstatus"] == 0, info
    final = logged_ledger(sv.log("t:sink"))["outputs"][0]["runs"][-1]
    source_sent = logged_ledger(sv.log("t:source"))["input"]["sent"]
    assert final["complete"] and final["frames_sent"] == source_sent < frames
    assert final["frames"] == source_sent and final["lost"] == 0

    print(f"\nsupervisor restart after kill -9 of the operator: new pid after "
          f"{spawned - killed:.2f} s, READY after {ready - killed:.2f} s, stream resumed at the "
          f"sink after {resumed - killed:.2f} s (RUNNING follows once up startsecs=3 s)")
    print(f"frames lost on kill -9: {run['lost']} of {frames} at {rate:.0f} frames/s "
          f"(64x64 uint16); on `supervisorctl stop all`: {final['lost']} of "
          f"{final['frames_sent']}, all stopped in {stop_all_s:.2f} s")


@pytest.mark.slow
def test_misconfigured_services_end_fatal_with_a_clear_message(tmp_path, supervisor):
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    busy = held.getsockname()[1]
    text = f"""
name = "bad"

[services.bad-address]  # 192.0.2.1 (TEST-NET-1) is on no host
role = "listener"
source = "simulated"
out = "@tcp://192.0.2.1:*"

[services.port-in-use]
role = "listener"
source = "simulated"
out = "@tcp://127.0.0.1:{busy}"

[services.unknown-operator]
role = "operator"
operator = "no_such_operator"
in = "@tcp://127.0.0.1:*"
out = "@tcp://127.0.0.1:*"
"""
    try:
        sv = supervisor(write(tmp_path / "bad.toml", text))
        expected = {
            "bad:bad-address": "cannot bind tcp://192.0.2.1",
            "bad:port-in-use": "Address already in use",
            "bad:unknown-operator": "no operator named 'no_such_operator'",
        }
        for name, message in expected.items():
            # four tries of a Python start each: slow on a busy machine
            wait_for(lambda n=name: sv.state(n) == "FATAL", 90, f"{name} FATAL")
            info = sv.info(name)
            assert "Exited too quickly" in info["spawnerr"]
            log = sv.log(name)
            assert message in log and "error:" in log
            assert "READY" not in log  # it never claimed to be ready
            tries = [line for line in log.splitlines() if line.startswith("error: ")]
            assert len(tries) == 4, log  # the first try + startretries=3, then it gave up
        supervisord_log = (sv.conf.parent / "log" / "supervisord.log").read_text()
        assert "exited: port-in-use (exit status 2; not expected)" in supervisord_log
        assert "gave up: port-in-use entered FATAL state, too many start retries" \
            in supervisord_log
    finally:
        held.close()


@pytest.mark.slow
def test_a_source_run_shorter_than_startsecs_is_never_repeated(tmp_path, ipc, supervisor):
    """Issue 9 item 3: a run of 0.2 s exited 0 within startsecs, which supervisor took for
    a failed start: it ran it three times more, then marked it FATAL. The source now stays
    up until startsecs has passed, so its exit 0 is a clean end, and final."""
    text, stats = chain_toml(ipc, name="short", frames=40, rate=200.0)
    sv = supervisor(write(tmp_path / "chain.toml", text))
    wait_for(lambda: sv.state("short:source") == "EXITED", 30, "the source to end its run")
    info = sv.info("short:source")
    assert info["exitstatus"] == 0 and info["spawnerr"] == "", info
    log = sv.log("short:source")
    assert log.count("READY source") == 1 and "EXIT source 0" in log
    assert "so that supervisor takes this for a clean end" in log
    runs = sink_runs(stats["sink"])
    assert len(runs) == 1 and runs[0]["frames"] == 40 and runs[0]["complete"], runs
    supervisord_log = (sv.conf.parent / "log" / "supervisord.log").read_text()
    assert "exited: source (exit status 0; expected)" in supervisord_log
    assert supervisord_log.count("spawned: 'source'") == 1, supervisord_log
