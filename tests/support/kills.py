"""A chain under a real supervisord whose middle stage is killed again and again, some
kills within a second of its previous start, with an independent receiver at the end:
what tests/integration/test_every_loss.py checks and benchmarks/kill_resume.py measures.

    source --push--> middle (passthrough) --PATTERN--> forwarder (`--sink zmq`) --push-->
    receiver (raw pyzmq + msgpack, this module)

The receiver reads the frames as docs/protocol.md section 2-3 describe them and shares no
code with Arroyo: what it counts is the truth the ledger is checked against. Arroyo is
used only through its commands (``python -m services``) and the status sockets, so the
scenario runs against any checkout (PYTHONPATH picks it; the supervisord configuration is
that checkout's).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import zmq

from services.processes import free_port
from tests.support.addresses import IpcDirectory
from tests.support.chains import write
from tests.support.supervisord import Supervisor
from tests.support.waiting import wait_for

GROUP = "kills"
MIDDLE = f"{GROUP}:middle"
PEER = {"push": "pull", "pub": "sub"}


def chain_text(pattern: str, frames: int, rate: float, shape: int, ipc: IpcDirectory,
               scheme: str = "tcp", operator: str = "passthrough", reliable: bool = False,
               ) -> tuple[str, dict[str, str], str]:
    """The chain file, the status endpoints by service (``ipc://`` paths from ``ipc``), and
    the forwarder's address. ``scheme`` is the hops' (``tcp`` or ``shm``: the same chain
    file but for the addresses), ``operator`` the middle's; ``reliable``: the chain's
    links are reliable (the chain-file key) and the source stamps each frame's crc32.

    The hops and the forwarder's output are tcp ports picked here, before anything runs:
    supervisord starts the whole chain at once, so no service can pick one and tell the
    next, and the scenario runs against checkouts whose services do not say what they bound.
    """
    hop1, hop2, out = free_port(), free_port(), f"tcp://127.0.0.1:{free_port()}"
    status = {name: ipc(f"{name}.status") for name in ("source", "middle", "forwarder")}
    checksum = ", checksum = true" if reliable else ""
    text = f"""
name = "{GROUP}"
{'reliable = true' if reliable else ''}

[services.source]
role = "listener"
source = "simulated"
options = {{ shape = [{shape}, {shape}], frames = {frames}, rate = {rate}{checksum} }}
out = "@{scheme}://127.0.0.1:{hop1}"
status = "{status['source']}"
drain_timeout = 5.0

[services.middle]
role = "operator"
operator = "{operator}"
in = ">{scheme}://{{source}}:{hop1}"
out = "@{scheme}://127.0.0.1:{hop2}"
out_pattern = "{pattern}"
status = "{status['middle']}"
drain_timeout = 5.0

[services.forwarder]
role = "publisher"
sink = "zmq"
options = {{ address = "@{out}" }}
in = ">{scheme}://{{middle}}:{hop2}"
in_pattern = "{PEER[pattern]}"
status = "{status['forwarder']}"
drain_timeout = 5.0
"""
    return text, status, out


class RawReceiver(threading.Thread):
    """Receives what leaves the chain on a PULL socket and notes, per Event, when it came
    and its run and frame (docs/protocol.md: a msgpack header map, then payload frames; a
    ``batch`` header lists several Events' ``[meta, arrays]`` under ``events``)."""

    def __init__(self, address: str) -> None:
        super().__init__(daemon=True, name="raw-receiver")
        self.socket = zmq.Context.instance().socket(zmq.PULL)
        self.socket.linger = 0
        self.socket.rcvtimeo = 100
        self.socket.connect(address)
        self.arrivals: list[float] = []  # time.monotonic() of each Event
        self.frames: list[tuple[Any, int]] = []  # (run, frame) of each Event
        self.frames_sent: dict[Any, int] = {}  # from each run's Stop
        self.crc = {"ok": 0, "bad": 0}  # Events whose meta has crc32, checked here
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                parts = self.socket.recv_multipart(copy=False)
            except zmq.Again:
                continue
            header = msgpack.unpackb(parts[0].bytes, raw=False)
            if header["kind"] == "batch":
                events = [meta for meta, _arrays in header["events"]]
                self._check(header["events"], [parts[1].buffer], packed=True)
            elif header["kind"] == "event":
                events = [header["meta"]]
                self._check([[header["meta"], header["arrays"]]],
                            [part.buffer for part in parts[1:]], packed=False)
            else:
                events = []
                if header["kind"] == "stop":
                    self.frames_sent[header["meta"].get("run")] = header["meta"].get(
                        "frames_sent")
            for meta in events:
                self.arrivals.append(time.monotonic())
                self.frames.append((meta.get("run"), meta.get("frame")))
        self.socket.close(linger=0)

    def _check(self, events: list[Any], buffers: list[memoryview], packed: bool) -> None:
        """crc32 of each Event's payload against its meta's (docs/protocol.md sections
        1.1, 4 and 9: entries back to back, each padded to 8 bytes in a batch)."""
        if not any("crc32" in meta for meta, _arrays in events):
            return  # a chain whose source does not stamp it
        offset, index = 0, 0
        for meta, arrays in events:
            crc = 0
            for _name, dtype, shape in arrays:
                size = shape[0] if dtype == "bytes" else int(dtype[2:]) * math.prod(shape)
                if packed:
                    chunk, offset = buffers[0][offset:offset + size], offset + size
                    offset += -offset % 8
                else:
                    chunk, index = buffers[index], index + 1
                crc = zlib.crc32(chunk, crc)
            if "crc32" in meta:
                self.crc["ok" if crc == meta["crc32"] else "bad"] += 1

    def count(self) -> int:
        return len(self.arrivals)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=5)


@dataclass
class Kill:
    since_start: float  # how long the killed instance had been up (from its pid's appearance)
    at: float  # time.monotonic() of the kill
    respawned: float | None = None  # seconds to a new pid (None: never, e.g. FATAL)
    ready: float | None = None  # seconds to its READY
    resumed: float | None = None  # seconds until frames came again at the receiver
    lost: int = 0  # frames missing at the receiver, by the kill they followed


@dataclass
class Outcome:
    pattern: str
    frames: int
    kills: list[Kill] = field(default_factory=list)
    received: list[tuple[Any, int]] = field(default_factory=list)
    frames_sent: dict[Any, int] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)
    reported: dict[str, Any] = field(default_factory=dict)  # run -> forwarder's output record
    table: str = ""
    restarts: dict[str, int] = field(default_factory=dict)
    crc: dict[str, int] = field(default_factory=dict)  # the receiver's crc32 checks
    log: str = ""
    source_log: str = ""  # the source's whole log, read once it had ended (or 20 s on)

    @property
    def true_loss(self) -> int:
        """Frames sent minus distinct frames received, over every run that ended (in one
        that never did, the chain stalled: the frames missing below the last one seen)."""
        distinct = {(run, frame) for run, frame in self.received}
        return sum(self.ends().values()) - len(distinct)

    def ends(self) -> dict[Any, int]:
        """Each run's frame count: from its Stop, or one past the last frame received."""
        ends: dict[Any, int] = {}
        for run, frame in self.received:
            ends[run] = max(ends.get(run, 0), frame + 1)
        return {**ends, **self.frames_sent}

    @property
    def duplicates(self) -> int:
        return len(self.received) - len(set(self.received))


