"""The payload is not copied between the socket and a user's ``process()``, nor from a
forwarded event back to the socket: proven in one process with real ZeroMQ sockets."""

from __future__ import annotations

import threading
import tracemalloc
from typing import Any

import numpy as np
import pytest
import zmq

from arroyo_core.link import ZmqListener, ZmqPublisher
from arroyo_core.message import Event, Start, Stop
from arroyo_core.operators import PassThrough
from arroyo_core.runtime import Runtime
from arroyo_core.transports.zmq import sockets
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

MiB = 2**20


def buffer_owner(value: Any) -> Any:
    """Follow ``.base`` (arrays) and ``.obj`` (memoryviews) to the object owning the bytes."""
    while True:
        if isinstance(value, np.ndarray) and value.base is not None:
            value = value.base
        elif isinstance(value, memoryview):
            value = value.obj
        else:
            return value


def frame_bytes(frame: zmq.Frame) -> np.ndarray:
    """The received frame's own memory, as uint8, without copying it."""
    return np.frombuffer(frame.buffer, np.uint8)


def same_memory(value: Any, frame: zmq.Frame) -> bool:
    """``value`` covers exactly the bytes of ``frame``: same address, same length."""
    array = np.frombuffer(value, np.uint8) if not isinstance(value, np.ndarray) else value
    own = frame_bytes(frame)
    return (np.shares_memory(array, own) and array.nbytes == own.nbytes
            and array.__array_interface__["data"][0] == own.__array_interface__["data"][0])


class Recorder(PassThrough):
    """A user operator that keeps what ``process()`` was given, and passes it on."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Event] = []

    def on_event(self, event: Event) -> Event:
        self.events.append(event)
        return event


class SentFrames:
    """Stands in for pyzmq's send in zmq/sockets.py and keeps, per message, the frames one
    socket was handed to send (parts join until one without SNDMORE) and their ``copy``."""

    def __init__(self, send: Any, socket: zmq.Socket) -> None:
        self.send, self.socket = send, socket
        self.sent: list[tuple[list[Any], bool]] = []
        self._more = False

    def __call__(self, socket: zmq.Socket, frame: Any, flags: int = 0, copy: bool = True,
                 *rest: Any) -> Any:
        if socket is not self.socket:
            return self.send(socket, frame, flags, copy, *rest)
        if not self._more:  # kept before sending: the test reads it once the sink has it
            self.sent.append(([], copy))
        self.sent[-1][0].append(frame)
        try:
            result = self.send(socket, frame, flags, copy, *rest)
        except zmq.Again:  # nothing was sent
            self.sent[-1][0].pop()
            if not self.sent[-1][0]:
                self.sent.pop()
            raise
        self._more = bool(flags & zmq.SNDMORE)
        return result


class InProcessHop:
    """sender -> [ZmqListener -> Runtime(operator) -> ZmqPublisher] -> raw PULL, one process."""

    def __init__(self, ipc, operator: Any, publish: bool = True) -> None:
        hop1, hop2 = ipc(), ipc()
        self.sender = ZmqPublisher("@" + hop1)
        self.sender.open()
        self.output = ZmqPublisher("@" + hop2) if publish else None
        self.runtime = Runtime(ZmqListener(">" + hop1), operator,
                               [self.output] if self.output else [], drain_timeout=5)
        self.runtime.open()
        self.sink = zmq.Context.instance().socket(zmq.PULL)
        self.sink.linger = 0
        self.sink.connect(hop2)
        self.thread = threading.Thread(target=self.runtime.run, daemon=True)
        self.thread.start()
        self.runtime.ready.wait(5)

    def close(self) -> None:
        self.runtime.stop()
        self.thread.join(10)
        self.sender.abandon()
        self.sender.close()
        self.sink.close(linger=0)
        assert not self.thread.is_alive()


@pytest.fixture
def hop(ipc):
    made: list[InProcessHop] = []

    def make(operator: Any, publish: bool = True) -> InProcessHop:
        made.append(InProcessHop(ipc, operator, publish))
        return made[-1]

    yield make
    for item in made:
        item.close()


def test_process_receives_views_on_the_received_frames(hop):
    recorder = Recorder()
    chain = hop(recorder, publish=False)
    image = np.arange(MiB, dtype=">u2").reshape(1024, 1024)  # 2 MiB, big-endian
    small = np.arange(10, dtype="<f4")  # below pyzmq's copy threshold: still a received frame
    chain.sender.publish(Start({"run": "z"}))
    chain.sender.publish(Event({"frame": 0}, {"image": image, "small": small,
                                              "raw": b"x" * 100_000}))
    chain.sender.publish(Stop({"run": "z"}))
    wait_for(lambda: recorder.events, 10, "the event in process()")
    payload = recorder.events[0].payload

    got = payload["image"]
    assert got.dtype.str == ">u2" and got.shape == (1024, 1024)
    assert np.array_equal(got, image)
    for name in ("image", "small", "raw"):
        value = payload[name]
        if isinstance(value, np.ndarray):
            assert not value.flags.owndata, name
        owner = buffer_owner(value)
        assert isinstance(owner, zmq.Frame), f"{name}: bytes are owned by {type(owner)}"
        assert same_memory(value, owner), name


def test_pass_through_hands_the_received_frames_to_send(hop, monkeypatch):
    recorder = Recorder()
    chain = hop(recorder)
    spy = SentFrames(sockets._send, chain.output.sender.socket)
    monkeypatch.setattr(sockets, "_send", spy)
    image = np.random.default_rng(0).integers(0, 2**16, (512, 1024), dtype="<u2")
    raw = bytes(range(256)) * 1024  # 256 KiB of raw bytes
    chain.sender.publish(Start({"run": "z"}))
    chain.sender.publish(Event({"frame": 0}, {"image": image, "raw": raw}))
    start = chain.sink.recv_multipart(copy=False)
    event = chain.sink.recv_multipart(copy=False)
    assert len(start) == 1 and len(event) == 3
    assert frame_bytes(event[1]).tobytes() == image.tobytes()
    assert frame_bytes(event[2]).tobytes() == raw

    received = recorder.events[0].payload
    sent_frames, copy = spy.sent[1]
    assert copy is False  # pyzmq keeps a reference, not a copy
    for index, name in ((1, "image"), (2, "raw")):
        frame_in = buffer_owner(received[name])
        assert isinstance(frame_in, zmq.Frame), name
        assert same_memory(sent_frames[index], frame_in), name


def test_forwarding_16_mib_allocates_far_less_than_16_mib(hop):
    chain = hop(PassThrough())
    image = np.random.default_rng(1).integers(0, 2**16, (4096, 2048), dtype="<u2")  # 16 MiB
    # Warm up: first messages build caches, threads' buffers and the like.
    chain.sender.publish(Start({"run": "z"}))
    chain.sender.publish(Event({"frame": 0}, {"image": image[:8]}))
    assert len(chain.sink.recv_multipart()) == 1 and len(chain.sink.recv_multipart()) == 2

    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        chain.sender.publish(Event({"frame": 1}, {"image": image}))
        frames = chain.sink.recv_multipart(copy=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(frames) == 2 and frames[1].buffer.nbytes == image.nbytes
    assert np.array_equal(np.frombuffer(frames[1].buffer, "<u2").reshape(image.shape), image)
    allocated = peak - before
    assert allocated < MiB, f"forwarding 16 MiB allocated {allocated / MiB:.1f} MiB in Python"
