"""Issue 9 item 2 under a real supervisord: in each state (no upstream, mid-run, blocked on
a full peer) `supervisorctl stop` returns within the generated stopwaitsecs, the program
exited 0 (it was not killed) and logged its final ledger."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.support.chains import write
from tests.support.ledgers import logged_ledger
from tests.support.supervisord import Supervisor
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DRAIN_S = 2.0  # each service's drain_timeout: its grace period is this plus a margin


def chain(tmp_path, ipc, state: str):
    hops = [ipc("hop1"), ipc("hop2")]  # (the stops are the subject, not the transport)
    source = f"""
[services.source]
role = "listener"
source = "simulated"
options = {{ shape = [256, 256], frames = 1000000, rate = 2000 }}
out = "@{hops[0]}"
drain_timeout = {DRAIN_S}
"""
    operator = f"""
[services.operator]
role = "operator"
in = ">{hops[0]}"
out = "@{hops[1]}"
out_options = {{ hwm = 5 }}
drain_timeout = {DRAIN_S}
"""
    sink = f"""
[services.sink]
role = "publisher"
in = ">{hops[1]}"
drain_timeout = {DRAIN_S}
"""
    services = {"no-upstream": operator, "mid-run": source + operator + sink,
                "blocked": source + operator + sink}[state]
    return write(tmp_path / "chain.toml", f'name = "stops"\nexternal = ["{hops[0]}"]\n'
                 + services)


@pytest.mark.parametrize("state", ["no-upstream", "mid-run", "blocked"])
def test_supervisorctl_stop_ends_every_state_cleanly_within_stopwaitsecs(tmp_path, ipc, state):
    supervisor = Supervisor(tmp_path / "supervisor", chain(tmp_path, ipc, state))
    try:
        wait_for(lambda: supervisor.state("stops:operator") == "RUNNING", 30, "RUNNING")
        wait_for(lambda: "READY operator" in supervisor.log("stops:operator"), 15, "READY")
        if state != "no-upstream":
            wait_for(lambda: "READY sink" in supervisor.log("stops:sink"), 15, "sink READY")
            time.sleep(1.0)  # frames flowing (mid-run), or the paused sink's buffers full
        if state == "blocked":
            os.kill(supervisor.info("stops:sink")["pid"], signal.SIGSTOP)
            time.sleep(2.0)
        began = time.monotonic()
        stopped = supervisor.ctl("stop", "stops:operator")
        seconds = time.monotonic() - began
        if state == "blocked":
            os.kill(supervisor.info("stops:sink")["pid"], signal.SIGCONT)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        info, log = supervisor.info("stops:operator"), supervisor.log("stops:operator")
        assert info["statename"] == "STOPPED"
        assert info["exitstatus"] == 0, log[-3000:]  # it exited by itself, not killed
        # the generated stopwaitsecs is drain_timeout + 5 s (services/deploy.py)
        assert seconds < DRAIN_S + 5, f"supervisorctl stop took {seconds:.1f} s"
        assert "outputs" in logged_ledger(log)  # the final ledger, always
    finally:
        supervisor.stop()
