"""The per-message socket helpers of the ZeroMQ transport, over real sockets: send_frames and
recv_frames carry multipart messages exactly like send_multipart/recv_multipart, and a
publisher forwards a received frame itself (not a view of it) when an event passes through."""

from __future__ import annotations

import numpy as np
import pytest
import zmq

from arroyo_core.transports.zmq.sockets import (
    ZERO_COPY_BYTES,
    received_frame,
    recv_frames,
    send_frames,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def pair(zmq_socket):
    push, pull = zmq_socket(zmq.PUSH), zmq_socket(zmq.PULL)
    push.connect(f"tcp://127.0.0.1:{pull.bind_to_random_port('tcp://127.0.0.1')}")
    pull.rcvtimeo = push.sndtimeo = 5000  # a lost message fails the test instead of hanging
    return push, pull


def test_send_frames_and_recv_frames_keep_messages_whole_and_apart(pair):
    push, pull = pair
    big = np.arange(ZERO_COPY_BYTES, dtype="<u2")  # 2x the copy threshold: sent zero-copy
    messages = [[b"one"], [b"header", big.view(np.uint8), memoryview(b"raw")], [b"", b""]]
    for frames in messages:
        send_frames(push, frames)
    for frames in messages:
        got = recv_frames(pull)
        assert [bytes(f) for f in got] == [bytes(f) for f in frames]
    with pytest.raises(zmq.Again):
        pull.recv(zmq.NOBLOCK)


def test_a_full_socket_raises_again_and_sends_nothing_with_noblock(zmq_socket):
    push = zmq_socket(zmq.PUSH)
    push.sndhwm = 1
    push.bind_to_random_port("tcp://127.0.0.1")  # nobody connects: nothing can be queued
    with pytest.raises(zmq.Again):
        send_frames(push, [b"header", b"payload"], zmq.NOBLOCK)


def test_received_frame_finds_the_frame_a_payload_views(pair):
    push, pull = pair
    image = np.arange(256 * 1024, dtype="<u2").reshape(512, 512)
    send_frames(push, [image.view(np.uint8).reshape(-1)])
    (frame,) = recv_frames(pull)
    array = np.ndarray(image.shape, image.dtype, memoryview(frame).toreadonly())
    assert received_frame(array.reshape(-1).view(np.uint8)) is frame  # what encode hands on
    assert received_frame(memoryview(frame).toreadonly().cast("B")) is frame  # raw bytes
    part = array[:256]  # a view of half the frame must not send the whole frame
    assert received_frame(part) is part
    own = image.copy()
    assert received_frame(own) is own