def _pid_since(sv: Supervisor, old: int, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = sv.info(MIDDLE)
        if info["pid"] not in (0, old):
            return int(info["pid"])
        if info["statename"] == "FATAL":
            return None
        time.sleep(0.01)
    return None


def _ready_count(sv: Supervisor) -> int:
    return sv.log(MIDDLE).count("READY middle")


def run_kills(directory: Path, pattern: str, frames: int = 10_000, rate: float = 500.0,
              shape: int = 64, schedule: tuple[float, ...] = (1.5, 0.0, 0.0, 2.0, 0.0),
              root: Path | None = None, scheme: str = "tcp",
              operator: str = "passthrough", reliable: bool = False) -> Outcome:
    """Run the chain under supervisord and kill the middle stage once per ``schedule``
    entry: that many seconds after frames flowed again through its previous instance (0:
    at once, which is within about a second of that instance's start). Returns what the
    receiver got, each kill's timings, and what ``arroyo status`` reported."""
    ipc = IpcDirectory()
    text, status, out = chain_text(pattern, frames, rate, shape, ipc, scheme, operator,
                                   reliable)
    directory.mkdir(parents=True, exist_ok=True)
    receiver = RawReceiver(out)
    receiver.start()
    sv = Supervisor(directory / "supervisor", write(directory / "chain.toml", text),
                    root=root)
    outcome = Outcome(pattern, frames)
    try:
        wait_for(lambda: receiver.count() > 200, 60, "frames at the receiver")
        info = sv.info(MIDDLE)
        pid, started = info["pid"], time.monotonic() - (time.time() - info["start"])
        for dwell in schedule:
            if dwell:
                time.sleep(dwell)  # a stage that has been running a while, on purpose
            if receiver.frames_sent:
                break  # the run ended before every kill: the caller asserts on it
            readies = _ready_count(sv)
            os.kill(pid, signal.SIGKILL)
            kill = Kill(since_start=time.monotonic() - started, at=time.monotonic())
            outcome.kills.append(kill)
            new = _pid_since(sv, pid, 15)
            if new is None:
                break  # supervisor gave up (FATAL) or never restarted it
            started = time.monotonic()
            kill.respawned = started - kill.at
            pid = new
            try:
                wait_for(lambda n=readies: _ready_count(sv) > n, 15, "READY of the new middle")
            except AssertionError:
                break
            kill.ready = time.monotonic() - kill.at
            at_ready = receiver.count()
            try:
                wait_for(lambda n=at_ready: receiver.count() > n, 15, "frames flowing again")
            except AssertionError:
                break
        stalled = bool(outcome.kills) and outcome.kills[-1].ready is None
        try:  # a middle that never came back (FATAL) stalls the chain: no Stop will come
            wait_for(lambda: receiver.frames_sent, 10 if stalled else 120,
                     "the run's Stop at the receiver")
        except AssertionError:
            pass  # reported as such by the caller
        names = [f"{GROUP}:{name}" for name in ("source", "middle", "forwarder")]
        try:  # a stage restarted less than startsecs ago is STARTING: see where it settles
            wait_for(lambda: "STARTING" not in map(sv.state, names), 10, "settled states")
        except AssertionError:
            pass  # reported by the caller, which wants each RUNNING
        outcome.states = {name.split(":")[1]: sv.state(name) for name in names}
        outcome.reported, outcome.table = _reported(status)
        try:
            outcome.restarts = dict(sv.rpc_namespace("arroyo").getRestarts())
        except Exception:  # a checkout without the plug-in
            outcome.restarts = {}
        outcome.log = sv.log(MIDDLE)[-3000:]
        try:  # a source ends after its run: its log then ends with its final ledger
            wait_for(lambda: sv.state(f"{GROUP}:source") != "RUNNING", 20, "the source's end")
        except AssertionError:
            pass
        outcome.source_log = sv.log(f"{GROUP}:source")
    finally:
        receiver.stop()
        sv.stop()
        ipc.remove()
    outcome.received = list(receiver.frames)
    outcome.frames_sent = dict(receiver.frames_sent)
    outcome.crc = dict(receiver.crc)
    _attribute(outcome, receiver.arrivals)
    return outcome


def _reported(status: dict[str, str]) -> tuple[dict[str, Any], str]:
    """The forwarder's output run ledger records by run (empty where the checkout has none)
    and the `arroyo status` table of the three services."""
    endpoints = [status[name] for name in ("source", "middle", "forwarder")]
    command = [sys.executable, "-m", "services", "status", "--timeout", "5"]
    table = subprocess.run([*command, *endpoints], capture_output=True, text=True, timeout=60)
    reply = subprocess.run([*command, "--json", status["forwarder"]], capture_output=True,
                           text=True, timeout=60)
    records: dict[str, Any] = {}
    if reply.returncode in (0, 3):  # 3: a run lost frames (the kills' loss)
        forwarder = json.loads(reply.stdout)
        for record in forwarder["outputs"][0].get("run_ledger") or []:
            records[record["run"]] = record
    return records, table.stdout + table.stderr


def _attribute(outcome: Outcome, arrivals: list[float]) -> None:
    """Each kill's resume time (the first frame after the longest silence that follows it)
    and the frames missing at the receiver whose gap ended after it."""
    kills = outcome.kills
    for index, kill in enumerate(kills):
        if kill.ready is None:
            continue  # it never came back: frames did not flow again
        until = kills[index + 1].at if index + 1 < len(kills) else float("inf")
        previous, longest = kill.at, -1.0
        for arrival in arrivals:
            if arrival <= kill.at:
                continue
            if arrival >= until:
                break
            if arrival - previous > longest:
                longest, kill.resumed = arrival - previous, arrival - kill.at
            previous = arrival
    arrival_of: dict[tuple[Any, int], float] = {}
    for key, arrival in zip(outcome.received, arrivals, strict=False):
        arrival_of.setdefault(key, arrival)
    for run, sent in outcome.ends().items():
        pending = 0  # frames missing since the last one that came
        for frame in range(sent + 1):
            arrival = arrival_of.get((run, frame)) if frame < sent else float("inf")
            if arrival is None:
                pending += 1
                continue
            if pending:  # a gap ends here: it belongs to the last kill before this frame came
                owner = [kill for kill in kills if kill.at <= arrival]
                if owner:
                    owner[-1].lost += pending
                pending = 0


def describe(outcome: Outcome) -> str:
    """The figures, one line per kill, for a test's or a benchmark's output."""
    ended = ("" if outcome.frames_sent else
             " (the run never ended: the chain stalled; counted up to the last frame seen)")
    lines = [f"{outcome.pattern}: {len(outcome.kills)} kills of the middle, true loss "
             f"{outcome.true_loss} of {sum(outcome.ends().values())} frames{ended}, "
             f"reported {_reported_loss(outcome)}; states {outcome.states}; plug-in "
             f"restarts {outcome.restarts or 'none'}"]
    for number, kill in enumerate(outcome.kills, 1):
        lines.append(
            f"  kill {number}: {kill.since_start:5.2f} s after its start; new pid after "
            f"{_s(kill.respawned)}, READY after {_s(kill.ready)}, frames again at the "
            f"receiver after {_s(kill.resumed)}; lost {kill.lost}")
    return "\n".join(lines)


def _reported_loss(outcome: Outcome) -> str:
    if not outcome.reported:
        return "nothing (no run ledger)"
    return ", ".join(f"{str(run)[:8]}: lost {record['missing']} of {record['expected']}"
                     for run, record in outcome.reported.items())


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"
