"""Reliable mode across "hosts" (issue 16): the three-namespace chain of test_netns.py with
``reliable = true``, the middle host's link down for 3 s mid-run, the source at a steady
rate. The senders' heartbeat timeout is 1 s, so the outage breaks both of the middle's
connections (what was in flight on them is gone) and the windows must resend it. Every
frame arrives once, intact: the sink's record file (one line per frame that reached its
publish, with its crc32 check) is read here and compared with 0..N-1."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from services.chain import load_chain, service_command
from services.processes import ServiceProcess
from tests.integration.test_netns import HOSTS, hosts  # noqa: F401 (the fixture)
from tests.support.chains import write
from tests.support.ledgers import final_ledger, sink_frames, sink_runs
from tests.support.netns import Namespaces, ip
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

FRAMES, RATE = 1500, 300.0
OUTAGE_S = 3.0


def chain_text(directory) -> str:
    return f"""
name = "reliable-hosts"
reliable = true

[services.source]
role = "listener"
host = "{HOSTS['source']}"
source = "simulated"
options = {{ shape = [64, 64], frames = {FRAMES}, rate = {RATE}, checksum = true }}
out = "@tcp://*:5555"
out_options = {{ heartbeat_timeout_ms = 1000 }}
status = "ipc://{directory}/source.status"

[services.operator]
role = "operator"
host = "{HOSTS['operator']}"
in = ">tcp://{{source}}:5555"
out = ">tcp://{{sink}}:5556"
out_options = {{ heartbeat_timeout_ms = 1000 }}
status = "ipc://{directory}/operator.status"

[services.sink]
role = "publisher"
host = "{HOSTS['sink']}"
sink = "arroyo_core.verify:VerifyingSink"
options = {{ record = "{directory}/received.txt" }}
in = "@tcp://*:5556"
status = "ipc://{directory}/sink.status"
"""


@pytest.mark.slow
def test_reliable_chain_loses_nothing_across_a_link_outage(tmp_path, hosts):  # noqa: F811
    chain_file = write(tmp_path / "chain.toml", chain_text(tmp_path))
    assert load_chain(chain_file).problems() == []
    # every link crosses hosts, so each is CURVE: the chain's keys, as a user makes them
    made = subprocess.run([sys.executable, "-m", "services", "keys", "chain", str(chain_file)],
                          capture_output=True, text=True, timeout=30)
    assert made.returncode == 0, made.stderr
    endpoints = {name: f"ipc://{tmp_path}/{name}.status" for name in HOSTS}
    started: list[ServiceProcess] = []
    try:
        for name in ("sink", "operator", "source"):
            started.append(ServiceProcess.from_argv(
                service_command(chain_file, name), name,
                prefix=Namespaces.exec_prefix(hosts[name])))
            started[-1].wait_ready()
        wait_for(lambda: sink_frames(endpoints["sink"]) >= 300, 30, "frames at the sink")
        ip("-n", hosts["operator"], "link", "set", "eth0", "down")
        time.sleep(OUTAGE_S)  # the outage itself, not a wait for a condition
        at_up = sink_frames(endpoints["sink"])
        ip("-n", hosts["operator"], "link", "set", "eth0", "up")
        up = time.monotonic()
        wait_for(lambda: sink_frames(endpoints["sink"]) > at_up, 60, "frames after the outage")
        recovered = time.monotonic() - up
        run = wait_for(lambda: (sink_runs(endpoints["sink"]) or [{}])[0].get("complete")
                       and sink_runs(endpoints["sink"])[0], 60, "the run to end")
    finally:
        for process in reversed(started):
            process.stop(timeout=10)
    source, middle = final_ledger(started[2]), final_ledger(started[1])

    lines = [line.split() for line in (tmp_path / "received.txt").read_text().splitlines()]
    received = [int(frame) for _, frame, _ in lines]
    assert sorted(received) == list(range(FRAMES))  # each frame once, none missing
    assert all(ok == "1" for *_, ok in lines)
    assert run["frames_sent"] == FRAMES and run["lost"] == 0 and run["duplicates"] == 0
    # The outage broke the connections: each sender heard a hello again and resent.
    assert source["outputs"][0]["window"]["resends"] >= 2
    assert middle["outputs"][0]["window"]["resends"] >= 2
    print(f"\nreliable chain over three namespaces, {FRAMES} frames at {RATE:.0f}/s, the "
          f"middle's link down {OUTAGE_S:.0f} s: 0 lost, 0 duplicated; frames again "
          f"{recovered:.2f} s after the link came back; windows: source "
          f"{source['outputs'][0]['window']}, middle {middle['outputs'][0]['window']}")
