"""The karabo-bridge listener against the karabo-bridge package's own simulator
(``karabo-bridge-server-sim``, a child process per test) and, for bad input, a plain pyzmq
REP socket that answers ``next`` with broken messages and the package's own serializer's.

The simulator sends one AGIPD module of raw zeros per train, numbered from 10000000000,
and stamps each train's id into the data too (``image.trainId``): the tests check the
metadata's train id against it, so the numbering is checked by data the listener does not
make.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq

from arroyo_core.karabo_source import KaraboBridgeListener
from arroyo_core.message import Event
from arroyo_core.operators import PassThrough
from arroyo_core.runtime import Runtime
from services.processes import free_port
from tests.support.facility import Recorder, karabo_sim, script
from tests.support.requirements import skip_unless
from tests.support.waiting import exit_within, wait_for

pytestmark = pytest.mark.integration

karabo_bridge = pytest.importorskip("karabo_bridge", reason="pip install arroyo-stream[karabo]")
from karabo_bridge.serializer import serialize  # noqa: E402

SOURCE = "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf"
FIRST_TRAIN = 10000000000  # the simulator's


def check_train(event: Event) -> None:
    """What the simulator puts in every train, against the Event's metadata."""
    data = event.payload[f"{SOURCE}/image.data"]
    assert data.shape == (128, 512, 64) and data.dtype == np.uint16 and not data.any()
    assert (event.payload[f"{SOURCE}/image.trainId"] == event.meta["train_id"]).all()
    assert (event.payload[f"{SOURCE}/image.cellId"] == np.arange(64)).all()
    assert event.meta["sources"] == [SOURCE]
    assert event.meta["karabo"][SOURCE]["metadata"]["timestamp.tid"] == event.meta["train_id"]


