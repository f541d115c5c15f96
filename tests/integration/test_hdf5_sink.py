"""The HDF5 sink, as a real publisher service, writes runs that h5py reads back exactly,
and a publisher killed with SIGKILL leaves a file of every frame it flushed."""

import signal
import threading
import time
import zlib

import h5py
import numpy as np
import pytest

from arroyo_core import Event, Start, Stop, ZmqPublisher
from tests.support.ledgers import status
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def test_publisher_service_writes_each_run_to_hdf5(service, ipc, tmp_path):
    address = ipc()
    sink = service("publisher", "--in", "@" + address, "--sink", "hdf5",
                   "-o", f"directory={tmp_path}", name="hdf5")
    sender = ZmqPublisher(">" + address)
    sender.open()
    frames = [np.arange(12, dtype=">u2").reshape(3, 4) + i for i in range(5)]
    try:
        sender.publish(Start({"run": "../escape", "sample": "lysozyme", "energy": 12.4}))
        for i, frame in enumerate(frames):
            sender.publish(Event({"frame": i}, {"image": frame, "total": np.float32(i)}))
        sender.publish(Stop({"frames_sent": 5}))
        sender.publish(Event({"frame": 0}, {"image": frames[0]}))  # outside any run
    finally:
        sender.close()
    wait_for(lambda: len(list(tmp_path.glob("*.h5"))) == 2, 20, "two files")
    assert sink.stop() == 0  # closes the stray file cleanly

    assert not (tmp_path.parent / "escape.h5").exists()  # the run id named no outside path
    (run_file,) = [p for p in tmp_path.glob("*.h5") if "escape" in p.name]
    with h5py.File(run_file) as f:
        assert f.attrs["sample"] == "lysozyme" and f.attrs["energy"] == 12.4
        # h5py stores big-endian input in native order: same values, same type
        assert f["image"].dtype.newbyteorder("=") == np.dtype("u2")
        assert f["image"].shape == (5, 3, 4)
        np.testing.assert_array_equal(f["image"][:], np.stack(frames))
        np.testing.assert_array_equal(f["total"][:], np.arange(5, dtype=np.float32))
        assert f["stop"].attrs["frames_sent"] == 5
    (stray,) = [p for p in tmp_path.glob("*.h5") if p != run_file]
    with h5py.File(stray) as f:
        assert f.attrs["joined_mid_run"] and f["image"].shape == (1, 3, 4)


def frame(index: int) -> np.ndarray:
    """Frame ``index`` of the killed run: 512x512 uint16, different for every index."""
    return np.random.default_rng(index).integers(0, 2**16, (512, 512), dtype=np.uint16)


def test_a_publisher_killed_mid_run_leaves_a_readable_file_of_what_it_flushed(
        service, ipc, sender, tmp_path):
    address, stats = ipc(), ipc()
    sink = service("publisher", "--in", "@" + address, "--sink", "hdf5", "--status", stats,
                   "-o", f"directory={tmp_path}", "-o", "flush_frames=10",
                   "-o", "flush_seconds=0.25", name="hdf5-killed")
    source = sender(">" + address)
    crcs: dict[int, int] = {}
    sending = threading.Event()
    sending.set()

    def send() -> None:  # 100 frames/s of 512 KiB until the test is done
        source.publish(Start({"run": "killed", "sample": "lysozyme"}))
        began, index = time.monotonic(), 0
        while sending.is_set():
            image = frame(index)
            crcs[index] = zlib.crc32(image)
            source.publish(Event({"run": "killed", "frame": index, "crc32": crcs[index]},
                                 {"image": image}))
            index += 1
            time.sleep(max(0.0, began + index / 100 - time.monotonic()))

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    try:
        def flushed() -> int:
            return status(stats)["outputs"][0]["flushed_rows"]

        wait_for(lambda: flushed() >= 45, 30, "45 frames flushed")
        floor = flushed()  # the file holds at least these, whenever the kill lands
        sink.process.send_signal(signal.SIGKILL)
        assert sink.process.wait(10) == -signal.SIGKILL
    finally:
        sending.clear()
        source.abandon()
        thread.join(10)

    path = tmp_path / "killed.h5"
    assert f"writing run killed to {path}" in sink.output()  # the path of each file, logged
    with h5py.File(path, "r") as f:  # a plain open: no h5clear, no SWMR reader needed
        assert f.attrs["sample"] == "lysozyme" and f.attrs["arroyo_hdf5_layout"] == 1
        numbers = f["frame_number"][:]
        rows = len(numbers)
        assert floor <= rows <= len(crcs)
        assert f["image"].shape == (rows, 512, 512) and f["image"].dtype == np.uint16
        assert list(numbers) == list(range(rows))  # PUSH delivers in order, none lost
        for row, number in enumerate(numbers):
            image = f["image"][row]
            assert zlib.crc32(image) == crcs[int(number)], f"row {row}"
        np.testing.assert_array_equal(f["image"][rows - 1], frame(rows - 1))
        assert "stop" not in f  # the run never ended
