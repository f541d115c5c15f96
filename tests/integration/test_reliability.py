"""Reliability of real chains of real processes: late joiners lose nothing, dead and slow
peers are noticed, a paused stage keeps upstream memory within its budget and every drop
is counted, a slow live viewer keeps the newest frame without slowing the source, and a
flood of malformed messages neither gets in nor grows memory."""

from __future__ import annotations

import collections
import random
import signal
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from arroyo_core.batch import decode_all
from arroyo_core.message import Event, Start, Stop
from arroyo_core.wire import DEFAULT_LIMITS, decode, encode
from tests.support.ledgers import final_ledger, status
from tests.support.plugins import plugin_env
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

MiB = 2**20


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def source_args(frames: int, rate: float, shape: str = "[32,32]", *extra: str) -> list[str]:
    return ["--source", "simulated", "-o", f"shape={shape}", "-o", f"frames={frames}",
            "-o", f"rate={rate}", *extra]


def last_run(endpoint: str) -> dict:
    runs = status(endpoint)["outputs"][0]["runs"]
    return runs[-1] if runs else {}


def completed_run(endpoint: str, timeout: float = 30.0) -> dict:
    return wait_for(lambda: last_run(endpoint).get("complete") and last_run(endpoint), timeout,
                    "the run to complete at the sink")


# -- 1. slow joiners -------------------------------------------------------------------------

@pytest.mark.parametrize("pattern,in_pattern", [("push", "pull"), ("pub", "sub")])
def test_downstream_started_late_loses_nothing(service, ipc, pattern, in_pattern):
    hop1, hop2, source_stats, operator_stats, sink_stats = (ipc() for _ in range(5))
    service("listener", *source_args(400, 0), "--out", "@" + hop1, "--out-pattern", pattern,
            "--status", source_stats, name="source")
    # The source is running and held back: its queue is full and it has sent nothing.
    wait_for(lambda: status(source_stats)["queue"]["depth"] >= 60, 10, "the source held back")
    assert status(source_stats)["outputs"][0]["sent"] == 0

    service("operator", "--in", ">" + hop1, "--in-pattern", in_pattern, "--out", "@" + hop2,
            "--out-pattern", pattern, "--status", operator_stats, name="operator")
    service("publisher", "--in", ">" + hop2, "--in-pattern", in_pattern, "--sink", "stats",
            "--status", sink_stats, name="sink")
    run = completed_run(sink_stats)
    assert run["frames"] == run["frames_sent"] == 400 and run["lost"] == 0
    for endpoint in (operator_stats, sink_stats):
        link = status(endpoint)["input"]
        (sender,) = link["senders"].values()
        assert sender["first_seq"] == 0, link
        assert link["missing"] == 0 and link["received"] == 402, link


def test_push_waits_for_every_expected_puller(service, ipc, zmq_socket):
    hop, stats = ipc(), ipc()
    # batch=0: what is shared out here is messages, one per event (batches are shared
    # the same way: tests/integration/test_batching.py)
    source = service("listener", *source_args(600, 0, "[8,8]"), "--out", "@" + hop,
                     "--out-option", "peers=3", "--out-option", "peer_timeout=0",
                     "--out-option", "batch=0",
                     "--status", stats, name="source")
    pullers = []
    for connected in (1, 2):
        pullers.append(zmq_socket(zmq.PULL))
        pullers[-1].connect(hop)
        wait_for(lambda n=connected: status(stats)["outputs"][0]["peers"]["peers"] == n, 10,
                 f"{connected} peer(s) seen by the source")
    wait_for(lambda: "waiting for 3 expected peer(s)" in source.output(), 5, "the wait logged")
    assert status(stats)["outputs"][0]["sent"] == 0  # two of three: the run has not begun

    pullers.append(zmq_socket(zmq.PULL))
    pullers[-1].connect(hop)
    poller = zmq.Poller()
    for puller in pullers:
        poller.register(puller, zmq.POLLIN)
    seqs: dict[int, list[int]] = {0: [], 1: [], 2: []}
    deadline = time.monotonic() + 20
    while sum(map(len, seqs.values())) < 602 and time.monotonic() < deadline:
        for ready, _ in poller.poll(100):
            index = pullers.index(ready)
            _, envelope = decode(ready.recv_multipart(copy=False))
            seqs[index].append(envelope.seq)
    everything = sorted(s for got in seqs.values() for s in got)
    assert everything == list(range(602))  # Start, 600 events, Stop: none lost, none twice
    first_three = {index for index, got in seqs.items() for s in got if s < 3}
    assert first_three == {0, 1, 2}, seqs  # the run's first messages went to all three
    assert all(len(got) >= 150 for got in seqs.values()), {i: len(g) for i, g in seqs.items()}


