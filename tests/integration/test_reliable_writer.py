"""Reliable mode ending in the HDF5 writer (issue 16, docs/reliability.md section 6): the
writer acknowledges only rows it has flushed, so a writer killed with SIGKILL mid-run and
started again loses no frame.

    this test's reliable source --> operator service --> HDF5 sink service (killed, restarted)

The oracle reads the files with h5py and checks every row against a record kept by the
sender (frame number -> crc32 of its payload), and the source's window tells which frames
were acknowledged before the kill: those must be in the killed writer's file, and only
the others may be written twice.
"""

from __future__ import annotations

import signal
import threading
import time
import zlib

import h5py
import numpy as np
import pytest

from arroyo_core.link import OutputLink
from arroyo_core.message import Event, Start, Stop
from tests.support.ledgers import status
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

FRAMES = 1500
RATE = 500.0  # frames/s
RUN = "writer-killed"


def image(index: int) -> np.ndarray:
    return np.random.default_rng(index).integers(0, 2**16, (32, 32), dtype=np.uint16)


def _rows(path) -> tuple[list[int], dict[str, object]]:
    """Frame numbers of a file's rows (each row's image checked against its crc32) and
    its attributes; a plain open, as any reader would."""
    with h5py.File(path, "r") as f:
        numbers = [int(n) for n in f["frame_number"][:]]
        images = f["image"][:] if numbers else np.zeros((0, 32, 32), np.uint16)
        assert images.shape == (len(numbers), 32, 32), path
        for row, number in enumerate(numbers):
            assert zlib.crc32(images[row]) == zlib.crc32(image(number)), f"{path} row {row}"
        attrs = dict(f.attrs)
        attrs["has_stop"] = "stop" in f
        if "stop" in f:
            attrs["frames_sent"] = f["stop"].attrs.get("frames_sent")
    return numbers, attrs


def test_a_killed_writer_loses_no_frame_and_repeats_only_unacknowledged_ones(
        service, ipc, tmp_path):
    middle_in, middle_out, stats = ipc(), ipc(), ipc()
    writer_args = ("publisher", "--in", ">" + middle_out, "--in-option", "reliable=true",
                   "--sink", "hdf5", "-o", f"directory={tmp_path}", "-o", "flush_frames=50",
                   "-o", "flush_seconds=0.5", "--status", stats)
    writer = service(*writer_args, name="writer")
    service("operator", "--in", "@" + middle_in, "--in-option", "reliable=true",
            "--out", "@" + middle_out, "--out-option", "reliable=true", name="middle")
    source = OutputLink(">" + middle_in, reliable=True, window=128)
    source.open()
    window = source.reliable.window
    sent, closed = threading.Event(), threading.Event()

    def send() -> None:
        source.publish(Start({"run": RUN}))
        began = time.monotonic()
        for index in range(FRAMES):
            source.publish(Event({"run": RUN, "frame": index}, {"image": image(index)}))
            source.flush()  # hears acknowledgements (a full window waits for them)
            time.sleep(max(0.0, began + (index + 1) / RATE - time.monotonic()))
        source.publish(Stop({"run": RUN, "frames_sent": FRAMES}))
        sent.set()
        source.close()  # waits (up to linger) until everything is acknowledged
        closed.set()

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    try:
        def unflushed() -> bool:  # a kill with rows written but not yet flushed
            record = status(stats)["outputs"][0]
            return (record["flushed_rows"] >= 150 and window.base > 101
                    and record["rows"] >= record["flushed_rows"] + 10)

        wait_for(unflushed, 30, "100 frames acknowledged, 150 flushed and 10 more written")
        writer.process.send_signal(signal.SIGKILL)
        assert writer.process.wait(10) == -signal.SIGKILL
        # Acknowledged by the dead writer (the source's window starts after them; its
        # Start is seq 0, frame i is seq i + 1). Nothing else acknowledges until the
        # new writer runs, so this is all it ever acknowledged.
        acknowledged = window.base - 1
        assert not sent.is_set(), "the run ended before the kill: make it longer"
        service(*writer_args, name="writer-again")
        thread.join(60)
        assert not thread.is_alive() and sent.is_set(), "the source never finished"
        assert not window.entries, f"{len(window)} messages never acknowledged"
    finally:
        if not closed.is_set():
            source.abandon()
            thread.join(10)
            if not closed.is_set():
                source.close()

    first, again = tmp_path / f"{RUN}.h5", tmp_path / f"{RUN}-1.h5"
    assert {p.name for p in tmp_path.glob("*.h5")} == {first.name, again.name}
    killed, killed_attrs = _rows(first)
    resent, resent_attrs = _rows(again)
    # The killed writer's file opens as it was (at least at its last flush), untouched by
    # the new writer: in order from frame 0, no Stop, and every frame acknowledged
    # before the kill is in it.
    assert killed == list(range(len(killed)))
    assert not killed_attrs["has_stop"]
    assert 100 <= acknowledged <= len(killed), (acknowledged, len(killed))
    # The new writer starts a file of its own from the first frame not acknowledged to
    # it, to the run's end: every frame at least once over the two files, and twice only
    # the ones flushed by the dead writer after its last acknowledgement went out.
    assert resent_attrs["joined_mid_run"] and resent_attrs["has_stop"]
    assert resent_attrs["frames_sent"] == FRAMES
    assert resent == list(range(resent[0], FRAMES)), resent[:5]
    assert acknowledged <= resent[0] <= len(killed), (acknowledged, resent[0], len(killed))
    assert set(killed) | set(resent) == set(range(FRAMES))
    print(f"\nkilled writer's file: {len(killed)} rows ({acknowledged} acknowledged before "
          f"the kill); new file: frames {resent[0]}..{FRAMES - 1}; written twice: "
          f"{len(killed) - resent[0]}")


def test_a_nexus_writer_that_never_flushes_by_rows_or_time_still_lets_acks_out(ipc, tmp_path):
    """With flush_frames and flush_seconds off, acknowledgements come from the flush when
    the writer's input is idle and the one at close: a reliable source never stalls on
    them, and what it was told is finished is in the file."""
    pytest.importorskip("hdf5plugin")
    pytest.importorskip("bitshuffle")
    from arroyo_core.link import InputLink
    from arroyo_core.nexus_sink import NexusSink
    from arroyo_core.operators import PassThrough
    from arroyo_core.runtime import Runtime

    address = ipc()
    sink = NexusSink(str(tmp_path), frames=["image"], flush_frames=0, flush_seconds=0)
    runtime = Runtime(InputLink("@" + address, reliable=True), PassThrough(), [sink],
                      drain_timeout=5)
    runtime.open()
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    source = OutputLink(">" + address, reliable=True, window=16)  # smaller than the run
    source.open()
    try:
        source.publish(Start({"run": "nexus"}))
        for index in range(40):  # the window fills: only acknowledgements make room
            source.publish(Event({"run": "nexus", "frame": index}, {"image": image(index)}))
        wait_for(lambda: sink.rows == 40, 20, "40 rows written")
        wait_for(lambda: source.flush() or not source.reliable.window.entries, 20,
                 "every message acknowledged")
        assert sink.flushed_rows == 40  # (acknowledged: flushed)
        runtime.stop()
        thread.join(10)
        assert not thread.is_alive()
    finally:
        source.abandon()
        source.close()
    with h5py.File(tmp_path / "nexus.nxs", "r") as f:
        numbers = list(f["entry/frame_number"][:])
        assert numbers == list(range(40))
        for row in (0, 39):
            np.testing.assert_array_equal(f["entry/instrument/detector/data"][row], image(row))
