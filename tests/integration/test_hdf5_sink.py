"""The HDF5 sink, as a real publisher service, writes runs that h5py reads back exactly."""

import h5py
import numpy as np
import pytest
from harness import wait_for

from arroyo_core import Event, Start, Stop, ZmqPublisher

pytestmark = pytest.mark.integration


def test_publisher_service_writes_each_run_to_hdf5(service, tcp, tmp_path):
    address = tcp()
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