def test_source_that_ends_while_its_peer_is_held_back_loses_nothing(service, ipc,
                                                                     zmq_socket):
    stats = ipc()
    frames = 600  # 1.2 MiB: the kernels' buffers hold what the held-back peer has not read
    # 2 s at 300 frames/s: long enough for heartbeats to be in the stream it sends (over
    # tcp, whose kernel buffers are what this is about; it waits for its peer to start)
    source = service("listener", *source_args(frames, 300, "[32,32]"),
                     "--out", "@tcp://127.0.0.1:*", "--status", stats, name="source")
    puller = zmq_socket(zmq.PULL)
    puller.rcvhwm = 10
    puller.rcvbuf = 64 * 1024  # most of the run waits in the source's kernel buffer
    puller.connect(source.bound("out"))
    seqs = [envelope.seq for _ in range(50)
            for _, envelope in decode_all(puller.recv_multipart(copy=False), DEFAULT_LIMITS)]
    # The source has handed all its frames to the kernel and ended its run; this peer is
    # held back (reads nothing) for a while, as a stage whose own output is blocked.
    wait_for(lambda: status(stats)["outputs"][0]["sent"] == frames + 2, 10,
             "the source to hand over its whole run")
    time.sleep(2.0)  # holding back on purpose, not waiting for a condition
    # (a 64 KiB receive buffer on loopback can leave TCP probing a zero window for a few s)
    while len(seqs) < frames + 2 and puller.poll(6000):
        seqs += [envelope.seq for _, envelope in
                 decode_all(puller.recv_multipart(copy=False), DEFAULT_LIMITS)]
    assert seqs == list(range(frames + 2))
    assert source.process.wait(10) == 0


# -- 4. dead and slow peers --------------------------------------------------------------------

def test_killed_peer_is_noticed_at_once_and_its_return_logged(service, ipc):
    stats = ipc()
    source = service("listener", *source_args(100000, 200), "--out", "@tcp://127.0.0.1:*",
                     "--status", stats, name="source")
    sink_args = ["--in", ">" + source.bound("out"), "--sink", "stats", "-o", "interval=0"]
    sink = service("publisher", *sink_args, name="sink")
    wait_for(lambda: status(stats)["outputs"][0]["peers"]["peers"] == 1, 10, "the sink seen")

    killed = time.monotonic()
    sink.process.kill()
    wait_for(lambda: status(stats)["outputs"][0]["peers"]["disconnects"] == 1, 3,
             "the disconnect counted")
    noticed = time.monotonic() - killed
    wait_for(lambda: "disconnected" in source.output(), 2, "the disconnect logged")

    restarted = time.monotonic()
    service("publisher", *sink_args, name="sink2")
    wait_for(lambda: status(stats)["outputs"][0]["peers"]["reconnects"] == 1, 5, "reconnect")
    back = time.monotonic() - restarted
    wait_for(lambda: "peer connected again" in source.output(), 2, "the reconnect logged")
    print(f"\nkill -9 of a peer noticed after {noticed * 1000:.0f} ms; its replacement "
          f"connected {back:.2f} s after it was started")


