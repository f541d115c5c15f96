"""Event building with real processes: three simulated streams of one scan (a detector's
images, spectra with gaps, an encoder that starts late) -> an event builder -> a pool of 2
workers (a routing rule sends the incomplete events to both) -> a reducer -> this test's
receiver, under `arroyo run` and under supervisord with a worker killed.

The oracle shares no code with the builder: each part of a built event carries, in its
data, the frame it was made for (the image's frame_id and its crc32 against a ring of
images this test draws itself, the spectrum's channel 1, the encoder's first value); the
workers read them out (arroyo_testplugins.scan:Digest) and the reducer gathers them, and
this test checks each against the frame the event was built for and against what each
source was told to send or skip."""

from __future__ import annotations

import os
import signal
import zlib

import numpy as np
import pytest

from arroyo_core.message import Event, Stop
from arroyo_core.status import ServiceStatus
from services.ledger_table import render
from services.processes import free_port
from tests.integration.test_pools import worker_status
from tests.support.chains import write
from tests.support.ledgers import status
from tests.support.plugins import plugin_env
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

RUN = "scan-1"
SHAPE = (16, 16)
RING = 4
SKIP_EVERY = 7  # the spectra stream misses every 7th trigger


def chain(ipc, frames: int, rate: float, name: str, credit: int = 8,
          ) -> tuple[str, dict[str, str], int]:
    """The chain file, its status endpoints and the reducer's output port."""
    ports = {key: free_port() for key in ("det", "spec", "enc", "built", "results", "out")}
    stats = {svc: ipc(f"{name}-{svc}.status")
             for svc in ("detector", "spectra", "encoder", "builder", "worker", "reducer")}
    common = f'rate = {rate}, frames = {frames}, run = "{RUN}"'
    streams = ", ".join(f'{stream} = ">tcp://{{{stream}}}:{ports[port]}"' for stream, port in
                        (("detector", "det"), ("spectra", "spec"), ("encoder", "enc")))
    text = f"""
name = "{name}"

[services.detector]
role = "listener"
source = "stream"
options = {{ kind = "image", shape = {list(SHAPE)}, ring = {RING}, {common} }}
out = "@tcp://127.0.0.1:{ports['det']}"
status = "{stats['detector']}"
drain_timeout = 3.0

[services.spectra]
role = "listener"
source = "stream"
options = {{ kind = "spectrum", channels = 64, skip_every = {SKIP_EVERY}, {common} }}
out = "@tcp://127.0.0.1:{ports['spec']}"
status = "{stats['spectra']}"
drain_timeout = 3.0

[services.encoder]
role = "listener"
source = "stream"
options = {{ kind = "encoder", delay = 0.5, {common} }}
out = "@tcp://127.0.0.1:{ports['enc']}"
status = "{stats['encoder']}"
drain_timeout = 3.0

[services.builder]
role = "operator"
in = {{ {streams} }}
join = {{ key = "frame", timeout = 5.0, incomplete = "emit" }}
out = "@tcp://127.0.0.1:{ports['built']}"
out_options = {{ route = [{{ when = {{ missing = ["spectra"] }}, to = "all" }}] }}
status = "{stats['builder']}"
drain_timeout = 3.0

[services.worker]
role = "operator"
operator = "arroyo_testplugins.scan:Digest"
replicas = 2
in = ">tcp://{{builder}}:{ports['built']}"
in_options = {{ credit = {credit} }}
out = ">tcp://{{reducer}}:{ports['results']}"
status = "{stats['worker']}"
drain_timeout = 3.0

[services.reducer]
role = "operator"
operator = "arroyo_testplugins.scan:RowTable"
options = {{ every = 50 }}
in = "@tcp://127.0.0.1:{ports['results']}"
in_options = {{ order = true, order_timeout = 3.0, stop_timeout = 3.0 }}
out = "@tcp://127.0.0.1:{ports['out']}"
status = "{stats['reducer']}"
drain_timeout = 3.0
"""
    return text, stats, ports["out"]


def ring_crcs() -> list[int]:
    """The crc32 of each image the detector cycles through, drawn here as it draws them."""
    rng = np.random.default_rng(0)
    return [zlib.crc32((rng.random(SHAPE) * 1000).astype("uint16").tobytes())
            for _ in range(RING)]


def results(receiver) -> tuple[list[Event], Stop]:
    """Every result the reducer published for the run, and the run's Stop."""
    got: list = []
    while not got or got[-1].kind != "stop":
        got.append(receiver.get(timeout=90))
    events = [m for m in got if m.kind == "event"]
    return events, got[-1]


def check_rows(table: np.ndarray, frames: int) -> set[int]:
    """Each row against what each source sent for its frame; the frames present."""
    crcs = ring_crcs()
    seen = set()
    for frame, detector, spectra, encoder, crc, _ in table.tolist():
        assert 0 <= frame < frames and frame not in seen
        seen.add(frame)
        assert detector == frame and crc == crcs[frame % RING], (frame, detector)
        assert encoder == frame, (frame, encoder)  # late to start, but never missing
        skipped = frame % SKIP_EVERY == SKIP_EVERY - 1
        assert spectra == (-1 if skipped else frame), (frame, spectra)
    return seen


