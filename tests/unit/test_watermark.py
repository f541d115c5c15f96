"""A writer's watermark (arroyo_core.watermark): what it took is done only once flushed,
and it flushes by rows, by time and, while a reliable input waits on it, when its input is
idle; a reliable input's Finishing acknowledges only what the watermark says is done."""

from __future__ import annotations

import time

from arroyo_core.reliable import Finishing
from arroyo_core.watermark import FlushWatermark
from tests.support.waiting import wait_for


class Writer:
    """A writer that records its flushes."""

    def __init__(self, flush_frames: int = 0, flush_seconds: float = 0.0) -> None:
        self.flushes: list[float] = []
        self.watermark = FlushWatermark(lambda: self.flushes.append(time.monotonic()),
                                        flush_frames, flush_seconds, "test-flush")
        self.settled_calls = 0

    def follow(self) -> None:
        def settled() -> None:
            self.settled_calls += 1
        self.watermark.on_settled = settled

    def write(self, rows: int = 1) -> None:
        with self.watermark.lock:
            self.watermark.took()
            self.watermark.wrote(rows)


def test_taken_is_done_only_at_a_flush_by_rows():
    writer = Writer(flush_frames=3)
    writer.follow()
    writer.write()
    writer.write()
    assert (writer.watermark.produced(), writer.watermark.settled()) == (2, 0)
    assert not writer.flushes and writer.settled_calls == 0
    writer.write()
    assert (writer.watermark.produced(), writer.watermark.settled()) == (3, 3)
    assert len(writer.flushes) == 1 and writer.settled_calls == 1


def test_the_timer_flushes_a_stalled_stream():
    writer = Writer(flush_frames=1000, flush_seconds=0.05)
    writer.watermark.start()
    try:
        began = time.monotonic()
        writer.write()
        wait_for(lambda: writer.watermark.settled() == 1, 10, "the timed flush")
        assert writer.flushes[0] - began >= 0.05
    finally:
        writer.watermark.stop()


def test_an_idle_input_flushes_only_while_acknowledgements_wait():
    writer = Writer(flush_frames=1000, flush_seconds=0)  # neither rows nor time will
    writer.watermark.start()
    try:
        writer.write()
        writer.watermark.idle()  # nobody waits on it: nothing to hurry
        assert writer.watermark._idle_since is None
        writer.follow()
        writer.watermark.idle()
        wait_for(lambda: writer.watermark.settled() == 1, 10, "the idle flush")
        assert writer.settled_calls == 1
        writer.watermark.idle()  # nothing new: no flush
        assert writer.watermark._idle_since is None and len(writer.flushes) == 1
    finally:
        writer.watermark.stop()


def test_a_message_is_acknowledged_once_the_writer_flushed_what_it_made():
    acks: list[tuple[str, int]] = []
    finishing = Finishing(lambda token, kind, src, seq, nbytes: acks.append((src, seq)))
    writer = Writer(flush_frames=2)
    writer.watermark.on_settled = finishing.advance
    first = finishing.add(None, "s", 0, done=False)
    writer.write()
    finishing.handled([first], ((writer.watermark, writer.watermark.produced()),))
    assert acks == []  # written, not flushed
    second = finishing.add(None, "s", 1, done=False)
    writer.write()  # the second row: a flush, which finishes the first
    assert acks == [("s", 0)]
    finishing.handled([second], ((writer.watermark, writer.watermark.produced()),))
    assert acks == [("s", 0), ("s", 1)]
