"""HDF5Sink's file layout (docs/hdf5.md) and when it flushes, without sockets (the service
and a SIGKILL: tests/integration/test_hdf5_sink.py)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from arroyo_core import ConfigError, Event, HDF5Sink, Start, Stop

h5py = pytest.importorskip("h5py")


READER = """
import json, sys, h5py
with h5py.File(sys.argv[1], "r", locking=False) as f:
    print(json.dumps({n: f[n][:].tolist() for n in f if isinstance(f[n], h5py.Dataset)}))
"""


def on_disk(path):
    """The datasets as another process reads the file from disk now (HDF5's file locking
    off: the sink still has it open; in this process HDF5 would share the sink's handle)."""
    out = subprocess.run([sys.executable, "-c", READER, str(path)], capture_output=True,
                         text=True, timeout=60, check=True)
    return json.loads(out.stdout)


@pytest.fixture
def sink(tmp_path):
    made = []

    def make(**options):
        made.append(HDF5Sink(str(tmp_path), **options))
        made[-1].open()
        return made[-1]

    yield make
    for item in made:
        item.close()


def test_rows_stay_aligned_with_frame_numbers_when_entries_come_and_go(sink, tmp_path):
    writer = sink()
    writer.publish(Start({"run": "r"}))
    writer.publish(Event({"frame": 7}, {"a": np.full(2, 1.5)}))
    writer.publish(Event({"frame": 8}, {"a": np.full(2, 2.5), "b": np.int32(4)}))
    writer.publish(Event({}, {"b": np.int32(5)}))  # no frame number, no "a"
    writer.publish(Stop({"frames_sent": 3}))
    with h5py.File(tmp_path / "r.h5") as f:
        assert list(f["frame_number"][:]) == [7, 8, -1]
        np.testing.assert_array_equal(f["a"][:], [[1.5, 1.5], [2.5, 2.5], [0, 0]])
        assert list(f["b"][:]) == [0, 4, 5]  # the fill value before it first came
        assert f.attrs["arroyo_hdf5_layout"] == 1 and f["stop"].attrs["frames_sent"] == 3


@pytest.mark.parametrize("name", ["frame_number", "stop"])
def test_a_payload_may_not_take_a_name_of_the_layout(sink, name):
    writer = sink()
    writer.publish(Start({"run": "r"}))
    with pytest.raises(ValueError, match="taken by the file layout"):
        writer.publish(Event({"frame": 0}, {name: np.zeros(2)}))
    writer.publish(Event({"frame": 1}, {"image": np.zeros(2)}))  # nothing half-written
    assert writer.rows == 1


def test_a_changed_shape_fails_that_event_and_leaves_the_rows_aligned(sink, tmp_path):
    writer = sink()
    writer.publish(Start({"run": "r"}))
    writer.publish(Event({"frame": 0}, {"a": np.zeros(2), "b": np.zeros(3)}))
    with pytest.raises(ValueError, match="shape"):
        writer.publish(Event({"frame": 1}, {"a": np.ones(2), "b": np.zeros(4)}))
    writer.close()
    with h5py.File(tmp_path / "r.h5") as f:
        assert [len(f[name]) for name in ("a", "b", "frame_number")] == [1, 1, 1]


def test_it_flushes_every_flush_frames_rows(sink, tmp_path):
    writer = sink(flush_frames=3, flush_seconds=0)
    writer.publish(Start({"run": "r"}))
    assert len(on_disk(tmp_path / "r.h5")["frame_number"]) == 0  # the layout, at once
    for frame in range(7):
        writer.publish(Event({"frame": frame}, {"x": np.full(4, frame)}))
    assert writer.flushed_rows == 6
    assert list(on_disk(tmp_path / "r.h5")["frame_number"]) == list(range(6))


def test_it_flushes_flush_seconds_after_a_row_even_if_the_stream_stalls(sink, tmp_path):
    writer = sink(flush_frames=0, flush_seconds=0.1)
    writer.publish(Start({"run": "r"}))
    written = time.monotonic()
    writer.publish(Event({"frame": 0}, {"x": np.zeros(4)}))
    deadline = time.monotonic() + 10
    while writer.flushed_rows < 1:
        assert time.monotonic() < deadline, "no flush within 10 s"
        time.sleep(0.01)
    assert time.monotonic() - written >= 0.1
    assert list(on_disk(tmp_path / "r.h5")["frame_number"]) == [0]
    status = writer.status().to_dict()
    assert status["flushed_rows"] == status["rows"] == 1 and status["sent"] == 1


def test_close_stops_the_flushing_thread(tmp_path):
    before = threading.active_count()
    writer = HDF5Sink(str(tmp_path), flush_seconds=0.05)
    writer.open()
    writer.publish(Start({"run": "r"}))
    writer.publish(Event({"frame": 0}, {"x": np.zeros(1)}))
    writer.close()
    assert threading.active_count() == before


def test_each_file_s_path_is_logged(sink, tmp_path, caplog):
    writer = sink()
    with caplog.at_level(logging.INFO, logger="arroyo_core.hdf5_sink"):
        for _ in range(2):
            writer.publish(Start({"run": "same"}))
            writer.publish(Stop({}))
    assert f"writing run same to {tmp_path / 'same.h5'}" in caplog.text
    assert f"writing run same to {tmp_path / 'same-1.h5'}" in caplog.text


@pytest.mark.parametrize("options", [{"flush_frames": -1}, {"flush_seconds": -0.5}])
def test_negative_flush_settings_are_refused(tmp_path, options):
    with pytest.raises(ConfigError, match="option flush_"):
        HDF5Sink(str(tmp_path), **options)
