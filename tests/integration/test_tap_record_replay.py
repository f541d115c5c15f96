"""`arroyo tap`, `arroyo record` and `arroyo replay` on live chains of real processes: a tap
on a PUB link sees the stream without being waited for; a recording replayed into another
chain delivers the same payload bytes, and its ledgers count the same run."""

from __future__ import annotations

import re

import pytest

from arroyo_core.batch import decode_all
from arroyo_core.wire import DEFAULT_LIMITS
from services.processes import ServiceProcess, free_port
from services.recording import Recording
from services.status_server import query_status
from tests.support.waiting import exit_within, wait_for

pytestmark = pytest.mark.integration

FRAMES = 300


@pytest.fixture
def command():
    """Factory of `arroyo ARGS...` child processes (tap, record, replay), stopped at teardown."""
    started: list[ServiceProcess] = []

    def start(*args: str, name: str) -> ServiceProcess:
        started.append(ServiceProcess.from_argv(list(args), name))
        return started[-1]

    yield start
    for process in started:
        process.stop(timeout=10)


def link_status(endpoint: str, output: bool = True) -> dict:
    record = query_status(endpoint)
    return record["outputs"][0] if output else record["input"]


def sink_run(endpoint: str) -> dict:
    runs = link_status(endpoint)["runs"] or [{}]
    return runs[-1]


def test_a_tap_sees_a_pub_link_without_being_waited_for(service, command):
    port = free_port()
    source_status, sink_status = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    tap = command("tap", f">tcp://127.0.0.1:{port}", "-c", str(FRAMES + 2), name="tap")
    service("listener", "--source", "simulated", "-o", "shape=[16,16]", "-o", f"frames={FRAMES}",
            "-o", "rate=500", "--out", f"@tcp://127.0.0.1:{port}", "--out-pattern", "pub",
            "--status", source_status, name="source")
    # The tap is connected, yet the PUB holds its run for a real subscriber.
    wait_for(lambda: link_status(source_status)["peers"]["peers"] == 1, 15, "the tap to connect")
    held = link_status(source_status)
    assert held["subscribers"] == 0 and held["sent"] == 0, held
    service("publisher", "--in", f">tcp://127.0.0.1:{port}", "--in-pattern", "sub",
            "--sink", "stats", "--status", sink_status, name="sink")
    wait_for(lambda: sink_run(sink_status).get("complete"), 30, "the run at the sink")
    run = sink_run(sink_status)
    assert run["frames"] == FRAMES and run["lost"] == 0
    assert exit_within(tap, 15) == 0
    lines = tap.output().splitlines()
    assert any(" start run=" in line and "'frames': 300" in line for line in lines), lines
    assert any(" stop  run=" in line and "'frames_sent': 300" in line for line in lines), lines
    assert any(" event run=" in line and "image uint16[16, 16]" in line for line in lines)
    last = [line for line in lines if " -- " in line][-1]
    assert f"in all {FRAMES + 2:,} messages" in last and "missing 0," in last, last
    # The sink's status socket, read twice: its input link's count and rate.
    watch = command("tap", "--status", sink_status, "--seconds", "1.5", "--interval", "0.5",
                    name="tap-status")
    assert exit_within(watch, 15) == 0
    readings = [line for line in watch.output().splitlines()
                if f"input sub >tcp://127.0.0.1:{port}:" in line]
    assert len(readings) >= 2, watch.output()
    assert f"{FRAMES + 2} msgs" in readings[-1] and "0 msg/s" in readings[-1], readings
    assert "missing 0 dropped 0 malformed 0" in readings[-1]


def events_of(path) -> dict[int, bytes]:
    """Each Event's payload bytes in a recording, by frame number (decoded independently
    of the recorder, from the wire frames it kept)."""
    recording = Recording(path)
    found = {}
    for _, frames in recording.messages():
        for message, _ in decode_all(frames, DEFAULT_LIMITS):
            if message.kind == "event":
                found[message.meta["frame"]] = message.payload["image"].tobytes()
    recording.close()
    return found


def verified_run(endpoint: str) -> dict:
    run = dict(sink_run(endpoint))
    for timing in ("seconds", "frames_per_s", "mb_per_s", "rate_from"):
        run.pop(timing)
    return run


def test_a_recording_replays_into_a_chain_bit_for_bit_with_the_same_ledger(
        tmp_path, service, command):
    p1, p2, p3 = free_port(), free_port(), free_port()
    status = {name: f"tcp://127.0.0.1:{free_port()}" for name in ("sink1", "operator", "sink2")}
    verifying = ("--sink", "arroyo_core.verify:VerifyingSink")
    # The original run: source -> sink1, recorded as one of the PUB's two subscribers.
    service("publisher", "--in", f">tcp://127.0.0.1:{p1}", "--in-pattern", "sub", *verifying,
            "--status", status["sink1"], name="sink1")
    first = command("record", f">tcp://127.0.0.1:{p1}", str(tmp_path / "run.arroyo"),
                    "--runs", "1", name="record")
    service("listener", "--source", "simulated", "-o", "shape=[32,32]", "-o", f"frames={FRAMES}",
            "-o", "rate=300", "-o", "checksum=true", "--out", f"@tcp://127.0.0.1:{p1}",
            "--out-pattern", "pub", "--out-option", "subscribers=2", name="source")
    assert exit_within(first, 30) == 0, first.output()
    wait_for(lambda: sink_run(status["sink1"]).get("complete"), 30, "the original run")

    # The replay: replay -> operator -> sink2, the operator's output recorded too.
    service("publisher", "--in", f">tcp://127.0.0.1:{p3}", "--in-pattern", "sub", *verifying,
            "--status", status["sink2"], name="sink2")
    second = command("record", f">tcp://127.0.0.1:{p3}", str(tmp_path / "again.arroyo"),
                     "--runs", "1", name="record2")
    service("operator", "--in", f">tcp://127.0.0.1:{p2}", "--out", f"@tcp://127.0.0.1:{p3}",
            "--out-pattern", "pub", "--out-option", "subscribers=2",
            "--status", status["operator"], name="operator")
    replay = command("replay", str(tmp_path / "run.arroyo"), f"@tcp://127.0.0.1:{p2}",
                     "--speed", "2", name="replay")
    assert exit_within(replay, 30) == 0, replay.output()
    assert exit_within(second, 30) == 0, second.output()
    wait_for(lambda: sink_run(status["sink2"]).get("complete"), 30, "the replayed run")

    # Every frame's payload bytes, as recorded at the source and after the replayed chain.
    original, replayed = events_of(tmp_path / "run.arroyo"), events_of(tmp_path / "again.arroyo")
    assert sorted(original) == list(range(FRAMES))
    assert replayed == original
    # The sinks' ledgers of the run are the same (timings aside): every frame, none lost,
    # none corrupted (the source's crc32 of each frame checked at both ends).
    assert verified_run(status["sink2"]) == verified_run(status["sink1"])
    assert verified_run(status["sink2"])["frames"] == FRAMES
    assert verified_run(status["sink2"])["corrupt"] == 0
    # The replay sent the source's own sender id and sequence numbers.
    original_senders = link_status(status["sink1"], output=False)["senders"]
    assert link_status(status["operator"], output=False)["senders"] == original_senders
    # At twice the recorded pace: not faster than half the recorded span.
    said = re.search(r"in ([0-9.]+) s \(recorded over ([0-9.]+) s\)", replay.output())
    assert said, replay.output()
    took, span = float(said[1]), float(said[2])
    assert span > 0.5 and took >= span / 2 * 0.95, said
