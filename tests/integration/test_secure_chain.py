"""Secure by default, tried as an attacker would: the default chain (deploy/chain.toml, its
ports and run made small), deployed under supervisord and with `arroyo run`, while rogue
PULL, SUB, PUSH, PUB and REQ sockets on another host (a network namespace on a veth link)
connect to every port a service of the chain binds. They take 0 frames and 0 status
answers and complete 0 handshakes; the chain delivers every frame, with nothing foreign
in any ledger. Where a link crosses hosts (CURVE), each rogue's refusal is counted in the
binding service's ledger and logged. Another test rotates a key, and so the allow-list,
while a chain runs under supervisord: the old key's connection is closed without
restarting the server, and the client, restarted with the new key, finishes the run."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from services.processes import free_port
from tests.support.chains import write
from tests.support.ledgers import logged_ledger, sink_runs, status
from tests.support.netns import Namespaces, ip, require_root
from tests.support.supervisord import Supervisor
from tests.support.waiting import wait_for, wait_or_kill

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
FRAMES, RATE = 400, 100.0
DEFAULT_PORTS = (5555, 5556, 6000, 6001, 6002)
READY = re.compile(r"READY (\S+)((?: \w+=\S+)*)")


class Outside:
    """Another host: a network namespace whose one link leads to this host at ``here``."""

    def __init__(self) -> None:
        self.namespaces = Namespaces()
        self.name = self.namespaces.add("rogue")
        self.link = f"arr{self.namespaces.tag}"
        net = f"10.{100 + secrets.randbelow(150)}.{secrets.randbelow(250)}"
        self.here, self.there = f"{net}.1", f"{net}.2"
        ip("link", "add", self.link, "type", "veth", "peer", "name", "eth0", "netns", self.name)
        ip("addr", "add", f"{self.here}/30", "dev", self.link)
        ip("link", "set", self.link, "up")
        ip("-n", self.name, "addr", "add", f"{self.there}/30", "dev", "eth0")
        ip("-n", self.name, "link", "set", "eth0", "up")

    def rogue(self, ports: list[int], seconds: float) -> subprocess.Popen:
        """Rogue sockets of every kind at each of ``ports`` of this host, for ``seconds``."""
        return subprocess.Popen(
            [*self.namespaces.exec_prefix(self.name), sys.executable, "-m",
             "tests.support.rogue", "--seconds", str(seconds),
             *(f"tcp://{self.here}:{port}" for port in ports)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def remove(self) -> None:
        subprocess.run(["ip", "link", "del", self.link], capture_output=True, timeout=20)
        self.namespaces.remove()


@pytest.fixture(scope="module")
def outside():
    require_root()
    host = Outside()
    yield host
    host.remove()


@pytest.fixture
def rogues():
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        wait_or_kill(process, 10)


def default_chain(directory: Path, source_host: str | None = None) -> tuple[Path, dict]:
    """deploy/chain.toml with free ports and a short run of small frames (``source_host``:
    the source placed on another host than the operator and the sink)."""
    text = (ROOT / "deploy/chain.toml").read_text()
    ports = {old: free_port() for old in DEFAULT_PORTS}
    for old, new in ports.items():
        text = text.replace(f":{old}", f":{new}")
    small = text.replace('shape = [512, 512], dtype = "uint16", frames = 1000, rate = 50',
                         f'shape = [64, 64], dtype = "uint16", frames = {FRAMES}, rate = {RATE}')
    assert small != text, "deploy/chain.toml's source options changed: update this test"
    if source_host:
        small = small.replace('role = "listener"', f'role = "listener"\nhost = "{source_host}"')
    return write(directory / "chain.toml", small), ports


def bound_addresses(log: str) -> dict[str, list[str]]:
    """The addresses each service's READY line says it listens at."""
    found: dict[str, list[str]] = {}
    for name, pairs in READY.findall(log):
        found[name] = [pair.split("=", 1)[1] for pair in pairs.split()]
    return found


def finished(rogue: subprocess.Popen) -> dict[str, int]:
    out, err = rogue.communicate(timeout=60)
    assert rogue.returncode == 0, err
    return json.loads(out)


def refusals(ledger: dict[str, Any]) -> int:
    links = [ledger.get("input") or {}, *(ledger.get("outputs") or [])]
    return sum(sum((link.get("connections") or {}).get("refused", {}).values())
               for link in links)


def assert_delivered_and_clean(sink_ledger: dict[str, Any], ledgers: list[dict[str, Any]]):
    run = sink_ledger["outputs"][0]["runs"][-1]
    assert (run["frames"], run["lost"], run["complete"]) == (FRAMES, 0, True), run
    for ledger in ledgers:  # nothing injected: no foreign message, no malformed one
        if ledger.get("input") and ledger["input"]["kind"] == "link":
            assert ledger["input"]["malformed"] == {}, ledger["input"]
            assert len(ledger["input"]["senders"]) == 1, ledger["input"]["senders"]