@pytest.mark.slow
def test_three_streams_are_built_into_events_checked_part_by_part_through_a_pool(
        tmp_path, ipc, receiver, run_chain):
    frames = 400
    text, stats, out = chain(ipc, frames=frames, rate=200.0, name="ev")
    sink = receiver(f">tcp://127.0.0.1:{out}")
    run = run_chain(write(tmp_path / "events.toml", text), plugin_env())
    events, stop = results(sink)
    final = events[-1]
    assert final.meta["final"] and not any(e.meta["final"] for e in events[:-1])
    assert len(events) >= 2  # published periodically too, not only at the Stop
    table = final.payload["table"]
    assert check_rows(table, frames) == set(range(frames))  # every event, each part right
    assert len(set(table[:, 5].tolist())) == 2  # both workers built some
    gaps = sum(1 for f in range(frames) if f % SKIP_EVERY == SKIP_EVERY - 1)
    # incomplete events, per stream, said in the run's Stop and in the builder's record
    assert stop.meta["incomplete"] == {"spectra": gaps}
    assert stop.meta["complete"] == frames - gaps and stop.meta["frames_sent"] == frames
    assert stop.meta["reducer"]["reduced"] == frames
    record = status(stats["builder"])
    builder = record["input"]["event_builder"]
    assert {name: s["incomplete"] for name, s in builder["streams"].items()} == {
        "detector": 0, "spectra": gaps, "encoder": 0}
    assert builder["streams"]["spectra"]["parts"] == frames - gaps
    assert all(s["late"] == 0 for s in builder["streams"].values())
    # each stream's own link ledger: the spectra's missing frames are exactly its gaps
    missing = {name: s["link"]["run_ledger"][-1]["missing"]
               for name, s in builder["streams"].items()}
    assert missing == {"detector": 0, "spectra": gaps, "encoder": 0}
    table = render([ServiceStatus.from_dict({**record, "name": "builder"})])
    assert f"spectra (per event): {frames - gaps} parts, incomplete {gaps}, late 0" in table
    # the routing rule sent each incomplete event to both workers; the ordered fan-in
    # before the reducer passed each frame on once
    assert record["outputs"][0]["pool"]["routed"] == {"all": gaps, "none": 0, "affinity": 0}
    reducer = status(stats["reducer"])["input"]
    assert reducer["fan_in"]["duplicates"] == gaps
    (ledger,) = reducer["run_ledger"]
    assert ledger["expected"] == frames and ledger["missing"] == 0
    assert run.stop() == 0, run.text()[-3000:]


@pytest.mark.slow
def test_a_killed_worker_under_supervisord_loses_only_what_it_held_and_the_run_ends(
        tmp_path, ipc, receiver, supervisor, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", plugin_env()["PYTHONPATH"])  # supervisord passes it on
    frames, credit = 1500, 4
    text, stats, out = chain(ipc, frames=frames, rate=250.0, name="evk", credit=credit)
    sink = receiver(f">tcp://127.0.0.1:{out}")
    sv = supervisor(write(tmp_path / "events.toml", text))

    def workers() -> list[dict]:
        try:
            return status(stats["builder"])["outputs"][0].get("pool", {}).get("workers", [])
        except TimeoutError:  # not up yet
            return []

    wait_for(lambda: sum(w["given"] for w in workers()) >= 200, 60, "events dispatched")
    old = sv.info("evk:worker-1")["pid"]
    (src,) = worker_status(stats, 1)["input"]["senders"]  # its stream, as the builder names it
    def worker_1() -> dict:
        return next(w for w in workers() if w["src"] == src)

    os.kill(old, signal.SIGSTOP)  # held back first, so that it dies holding frames
    stopped_at = worker_1()["given"]
    # given more after it stopped: those it holds for certain (a held count alone may be
    # credits the builder has not read yet)
    wait_for(lambda: (w := worker_1())["given"] > stopped_at and w["held"] >= credit, 20,
             "worker-1 to be given frames it cannot finish")
    # mid-run: the builder still hears parts (else its held count could be stale)
    assert status(stats["detector"])["input"]["sent"] < frames
    os.kill(old, signal.SIGKILL)
    events, stop = results(sink)  # the run ends: nothing waits for the dead worker
    table = events[-1].payload["table"]
    present = check_rows(table, frames)  # whatever came through is right, part by part
    (ledger,) = status(stats["reducer"])["input"]["run_ledger"]
    # the loss counted after the pool is exactly the frames missing from the table
    assert ledger["complete"] and ledger["expected"] == frames
    assert ledger["missing"] == frames - len(present)
    # lost: what it held unfinished (its credit, and results not yet sent on); the rest of
    # what is missing came after the ordering gave up waiting (a loaded machine), dropped
    # by policy and said so in the Stop. It may be none: what a stopped worker is given
    # are broadcast copies (the routing rule), which worker-0 has too, and the frames it
    # had by credit may all have been finished when it was stopped.
    assert 0 <= ledger["missing"] - ledger["policy_dropped"] <= credit + 2, ledger
    assert stop.meta["incomplete"]["spectra"] > 0