# The receiver below may die on a libzmq 4.3.5 assertion, "!_io_error
# (src/stream_engine_base.cpp:310)": after SIGCONT its I/O thread finds, in one poll, the
# heartbeat PINGs that came while it was frozen and the reset of the connection the sender
# dropped, and answers a PING on the dead connection (zeromq/libzmq#4364, #4767, #4852;
# unfixed upstream). With batches it did here about one run in two; with one message an
# Event in none of 20 on the host, but once in CI's container. Both run; neither may fail
# the suite while libzmq has the bug (docs/reliability.md section 4).
KNOWN_LIBZMQ_ABORT = pytest.mark.xfail(
    reason="libzmq 4.3.5 asserts !_io_error in a receiver thawed after its sender's "
           "heartbeat dropped it (zeromq/libzmq#4364)", strict=False)


@KNOWN_LIBZMQ_ABORT
@pytest.mark.parametrize("batch", ["batch=0", "batch=64"])
def test_silent_peer_is_dropped_by_heartbeat_and_the_loss_is_counted(service, ipc, batch):
    stats, sink_stats = ipc(), ipc()
    heartbeat = ["heartbeat_ms=200", "heartbeat_timeout_ms=1000", batch]
    frames = 1000
    source = service("listener", *source_args(frames, 250), "--out", "@tcp://127.0.0.1:*",
                     *(a for h in heartbeat for a in ("--out-option", h)),
                     "--status", stats, name="source")
    sink = service("publisher", "--in", ">" + source.bound("out"), "--sink", "stats",
                   "-o", "interval=0", "--status", sink_stats, name="sink")
    wait_for(lambda: last_run(sink_stats).get("frames", 0) >= 100, 10, "frames flowing")

    sink.signal(signal.SIGSTOP)
    paused = time.monotonic()
    try:
        wait_for(lambda: status(stats)["outputs"][0]["peers"]["disconnects"] == 1, 4,
                 "the silent peer dropped")
        noticed = time.monotonic() - paused
    finally:
        sink.signal(signal.SIGCONT)
    wait_for(lambda: status(stats)["outputs"][0]["peers"]["reconnects"] == 1, 5, "reconnect")
    assert "disconnected" in source.output()
    run = completed_run(sink_stats)
    link = status(sink_stats)["input"]
    assert run["frames_sent"] == frames
    # The heartbeat dropped the connection with messages queued on it: that loss is not
    # silent. The link's sequence gaps count exactly the frames that never arrived.
    assert link["missing"] == run["lost"] == frames - run["frames"]
    print(f"\nsilent (SIGSTOPped) peer dropped {noticed:.2f} s after it stopped "
          f"(heartbeat 200 ms, timeout 1 s); {run['lost']} queued frames lost and counted")


def test_subscriber_too_far_behind_disconnects_loudly(service, ipc):
    hop, stats = ipc(), ipc()
    # A PUB waits peer_timeout for a subscriber that went away to come back (test_pub_hold);
    # for an optional viewer that may never come back, a short one.
    service("listener", *source_args(2000, 400), "--out", "@" + hop, "--out-pattern", "pub",
            "--out-option", "peer_timeout=1", "--status", stats, name="source")
    viewer = service("publisher", "--in", ">" + hop, "--in-pattern", "sub",
                     "--sink", "arroyo_testplugins.sinks:SlowSink", "-o", "delay=0.02",
                     "--in-option", "max_lag=0.5", "--in-option", "on_lag=disconnect",
                     name="viewer", env=plugin_env())
    assert viewer.process.wait(30) == 1  # exits non-zero: supervisor restarts it fresh
    assert "disconnecting rather than holding the sender back" in viewer.output()
    assert "FallenBehindError" in viewer.output()
    # The publisher is no longer held back by it and finishes its run; what it published
    # with no subscriber left is counted, not silently discarded.
    def finished():
        output = status(stats)["outputs"][0]
        return output["sent"] + sum(output["dropped"].values()) == 2002 and output

    output = wait_for(finished, 20, "the source to finish")
    assert output["dropped"].get("no subscriber", 0) > 0, output


# -- 3. overflow policies and memory budget ------------------------------------------------

