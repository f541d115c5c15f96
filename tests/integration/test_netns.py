"""A chain across three "hosts": network namespaces on one bridge, one service each,
connected over TCP by host address, from one chain file. Every frame of a run arrives;
the source host's service restarts and is reconnected to by itself; the middle host's link
goes down for a few seconds mid-run and the chain recovers, with the sink counting what
(if anything) was lost."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from services.chain import load_chain, service_command
from services.processes import ServiceProcess
from tests.support.chains import write
from tests.support.ledgers import sink_frames, sink_runs
from tests.support.netns import Namespaces, ip, require_root
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

HOSTS = {"source": "10.77.0.1", "operator": "10.77.0.2", "sink": "10.77.0.3"}
FRAMES, RATE = 1200, 300.0
OUTAGE_S = 3.0


def chain_text(status_dir) -> str:
    # Per link, the binding side is chosen: the source binds and the operator connects to
    # it; the operator connects its output to the sink, which binds.
    return f"""
name = "three-hosts"

[services.source]
role = "listener"
host = "{HOSTS['source']}"
source = "simulated"
options = {{ shape = [64, 64], frames = {FRAMES}, rate = {RATE} }}
out = "@tcp://*:5555"
status = "ipc://{status_dir}/source.status"

[services.operator]
role = "operator"
host = "{HOSTS['operator']}"
in = ">tcp://{{source}}:5555"
out = ">tcp://{{sink}}:5556"
status = "ipc://{status_dir}/operator.status"

[services.sink]
role = "publisher"
host = "{HOSTS['sink']}"
sink = "stats"
options = {{ interval = 0 }}
in = "@tcp://*:5556"
status = "ipc://{status_dir}/sink.status"
"""


@pytest.fixture
def hosts():
    """Namespaces a, b, c on a bridge in a fourth ("switch") namespace; removed at the end."""
    require_root()
    namespaces = Namespaces()
    try:
        switch = namespaces.add("sw")
        ip("-n", switch, "link", "add", "br0", "type", "bridge")
        ip("-n", switch, "link", "set", "br0", "up")
        made = {}
        for name, address in HOSTS.items():
            ns = namespaces.add(name[:2])
            namespaces.veth(ns, "eth0", switch, f"p-{name[:2]}")
            ip("-n", switch, "link", "set", f"p-{name[:2]}", "master", "br0", "up")
            ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            made[name] = ns
        yield made
    finally:
        namespaces.remove()


@pytest.mark.slow
def test_chain_across_three_hosts_delivers_and_recovers_from_a_link_outage(tmp_path, hosts):
    chain_file = write(tmp_path / "chain.toml", chain_text(tmp_path))
    chain = load_chain(chain_file)
    assert chain.problems() == []
    # every link crosses hosts, so each is CURVE: the chain's keys, as a user makes them
    made = subprocess.run([sys.executable, "-m", "services", "keys", "chain", str(chain_file)],
                          capture_output=True, text=True, timeout=30)
    assert made.returncode == 0, made.stderr
    status = {name: f"ipc://{tmp_path}/{name}.status" for name in HOSTS}
    started: list[ServiceProcess] = []

    def start(name: str) -> ServiceProcess:
        started.append(ServiceProcess.from_argv(service_command(chain_file, name), name,
                                                prefix=Namespaces.exec_prefix(hosts[name])))
        started[-1].wait_ready()
        return started[-1]

    try:
        start("sink")
        start("operator")
        source = start("source")
        first = wait_for(lambda: _complete(status["sink"], 1), 30, "the first run")
        assert first["frames_sent"] == first["frames"] == FRAMES and first["lost"] == 0
        assert source.process.wait(10) == 0

        # a restarted service on the source host is found again by the operator
        start("source")
        wait_for(lambda: len(sink_runs(status["sink"])) == 2
                 and sink_frames(status["sink"]) >= 200, 30, "the second run to flow")
        middle = hosts["operator"]
        ip("-n", middle, "link", "set", "eth0", "down")
        down = time.monotonic()
        # the outage itself (not a wait for a condition), sampled once frames that were
        # already past the link have landed
        time.sleep(1.0)
        at_mid = sink_frames(status["sink"])
        time.sleep(OUTAGE_S - 1.0)
        at_up = sink_frames(status["sink"])
        ip("-n", middle, "link", "set", "eth0", "up")
        up = time.monotonic()
        wait_for(lambda: sink_frames(status["sink"]) > at_up, 60, "frames after the outage")
        recovered = time.monotonic()
        second = wait_for(lambda: _complete(status["sink"], 2), 60, "the second run to end")
    finally:
        for process in reversed(started):
            process.stop(timeout=10)

    assert at_up == at_mid  # nothing got through the downed link
    assert second["frames_sent"] == FRAMES  # the source was held back, not cut short
    assert second["lost"] == FRAMES - second["frames"] >= 0
    print(f"\nthree namespaces, {FRAMES} frames at {RATE:.0f}/s: run 1 lost {first['lost']}; "
          f"middle link down {up - down:.1f} s: frames resumed {recovered - up:.2f} s after "
          f"the link came back, run 2 lost {second['lost']} of {FRAMES} "
          "(PUSH blocks: the source waits instead of dropping)")


def _complete(endpoint: str, count: int):
    runs = sink_runs(endpoint)
    return len(runs) >= count and runs[count - 1]["complete"] and runs[count - 1]
