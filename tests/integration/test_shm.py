"""shm:// links with real service processes: PUSH and PUB through a forwarding operator,
a receiver killed with kill -9 (its slots come back), a slot reused under a reader that
tries to read it anyway, a pool whose owner was killed, and /dev/shm left clean."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from arroyo_core.errors import DecodeError
from arroyo_core.link import InputLink, OutputLink
from arroyo_core.message import Event, Start, Stop
from arroyo_core.transports.shm.attached import ATTACHED, SlotRef
from arroyo_core.transports.shm.pool import DIRECTORY, PREFIX
from tests.support.ledgers import status
from tests.support.waiting import exit_within, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FRAMES = 300
SHAPE = "[256,256]"  # uint16: 128 KiB, above the size that goes inline


def pools() -> set[str]:
    return {name for name in os.listdir(DIRECTORY) if name.startswith(PREFIX)}


@pytest.fixture
def shm_clean():
    """The pools a test leaves behind: none may be left once its processes are gone."""
    before = pools()
    yield
    wait_for(lambda: not (pools() - before), 10, f"no pool left in {DIRECTORY}")


def records(path: Path) -> list[tuple[str, int, str]]:
    """VerifyingSink's record: (run, frame, ok: "1" if its crc32 matched) per Event."""
    if not path.exists():
        return []
    return [(run, int(frame), ok) for run, frame, ok in
            (line.split() for line in path.read_text().splitlines())]


@pytest.mark.parametrize("pattern", ["push", "pub"])
def test_chain_through_a_forwarding_operator(service, ipc, tmp_path, shm_clean, pattern):
    """source -> operator (pass-through) -> two sinks, every hop shm://. PUSH shares the
    frames between the sinks, PUB gives each all of them; each arrives once, intact (the
    source's crc32, checked by the sinks), and the operator passed every one on as a slot
    reference without copying it."""
    hop1, hop2 = f"shm://{ipc.path}/hop1", f"shm://{ipc.path}/hop2"
    operator_status = ipc("operator.status")
    expect = "peers=2" if pattern == "push" else "subscribers=2"
    sinks = []
    for name in ("a", "b"):
        record = tmp_path / f"{name}.txt"
        sinks.append((service("publisher", "--in", ">" + hop2, "--sink",
                              "arroyo_core.verify:VerifyingSink", "-o", f"record={record}",
                              "--in-pattern", "sub" if pattern == "pub" else "pull",
                              name=name), record))
    service("operator", "--in", ">" + hop1, "--out", "@" + hop2, "--out-pattern", pattern,
            "--out-option", expect, "--status", operator_status, name="operator")
    source = service("listener", "--source", "simulated", "-o", f"shape={SHAPE}",
                     "-o", "rate=0", "-o", f"frames={FRAMES}", "-o", "checksum=true",
                     "--out", "@" + hop1, name="source")
    # The source ends after its run, once every slot is back: each sink has handled every
    # frame it got. A sink writes its record out at a Stop (PUSH gives it to one) or close.
    assert exit_within(source, 60) == 0
    for sink, _ in sinks:
        assert sink.stop() == 0
    got = [records(record) for _, record in sinks]
    assert all(ok == "1" for per_sink in got for _, _, ok in per_sink)
    frames = [[frame for _, frame, _ in per_sink] for per_sink in got]
    if pattern == "push":
        assert sorted(frames[0] + frames[1]) == list(range(FRAMES))
        assert frames[0] and frames[1], "PUSH gave one sink nothing"
    else:
        assert frames[0] == frames[1] == list(range(FRAMES))
    output = status(operator_status)["outputs"][0]  # the transport's keys beside the ledger's
    assert output["messages"].get("forwarded") == FRAMES, output
    assert "copied" not in output["messages"], output