def test_default_chain_under_supervisord_gives_an_outsider_nothing(tmp_path, outside, rogues):
    chain, ports = default_chain(tmp_path)
    rogues.append(outside.rogue(list(ports.values()), seconds=8))
    supervisor = Supervisor(tmp_path / "supervisor", chain)
    try:
        names = ("source", "operator", "sink")
        wait_for(lambda: all("READY" in supervisor.log(f"arroyo:{n}") for n in names), 30,
                 "every service READY")
        for name in names:
            for address in bound_addresses(supervisor.log(f"arroyo:{name}"))[name]:
                assert address.startswith("tcp://127.0.0.1:"), (name, address)
        sink_status = f"tcp://127.0.0.1:{ports[6002]}"
        wait_for(lambda: (sink_runs(sink_status) or [{}])[-1].get("complete"), 30,
                 "the run to reach the sink")
        ledgers = [status(f"tcp://127.0.0.1:{ports[port]}") for port in (6001, 6002)]
        got = finished(rogues[-1])
        assert got["sockets"] == 5 * len(ports)
        assert (got["received"], got["answers"], got["handshakes"]) == (0, 0, 0), got
        assert_delivered_and_clean(ledgers[1], ledgers)
        # loopback only: the outsider's connections never reached a service to refuse
        assert sum(refusals(ledger) for ledger in ledgers) == 0
    finally:
        supervisor.stop()


def test_a_link_across_hosts_refuses_and_counts_every_rogue(tmp_path, outside, rogues,
                                                            run_chain):
    chain, ports = default_chain(tmp_path, source_host=outside.here)
    run = run_chain(chain)  # (its output read as it comes: a full pipe would block it)
    rogues.append(outside.rogue(list(ports.values()), seconds=8))
    sink_status = f"tcp://127.0.0.1:{ports[6002]}"
    wait_for(lambda: _answers(sink_status) and (sink_runs(sink_status) or [{}])[-1].get(
        "complete"), 40, "the run to reach the sink")
    got = finished(rogues[-1])
    operator = status(f"tcp://127.0.0.1:{ports[6001]}")
    sink = status(sink_status)
    run.process.terminate()
    run.finish(60)
    output = run.text()
    assert (got["received"], got["answers"], got["handshakes"]) == (0, 0, 0), got
    assert_delivered_and_clean(sink, [operator, sink])
    source = logged_ledger("\n".join(line for line in output.splitlines()
                                     if "[source]" in line))
    bound = bound_addresses(output)
    assert bound["source"] == [f"tcp://0.0.0.0:{ports[5555]}",
                               f"tcp://127.0.0.1:{ports[6000]}"], bound
    assert "out: CURVE server (a link crosses hosts)" in output
    # the five rogue sockets at the source's CURVE port: each refused, counted, logged
    assert refusals(source) >= 5, source["outputs"][0]["connections"]
    assert f"from {outside.there}:" in output and "refused a connection on" in output


def _answers(endpoint: str) -> bool:
    try:
        status(endpoint)
        return True
    except TimeoutError:
        return False


def test_rotating_a_key_while_the_chain_runs(tmp_path):
    chain, ports = default_chain(tmp_path, source_host="127.0.0.2")
    chain.write_text(chain.read_text().replace(f"frames = {FRAMES}, rate = {RATE}",
                                               f"frames = {FRAMES * 2}, rate = {RATE}"))
    supervisor = Supervisor(tmp_path / "supervisor", chain)
    try:
        keys = tmp_path / "keys"
        old_key = (keys / "operator.key").read_text()
        sink_status = f"tcp://127.0.0.1:{ports[6002]}"
        wait_for(lambda: _answers(sink_status) and sink_runs(sink_status), 30, "a run")
        rotated = subprocess.run([sys.executable, "-m", "services", "keys", "rotate",
                                  "operator", "--dir", str(keys)],
                                 capture_output=True, text=True, timeout=30)
        assert rotated.returncode == 0, rotated.stderr
        assert (keys / "operator.key").read_text() != old_key
        source_log = lambda: supervisor.log("arroyo:source")  # noqa: E731
        wait_for(lambda: "allow-list changed" in source_log(), 15, "the source to see it")
        assert "closed 1 connection(s)" in source_log()
        # the operator, still on its old key, is cut off and refused when it asks again
        wait_for(lambda: "refused our key" in supervisor.log("arroyo:operator"), 15,
                 "the operator's old key to be refused")
        restarted = supervisor.ctl("restart", "arroyo:operator")
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        wait_for(lambda: (sink_runs(sink_status) or [{}])[-1].get("complete"), 40,
                 "the run to end at the sink")
        run = sink_runs(sink_status)[-1]
        # what was in flight on the closed connection is lost, and counted
        assert run["frames"] + run["lost"] == 2 * FRAMES, run
        assert source_log().count("READY source") == 1  # the server was never restarted
    finally:
        supervisor.stop()


def test_opting_out_is_warned_about_at_every_start(tmp_path):
    chain, _ = default_chain(tmp_path, source_host="10.0.0.1")
    chain.write_text('insecure = true\n' + chain.read_text())
    for _ in range(2):  # (a start of the service, as far as its settings go)
        started = subprocess.run(
            [sys.executable, "-m", "services", "service", str(chain), "source", "--check",
             "--log-level", "warning"], capture_output=True, text=True, timeout=60)
        assert started.returncode == 0, started.stderr
        assert "chain 'arroyo' is insecure (insecure = true in" in started.stdout
    assert not (tmp_path / "keys").exists()  # no CURVE, so no keys made either
