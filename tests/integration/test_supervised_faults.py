"""A 3-stage PUSH/PULL chain under a real supervisord; the middle stage is SIGKILLed at
random moments, several times, and restarted by supervisord. The loss the ledger reports
must equal the true loss exactly (frames sent minus frames the sink recorded, counted here
from the sink's record file), with nothing duplicated and nothing corrupted (crc32).

The supervisord configuration is written here (until deploy/supervisor provides one)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from pathlib import Path

import pytest
from harness import status, wait_for

from services.processes import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = """
[program:{name}]
command={command}
directory={root}
autorestart={autorestart}
startsecs=0
startretries=20
stopsignal=TERM
stopwaitsecs=20
stdout_logfile={dir}/{name}.log
redirect_stderr=true
priority={priority}
"""


class Supervisord:
    """supervisord -n with the given programs, in a short temporary directory."""

    def __init__(self, programs: list[dict]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="arroyo-sv-"))  # unix socket paths are short
        sections = [f"""
[unix_http_server]
file={self.dir}/supervisor.sock
[supervisord]
logfile={self.dir}/supervisord.log
pidfile={self.dir}/supervisord.pid
childlogdir={self.dir}
nodaemon=true
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://{self.dir}/supervisor.sock
"""]
        for program in programs:
            sections.append(PROGRAM.format(root=ROOT, dir=self.dir, **program))
        self.conf = self.dir / "supervisord.conf"
        self.conf.write_text("".join(sections))
        self.process = subprocess.Popen(["supervisord", "-n", "-c", str(self.conf)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.pids: set[int] = set()
        wait_for(self._up, 15, "supervisord to answer")

    @property
    def rpc(self):
        from supervisor.xmlrpc import SupervisorTransport

        transport = SupervisorTransport(None, None, f"unix://{self.dir}/supervisor.sock")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def _up(self) -> bool:
        assert self.process.poll() is None, (self.dir / "supervisord.log").read_text()
        try:
            return self.rpc.getState()["statename"] == "RUNNING"
        except OSError:
            return False

    def info(self, name: str) -> dict:
        info = self.rpc.getProcessInfo(name)
        if info["pid"]:
            self.pids.add(info["pid"])
        return info

    def log(self, name: str) -> str:
        return (self.dir / f"{name}.log").read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.rpc.shutdown()
            except (OSError, xmlrpc.client.Fault):
                self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pid in self.pids:  # only if supervisord died without stopping its children
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def supervisord():
    started: list[Supervisord] = []

    def start(programs: list[dict]) -> Supervisord:
        started.append(Supervisord(programs))
        return started[-1]

    yield start
    for item in started:
        item.stop()


def arroyo(*args: str) -> str:
    return " ".join([sys.executable, "-m", "services", *args])


def test_middle_stage_killed_repeatedly_loses_exactly_what_the_ledger_reports(
        supervisord, tmp_path):
    frames, kills_wanted = 40000, 3
    hop1, hop2 = (f"tcp://127.0.0.1:{free_port()}" for _ in range(2))
    stats = {name: f"tcp://127.0.0.1:{free_port()}" for name in ("source", "middle", "sink")}
    record = tmp_path / "received.txt"
    sv = supervisord([
        {"name": "sink", "priority": 1, "autorestart": "true",
         "command": arroyo("publisher", "--name", "sink", "--in", ">" + hop2,
                           "--sink", "arroyo_core.verify:VerifyingSink",
                           "-o", f"record={record}", "--stats", stats["sink"])},
        {"name": "middle", "priority": 2, "autorestart": "true",
         "command": arroyo("operator", "--name", "middle", "--in", ">" + hop1,
                           "--out", "@" + hop2, "--stats", stats["middle"])},
        {"name": "source", "priority": 3, "autorestart": "false",
         "command": arroyo("listener", "--name", "source", "--source", "simulated",
                           "-o", "shape=[32,32]", "-o", f"frames={frames}", "-o", "rate=8000",
                           "-o", "checksum=true", "--out", "@" + hop1,
                           "--stats", stats["source"])},
    ])
    rng = random.Random()
    seed = rng.randrange(2**32)
    rng.seed(seed)

    def frames_at_sink() -> int:
        runs = status(stats["sink"])["outputs"][0]["runs"]
        return runs[-1]["frames"] if runs else 0

    def source_sent() -> int:
        return status(stats["source"])["outputs"][0]["sent"]

    wait_for(lambda: frames_at_sink() > 500, 30, "frames at the sink")
    kills = []
    for _ in range(kills_wanted):
        pid = sv.info("middle")["pid"]
        wait_for(lambda: status(stats["middle"])["input"]["received"] > 200, 20,
                 "the middle stage passing frames")
        time.sleep(rng.uniform(0.05, 0.6))  # a random moment, on purpose
        assert source_sent() < frames - 2000, "the run ended before all the kills"
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda p=pid: sv.info("middle")["pid"] not in (0, p), 20, "a new middle")
        wait_for(lambda: "READY middle" in sv.log("middle").rsplit("READY middle", 1)[-1]
                 or status(stats["middle"])["ready"], 20, "the new middle ready")
        kills.append(time.monotonic() - killed)

    run = wait_for(lambda: (status(stats["sink"])["outputs"][0]["runs"] or [{}])[-1]
                   .get("complete") and status(stats["sink"])["outputs"][0]["runs"][-1],
                   60, "the run to end at the sink")
    sink = status(stats["sink"])
    middle = status(stats["middle"])

    lines = [line.split() for line in record.read_text().splitlines()]
    received = [int(frame) for _, frame, _ in lines]
    true_loss = frames - len(set(received))
    assert run["frames_sent"] == frames
    assert len(received) == len(set(received)), "a frame arrived twice"
    assert all(ok == "1" for *_, ok in lines) and run["corrupt"] == 0
    assert run["crc_checked"] == len(received)
    # The ledger's end-to-end loss, its missing ranges and the truth agree exactly.
    assert run["lost"] == true_loss, (run["lost"], true_loss, seed)
    assert run["duplicates"] == 0
    ranges = run["missing_ranges"]
    if len(ranges) < 32:
        assert sum(b - a + 1 for a, b in ranges) == true_loss
        missing = set(range(frames)) - set(received)
        assert missing == {f for a, b in ranges for f in range(a, b + 1)}
    # Per hop: the sink saw one sender per middle instance, and the last middle joined the
    # source's stream late (what it never saw went to an instance that was killed).
    assert len(sink["input"]["senders"]) == kills_wanted + 1
    assert sink["input"]["missing"] == 0 and sink["input"]["duplicates"] == 0
    (from_source,) = middle["input"]["senders"].values()
    assert from_source["first_seq"] > 0

    table = subprocess.run([sys.executable, "-m", "services", "status", stats["middle"],
                            stats["sink"]], capture_output=True, text=True, timeout=30)
    assert table.returncode == 0, table.stderr
    assert f"lost {true_loss}" in table.stdout and "joined" in table.stdout, table.stdout
    print(f"\n{kills_wanted} x kill -9 of the middle stage (seed {seed}): {true_loss} of "
          f"{frames} frames lost, ledger says {run['lost']} in {len(ranges)} range(s); new "
          f"middle ready {', '.join(f'{k:.2f}' for k in kills)} s after each kill\n"
          + table.stdout)