@pytest.mark.parametrize("policy", ["block", "drop-newest", "drop-oldest"])
def test_paused_stage_keeps_upstream_memory_in_budget(service, ipc, tmp_path, policy):
    frames, frame_bytes, budget = 400, 512 * 1024, 24 * MiB
    hop1, hop2, source_stats, sink_stats = (ipc() for _ in range(4))
    record = tmp_path / "received.txt"
    policy_args = {"block": [],
                   "drop-newest": ["--out-option", "overflow=drop-newest"],
                   "drop-oldest": ["--queue-policy", "drop-oldest"]}[policy]
    service("publisher", "--in", ">" + hop2, "--sink", "arroyo_core.verify:VerifyingSink",
            "-o", f"record={record}", "--status", sink_stats, name="sink")
    middle = service("operator", "--in", ">" + hop1, "--out", "@" + hop2, name="middle")
    source = service("listener", *source_args(frames, 100, "[512,512]", "-o", "fresh=true",
                                              "-o", "checksum=true"),
                     "--out", "@" + hop1, "--memory-limit", str(budget), *policy_args,
                     "--status", source_stats, name="source")
    wait_for(lambda: last_run(sink_stats).get("frames", 0) >= 60, 15, "frames flowing")
    pid = source.process.pid
    baseline = max(rss_bytes(pid) for _ in range(5))

    middle.signal(signal.SIGSTOP)
    peak = baseline
    try:
        until = time.monotonic() + 3.0
        while time.monotonic() < until:
            peak = max(peak, rss_bytes(pid))
            time.sleep(0.05)  # sampling RSS, not waiting for a condition
        held_back = status(source_stats)
    finally:
        middle.signal(signal.SIGCONT)

    run = completed_run(sink_stats)
    # The source ends after its run, maybe before its status socket could be asked: its
    # ledger is the one it logs as it stops.
    wait_for(lambda: source.process.poll() is not None, 15, "the source to end its run")
    ledger = final_ledger(source)
    received = [line.split() for line in record.read_text().splitlines()]
    indices = [int(frame) for _, frame, _ in received]
    true_loss = frames - len(set(indices))
    dropped = (sum(ledger["outputs"][0]["dropped"].values())
               + sum(ledger["queue"]["dropped"].values()))
    assert run["frames_sent"] == frames
    assert len(indices) == len(set(indices)) and all(ok == "1" for *_, ok in received)
    assert run["corrupt"] == 0 and run["crc_checked"] == len(indices)
    # Every drop is counted where it happened, and the run's Stop carries the count on:
    # the sink reports them as dropped by policy, not lost.
    assert dropped == true_loss == run["policy_dropped"], (dropped, true_loss, run)
    assert run["lost"] == 0, run
    if policy == "block":
        assert true_loss == 0
        assert held_back["queue"]["depth"] > 0  # it was held back, not dropping
    else:
        assert true_loss > 0  # the pause did overflow
    assert peak - baseline <= budget + 8 * MiB, (peak - baseline) / MiB
    assert source.process.poll() in (None, 0) and middle.process.poll() is None
    print(f"\n{policy}: source RSS {baseline / MiB:.0f} MiB before the 3 s pause, peak "
          f"{peak / MiB:.0f} MiB (+{(peak - baseline) / MiB:.1f} MiB, budget "
          f"{budget / MiB:.0f} MiB, frames {frame_bytes // 1024} KiB); dropped {dropped} = "
          f"lost {true_loss}")