def test_a_killed_receiver_gives_its_slots_back_and_a_reused_slot_is_never_read(tmp_path):
    """A receiver process holds one slot and has a message in flight when it is killed
    with kill -9: both slots come back. Once the slot it held was reused, its reference
    is tried again (the receiving code's own take): refused as stale, never read."""
    sender = OutputLink("@shm://127.0.0.1:*", message_bytes=2**17, max_bytes=2**18,
                        peer_timeout=20)  # a pool of two slots
    sender.open()
    peer = subprocess.Popen([sys.executable, "-m", "tests.support.shm_peer",
                             sender.sender.bound.replace("shm://", "tcp://")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    receiver = None
    try:
        ramp = np.arange(2**16, dtype=np.uint16)
        sender.publish(Start({"run": "r"}))
        sender.publish(Event({"run": "r", "frame": 0}, {"image": ramp}))
        sender.publish(Event({"run": "r", "frame": 1}, {"image": ramp + 1}))  # left unread
        old = SlotRef(*json.loads(peer.stdout.readline()))
        pool = sender.sender.pool
        assert pool is not None and pool.slots == 2
        assert sender.status().transport["pool"]["free"] == 0
        peer.send_signal(signal.SIGKILL)
        peer.wait()

        def free() -> int:
            return sender.status().transport["pool"]["free"]

        wait_for(lambda: free() == 2, 5, "both slots back after the kill")

        got = []  # (frame, whether its bytes are that frame's): holding no slot

        def deliver(message):
            if isinstance(message, Event):
                frame = message.meta["frame"]
                got.append((frame, np.array_equal(message.payload["image"], ramp + frame)))

        receiver = InputLink(">" + sender.sender.bound)
        receiver.open()
        thread = threading.Thread(target=receiver.start, args=(deliver,), daemon=True)
        thread.start()
        for frame in range(2, 6):  # every slot is reused
            sender.publish(Event({"run": "r", "frame": frame}, {"image": ramp + frame}))
        sender.publish(Stop({"run": "r"}))
        wait_for(lambda: len(got) == 4, 10, "the events at the new receiver")
        assert int(pool.gens[old.slot]) > old.gen
        with pytest.raises(DecodeError) as refused:
            ATTACHED.take(old)
        assert refused.value.reason == "stale"
        assert got == [(frame, True) for frame in range(2, 6)]
        receiver.stop()
        thread.join(5)
    finally:
        if peer.poll() is None:
            peer.kill()
            peer.wait()
        if receiver is not None:
            receiver.close()
        sender.abandon()
        sender.close()
    assert sender.status().transport["pool"]["name"] not in pools()


def test_the_pool_of_a_killed_sender_is_removed(service, ipc, shm_clean):
    """kill -9 of a source: its pool stays in /dev/shm only until its receiver sees that
    its owner is gone (a restarted sender would remove it as well)."""
    hop = f"shm://{ipc.path}/hop"
    sink_status = ipc("sink.status")
    before = pools()
    service("publisher", "--in", ">" + hop, "--sink", "stats", "--status", sink_status,
            name="sink")
    source = service("listener", "--source", "simulated", "-o", f"shape={SHAPE}",
                     "-o", "rate=50", "-o", "frames=100000", "--out", "@" + hop, name="source")
    wait_for(lambda: status(sink_status)["input"]["received"] > 5, 20, "frames at the sink")
    (made,) = pools() - before
    assert made.startswith(f"{PREFIX}{source.process.pid}.")
    source.signal(signal.SIGKILL)
    source.process.wait()
    wait_for(lambda: made not in pools(), 5, "the killed sender's pool to be removed")


def test_a_full_pool_drops_the_newest_event_and_counts_it():
    """overflow=drop-newest: with every slot held by a receiver that keeps its frames, the
    next event is dropped and counted, Start and Stop still go, and a slot released lets
    events through again."""
    sender = OutputLink("@shm://127.0.0.1:*", message_bytes=2**17, max_bytes=2**18,
                        overflow="drop-newest")  # two slots
    sender.open()
    kept = []
    receiver = InputLink(">" + sender.sender.bound)
    receiver.open()
    thread = threading.Thread(target=receiver.start, args=(kept.append,), daemon=True)
    thread.start()
    try:
        image = np.zeros(2**16, np.uint16)
        sender.publish(Start({"run": "r"}))
        for frame in range(3):
            sender.publish(Event({"run": "r", "frame": frame}, {"image": image}))
        assert sender.ledger.status().dropped == {"pool full": 1}
        wait_for(lambda: len(kept) == 3, 10, "Start and two events at the receiver")
        del kept[1]  # the receiver lets frame 0 (and its slot) go
        wait_for(lambda: sender.status().transport["pool"]["free"] == 1, 5, "a free slot")
        sender.publish(Event({"run": "r", "frame": 3}, {"image": image}))
        sender.publish(Stop({"run": "r"}))
        wait_for(lambda: len(kept) == 4, 10, "frame 3 and the Stop")
        assert [m.meta.get("frame") for m in kept[1:3]] == [1, 3]
        assert sender.ledger.status().dropped == {"pool full": 1}
    finally:
        kept.clear()
        receiver.stop()
        thread.join(5)
        receiver.close()
        sender.close()
