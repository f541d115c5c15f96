"""Reliable links over shared memory (shm://), real sockets and a real pool in /dev/shm,
in one process: a message's slot stays the sender's until its receiver acknowledges it,
so a receiver that never did is replaced by one that gets everything again from the same
slots; a pool full of unacknowledged messages blocks the sender, or drops the newest Event
and counts it (overflow=drop-newest). kill -9 of a receiving process under supervisord:
tests/integration/test_reliable_kills.py (scheme shm)."""

from __future__ import annotations

import gc
import threading
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from arroyo_core.link import InputLink, OutputLink
from arroyo_core.message import Event, Message, Start, Stop
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

SLOT = 2**17  # one 64 Ki uint16 image a slot (smaller buffers go inline, not through one)


def image(frame: int) -> np.ndarray:
    return np.random.default_rng(frame).integers(0, 2**16, SLOT // 2, dtype=np.uint16)


def event(frame: int) -> Event:
    data = image(frame)
    return Event({"run": "r", "frame": frame, "crc32": zlib.crc32(data)}, {"image": data})


class Receiving:
    """A reliable input link on its own thread; what it delivers is kept (holding its
    slot) until :meth:`finish` hands it back as handled, as a runtime would."""

    def __init__(self, address: str) -> None:
        self.link: Any = InputLink(">" + address, reliable=True)
        self.link.open()
        self.got: list[Message] = []
        self.crc_ok: list[bool] = []
        self.thread = threading.Thread(target=self.link.start, args=(self._deliver,),
                                       daemon=True)
        self.thread.start()

    def _deliver(self, message: Message) -> None:
        if isinstance(message, Event):  # the payload as read through the slot
            self.crc_ok.append(zlib.crc32(message.payload["image"]) == message.meta["crc32"])
        self.got.append(message)

    def frames(self) -> list[int]:
        return [m.meta["frame"] for m in list(self.got) if isinstance(m, Event)]

    def finish(self) -> None:
        """Everything delivered so far is handled (acknowledged) and let go."""
        for message in list(self.got):
            self.link.handled(message)
        self.got.clear()

    def close(self) -> None:
        self.got.clear()
        self.link.stop()
        self.thread.join(5)
        self.link.close()


@pytest.fixture
def sender() -> Iterator[OutputLink]:
    links: list[OutputLink] = []

    def make(**options: object) -> OutputLink:
        link = OutputLink("@shm://127.0.0.1:*", reliable=True, batch=0, message_bytes=SLOT,
                          **options)
        link.open()
        links.append(link)
        return link

    yield make  # type: ignore[misc]
    for link in links:
        link.abandon()
        link.close()


def pool(link: OutputLink) -> dict[str, int]:
    return link.status().transport["pool"]


def window(link: OutputLink) -> dict[str, int]:
    return link.status().transport["window"]


def settled(link: OutputLink, condition) -> bool:
    link.flush()  # reads acknowledgements, sends what waits (a runtime does it when idle)
    return condition()


def test_a_receiver_that_never_acknowledged_is_sent_everything_again_from_the_slots(
        sender):
    out = sender(max_bytes=8 * SLOT)  # 8 slots
    first = Receiving(out.sender.bound)
    second = None
    try:
        out.publish(Start({"run": "r"}))
        for frame in range(6):
            out.publish(event(frame))
        wait_for(lambda: settled(out, lambda: first.frames() == list(range(6))), 10,
                 "six frames at the first receiver")
        assert all(first.crc_ok)
        first.close()  # gone, having finished nothing, and what it had delivered (holding
        first.got, first.link = [], None  # its slots) with it: the link and its thread
        gc.collect()  # refer to each other, as a dead process's would not
        # Its slots are free of its holds, but the window keeps them: not free, not reused.
        wait_for(lambda: settled(out, lambda: pool(out)["kept"] == 6), 5, "slots kept")
        assert pool(out)["free"] == 2 and window(out)["held"] == 7

        second = Receiving(out.sender.bound)
        wait_for(lambda: settled(out, lambda: second.frames() == list(range(6))), 10,
                 "the six frames again, at the second receiver")
        assert second.crc_ok == [True] * 6  # the slots still held what was sent
        second.finish()
        wait_for(lambda: settled(out, lambda: window(out)["held"] == 0), 10,
                 "everything acknowledged")
        # Every slot free, but the last frame's: a live receiver lets its last message go
        # when the next one comes (its receiving loop still refers to it).
        wait_for(lambda: settled(out, lambda: pool(out)["free"] >= 7), 5, "slots free")
        assert pool(out)["kept"] == 0 and window(out)["resent"] >= 7
        assert out.status().transport["messages"]["copied"] == 6  # copied once, sent twice

        out.publish(event(6))  # and the link goes on
        out.publish(Stop({"run": "r", "frames_sent": 7}))
        wait_for(lambda: settled(out, lambda: [m.kind for m in second.got] == ["event", "stop"]),
                 10, "frame 6 and the Stop")
        assert second.frames() == [6] and second.crc_ok == [True] * 7
    finally:
        if second is not None:
            second.close()


@pytest.mark.parametrize("overflow", ["block", "drop-newest"])
def test_a_pool_full_of_unacknowledged_messages_blocks_or_drops_the_newest(sender, overflow):
    out = sender(max_bytes=2 * SLOT, overflow=overflow)  # two slots
    receiving = Receiving(out.sender.bound)
    try:
        out.publish(Start({"run": "r"}))
        out.publish(event(0))
        out.publish(event(1))
        wait_for(lambda: settled(out, lambda: receiving.frames() == [0, 1]), 10,
                 "two frames at the receiver")
        assert pool(out)["kept"] == 2 and pool(out)["free"] == 0

        third = threading.Thread(target=out.publish, args=(event(2),), daemon=True)
        third.start()
        if overflow == "drop-newest":
            third.join(10)
            assert not third.is_alive()
            assert out.ledger.status().dropped == {"window full": 1}
        else:
            third.join(1.0)  # it must not return while both slots are unacknowledged
            assert third.is_alive() and out.ledger.status().dropped == {}
        receiving.finish()  # acknowledged: the slots come back
        third.join(10)
        assert not third.is_alive()
        sent = [2] if overflow == "block" else []
        wait_for(lambda: settled(out, lambda: receiving.frames() == sent), 10, "frame 2")
        receiving.finish()
        wait_for(lambda: settled(out, lambda: pool(out)["free"] >= 1), 10, "a slot back")
        out.publish(event(3))
        out.publish(Stop({"run": "r", "frames_sent": 4}))
        wait_for(lambda: settled(out, lambda: receiving.got and receiving.got[-1].kind
                                 == "stop"), 10, "the Stop")
        assert receiving.frames() == [3] and all(receiving.crc_ok)
        assert len(receiving.crc_ok) == 3 + (overflow == "block")
        # The drop is in the run's Stop: the next hop counts it as dropped, not lost.
        assert receiving.got[-1].meta.get("dropped", 0) == (overflow == "drop-newest")
        receiving.finish()
        wait_for(lambda: settled(out, lambda: window(out)["held"] == 0), 10, "all acknowledged")
    finally:
        receiving.close()