def test_slow_keep_latest_viewer_gets_the_newest_frame_without_slowing_the_source(
        service, ipc):
    frames, rate = 400, 200.0
    hop, source_stats, viewer_stats = ipc(), ipc(), ipc()
    service("publisher", "--in", ">" + hop, "--in-pattern", "sub",
            "--sink", "arroyo_testplugins.sinks:SlowSink", "-o", "delay=0.05",
            "--queue-policy", "keep-latest", "--in-option", "hwm=4",
            "--status", viewer_stats, name="viewer", env=plugin_env())
    source = service("listener", *source_args(frames, rate, "[256,256]"), "--out", "@" + hop,
                     "--out-pattern", "pub", "--status", source_stats, name="source")
    stop = wait_for(lambda: status(viewer_stats)["outputs"][0]["stop"], 30, "the run's Stop")
    viewer = status(viewer_stats)
    shown = viewer["outputs"][0]
    dropped = sum(viewer["queue"]["dropped"].values())
    assert stop["frames_sent"] == frames
    assert shown["last_frame"] == frames - 1 and shown["in_order"]  # the newest, last
    assert shown["shown"] + dropped == frames  # every frame shown or counted as replaced
    assert viewer["input"]["missing"] == 0
    # The source ends after its run, maybe before the viewer has shown the Stop: its ledger
    # is the one it logs as it stops, not its status socket's (which closes then).
    wait_for(lambda: source.process.poll() is not None, 15, "the source to end its run")
    assert final_ledger(source)["outputs"][0]["dropped"] == {}
    nominal = frames / rate
    # Held back by a 20 frames/s viewer it would take frames * 0.05 = 20 s.
    assert stop["seconds"] < 2 * nominal, stop
    print(f"\nkeep-latest viewer at 20 frames/s: source ran {stop['seconds']:.2f} s for "
          f"{frames} frames at {rate:.0f}/s (nominal {nominal:.1f} s); viewer showed "
          f"{shown['shown']}, replaced {dropped}, last frame {shown['last_frame']}")


# -- malformed input -----------------------------------------------------------------------

def _bad(**fields):
    base = {"v": 1, "kind": "event", "src": "raw", "seq": 0, "time": 1.0, "meta": {},
            "arrays": []}
    return msgpack.packb({**base, **fields}, use_bin_type=True)


def test_flood_of_malformed_messages_is_counted_and_does_not_grow_memory(
        service, ipc, zmq_socket):
    hop, stats = ipc(), ipc()
    big = b"\x00" * 65536  # malformed messages that would show if they were kept
    malformed = {
        "msgpack": [b"\xc1 never msgpack", big],
        "version": [_bad(v=9), big],
        "length": [_bad(arrays=[["image", "<u2", [10]]]), big],
        "dtype": [_bad(arrays=[["objects", "|O", [8192]]]), big],
        "frames": [_bad(arrays=[["a", "<u1", [65536]], ["b", "<u1", [1]]]), big],
        "header": [_bad(kind="no-such-kind")],
    }
    raw = zmq_socket(zmq.PUSH)
    raw.bind(hop)
    process = service("publisher", "--in", ">" + hop, "--sink", "arroyo_core.verify:VerifyingSink",
                      "--status", stats, name="guard")
    rng = random.Random(5)
    reasons = list(malformed)
    expected: collections.Counter[str] = collections.Counter()
    image = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32)
    seq = 0

    def send(message):
        nonlocal seq
        raw.send_multipart(encode(message, src="tester", seq=seq), copy=False)
        seq += 1

    send(Start({"run": "flood"}))
    frame = 0
    samples = []
    for _batch in range(5):
        for _ in range(1000):
            send(Event({"run": "flood", "frame": frame}, {"image": image}))
            frame += 1
            reason = rng.choice(reasons)
            raw.send_multipart(malformed[reason], copy=False)
            expected[reason] += 1
        wait_for(lambda: status(stats)["input"]["received"] == seq, 30, "the batch through")
        samples.append(rss_bytes(process.process.pid))
    send(Stop({"run": "flood", "frames_sent": frame}))
    run = completed_run(stats)
    link = status(stats)["input"]
    assert run["frames"] == frame == 5000 and run["lost"] == 0
    assert link["missing"] == 0 and link["duplicates"] == 0
    assert link["malformed"] == dict(expected)
    growth = samples[-1] - samples[0]  # after 1000 and after 5000 of each
    assert growth < 4 * MiB, [s / MiB for s in samples]
    assert process.process.poll() is None
    print(f"\n{sum(expected.values())} malformed among 5000 valid: all valid delivered; RSS "
          f"{samples[0] / MiB:.1f} -> {samples[-1] / MiB:.1f} MiB "
          f"(4000 x 64 KiB malformed in between)")