class Running:
    """A listener in a real Runtime (in a thread) whose sink is a Recorder."""

    def __init__(self, listener: KaraboBridgeListener) -> None:
        self.listener = listener
        self.sink = Recorder(check_train)
        self.runtime = Runtime(listener, PassThrough(), [self.sink], drain_timeout=5)
        self.runtime.open()
        self.thread = threading.Thread(target=self.runtime.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.runtime.stop()
            self.thread.join(10)


@pytest.fixture
def listen() -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(endpoint: str, **options: Any) -> Running:
        started.append(Running(KaraboBridgeListener(endpoint, **options)))
        return started[-1]

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def sims(tmp_path) -> Iterator[Callable[..., Any]]:
    skip_unless(script("karabo-bridge-server-sim") is not None,
                "karabo-bridge-server-sim is not installed (pip install arroyo-stream[karabo])")
    made: list[Any] = []

    def make(pattern: str = "REP", protocol: str = "2.2") -> Any:
        made.append(karabo_sim(tmp_path, pattern, protocol))
        made[-1].start()
        return made[-1]

    yield make
    for sim in made:
        sim.stop()


@pytest.mark.parametrize(("pattern", "protocol"), [
    ("REQ", "2.2"), ("REQ", "1.0"), ("SUB", "2.2"), ("PULL", "2.2")])
def test_a_whole_run_from_the_simulator(sims, listen, pattern, protocol) -> None:
    """Start, one Event per train with the train's arrays, and a Stop once the bridge is
    gone for idle_timeout; every train id the listener skipped is in its ledger."""
    sim = sims({"REQ": "REP", "SUB": "PUB", "PULL": "PUSH"}[pattern], protocol)
    running = listen(f"tcp://127.0.0.1:{sim.port}", pattern=pattern, protocol=protocol,
                     idle_timeout=1.0)
    running.sink.context = lambda: f"{running.listener.status()}\n{sim.output()}"
    running.sink.wait("event", 4, timeout=30)
    sim.stop()
    (stop,) = running.sink.wait("stop", 1, timeout=15)
    (start,) = running.sink.of("start")
    events = running.sink.of("event")
    assert running.sink.problems == []
    assert running.sink.kinds[0] == "start" and running.sink.kinds[-1] == "stop"
    assert start["sources"] == [SOURCE] and start["protocol"] == protocol
    assert start["arrays"][f"{SOURCE}/image.data"] == ["<u2", [128, 512, 64]]
    ids = [meta["train_id"] for meta in events]
    assert ids == sorted(set(ids))
    assert [meta["frame"] for meta in events] == [i - start["first_train"] for i in ids]
    assert stop["ended"] == "idle" and stop["trains"] == len(events)
    assert stop["frames_sent"] == ids[-1] - ids[0] + 1
    status = running.listener.status()
    assert status.received == len(events) and status.malformed == {}
    assert status.missing == ids[-1] - ids[0] + 1 - len(ids)  # the gaps, counted
    if pattern == "REQ":  # asked for each train: none skipped, from the simulator's first
        assert ids[0] == FIRST_TRAIN and status.missing == 0


def test_a_restarted_bridge_starts_a_new_run(sims, listen) -> None:
    """The bridge killed mid-run and started again: the listener asks the new one at once,
    ends the run when train ids go back (Stop, ``restarted``) and starts another."""
    sim = sims()
    running = listen(f"tcp://127.0.0.1:{sim.port}", idle_timeout=30.0)
    # (on a timeout: whether the listener asked the new bridge, and what the bridge said)
    running.sink.context = lambda: f"{running.listener.status()}\n{sim.output()}"
    running.sink.wait("event", 3)
    sim.stop()
    sim.start()  # on the same port: train ids from 10000000000 again
    running.sink.wait("start", 2)
    running.sink.wait("event", len(running.sink.of("event")) + 2)
    first, second = running.sink.of("start")
    stop = running.sink.of("stop")[0]
    assert stop["run"] == first["run"] and stop["ended"] == "restarted"
    assert second["first_train"] == FIRST_TRAIN and second["run"] != first["run"]
    kinds = running.sink.kinds
    assert kinds.index("stop") < len(kinds) - kinds[::-1].index("start") - 1
    assert running.sink.problems == []
    assert running.listener.status().malformed == {}


def broken_messages() -> list[tuple[str, list[bytes]]]:
    """(reason counted, frames): what a broken or hostile bridge might answer."""
    good = serialize({"S": {"x": np.arange(4, dtype=np.uint16)}},
                     {"S": {"timestamp.tid": 5}})
    header = msgpack.unpackb(good[2])
    wrong_length = msgpack.packb({**header, "shape": [5]})
    object_1_0 = msgpack.packb({"S": {"metadata": {"timestamp.tid": 5}, "x": {
        b"nd": True, b"type": "|O", b"kind": b"O", b"shape": [1], b"data": b"\x80\x04."}}},
        use_bin_type=True)
    return [("msgpack", [b"\x00not msgpack"]),
            ("frames", [bytes(f) for f in good[:3]]),  # truncated: the array's bytes missing
            ("length", [bytes(good[0]), bytes(good[1]), wrong_length, bytes(good[3])]),
            ("dtype", [object_1_0]),  # msgpack-numpy would unpickle this
            ("train", [bytes(f) for f in serialize({"S": {"x": 1}}, {"S": {}})]),
            ("content", [msgpack.packb({"source": "S", "content": "pickle"}), b""])]


def test_broken_messages_are_counted_and_the_stream_goes_on(listen, zmq_socket) -> None:
    """A plain REP socket answers each ``next``: a broken message, then a good train (from
    karabo_bridge's serializer), for every kind of breakage; each broken one is counted by
    its reason, none unpickled, and every good train arrives."""
    bridge = zmq_socket(zmq.REP)
    port = free_port()
    bridge.bind(f"tcp://127.0.0.1:{port}")
    running = listen(f"tcp://127.0.0.1:{port}", idle_timeout=30.0)
    running.sink.check = None  # not the simulator's trains
    answers = []
    for index, (_, frames) in enumerate(broken_messages()):
        answers.append(frames)
        tid = 100 + index
        answers.append(serialize({"S": {"x": np.full(4, tid, dtype=np.uint16), "n": tid}},
                                 {"S": {"timestamp.tid": tid}}))
    for frames in answers:
        assert bridge.poll(10_000), "the listener did not ask for the next train"
        assert bridge.recv() == b"next"
        bridge.send_multipart(frames)
    events = running.sink.wait("event", len(answers) // 2)
    assert [meta["train_id"] for meta in events] == list(range(100, 100 + len(answers) // 2))
    assert all(meta["karabo"]["S"]["values"] == {"n": meta["train_id"]} for meta in events)
    expected = {reason: 1 for reason, _ in broken_messages()}
    wait_for(lambda: running.listener.status().malformed == expected, 10,
             f"malformed {expected}, have {running.listener.status().malformed}")
    assert running.thread.is_alive()


def test_the_listener_by_name_in_a_service(sims, service, zmq_socket) -> None:
    """``arroyo listener --source karabo-bridge``: trains arrive on Arroyo's wire, each with
    its arrays, and the service's ledger says what it received."""
    from arroyo_core.batch import decode_all
    from arroyo_core.wire import DEFAULT_LIMITS

    sim = sims()
    sink = zmq_socket(zmq.PULL)
    port = sink.bind_to_random_port("tcp://127.0.0.1")
    listener = service("listener", "--source", "karabo-bridge", "-o",
            f"endpoint=tcp://127.0.0.1:{sim.port}", "-o", "idle_timeout=2",
            "--out", f">tcp://127.0.0.1:{port}")
    seen: list[Any] = []

    def receive() -> bool:
        if sink.poll(100):
            seen.extend(m for m, _ in decode_all(sink.recv_multipart(copy=False),
                                                 DEFAULT_LIMITS))
        return sum(isinstance(m, Event) for m in seen) >= 3

    wait_for(receive, 30, "3 trains from the service")
    listener.signal()  # SIGTERM: the run ends with a Stop, then the service exits

    def stopped() -> bool:
        receive()
        return seen[-1].kind == "stop"

    wait_for(stopped, 30, "the run's Stop")
    assert exit_within(listener, 15) == 0
    assert seen[0].kind == "start" and seen[0].meta["sources"] == [SOURCE]
    assert seen[-1].meta["ended"] == "stopped" and seen[-1].meta["aborted"] is True
    events = [m for m in seen if isinstance(m, Event)]
    assert seen[-1].meta["trains"] == len(events)
    for event in events:
        check_train(event)
