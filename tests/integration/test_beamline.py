"""The beamline steps as real services: pyFAI integration whose curves are pyFAI's own,
NeXus files h5py reads back (and follows live in SWMR mode from another process, and
reads after the writer was killed), and frames compressed for the network and restored
bit-exact."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from arroyo_core import Event, Start, Stop
from arroyo_core.compression import compress, descriptor
from tests.support.ledgers import status
from tests.support.nexus_follower import photon_frame
from tests.support.waiting import wait_for, wait_or_kill

pytestmark = pytest.mark.integration
h5py = pytest.importorskip("h5py")
pytest.importorskip("hdf5plugin")
pytest.importorskip("bitshuffle")


def closed(service, count: int = 1):
    return lambda: service.output().count("nexus sink: closed") >= count


def test_integrate_service_equals_pyfai_and_the_nexus_file_reads_back(service, ipc, sender,
                                                                       tmp_path):
    pyFAI = pytest.importorskip("pyFAI")
    from arroyo_core.powder_source import powder_frames, powder_geometry

    shape = (96, 128)
    geometry = powder_geometry(shape, distance=0.012)
    frames = powder_frames(shape, 3, seed=2, geometry=geometry)
    into, out = ipc(), ipc()
    sink = service("publisher", "--in", "@" + out, "--sink", "nexus",
                   "-o", f"directory={tmp_path}", name="nexus")
    service("operator", "--in", "@" + into, "--out", ">" + out, "--operator", "integrate",
            "-o", "bins=64", "-o", "error_model=poisson", "-o", "keep_frame=true",
            name="integrate")
    source = sender(">" + into)
    source.publish(Start({"run": "lab6/1", "shape": list(shape), "geometry": geometry,
                          "sample": "LaB6", "energy_kev": 12.4}))
    for i, frame in enumerate(frames):
        source.publish(Event({"run": "lab6/1", "frame": i}, {"image": frame}))
    source.publish(Stop({"run": "lab6/1", "frames_sent": 3}))
    wait_for(closed(sink), 30, "the run's file closed")

    path = tmp_path / "lab6_1.nxs"  # the run id, sanitised
    reference = pyFAI.load(geometry)
    with h5py.File(path, "r") as f:
        assert f.attrs["default"] == "entry" and f.attrs["arroyo_nexus_layout"] == 1
        entry = f["entry"]
        assert entry.attrs["NX_class"] == "NXentry" and entry.attrs["default"] == "results"
        assert entry["instrument"].attrs["NX_class"] == "NXinstrument"
        detector = entry["instrument/detector"]
        assert detector.attrs["NX_class"] == "NXdetector"
        data = detector["data"]
        assert data.chunks == (1, *shape) and "32008" in data._filters  # bitshuffle
        for i, frame in enumerate(frames):  # bit-exact after decompression
            assert data[i].tobytes() == frame.tobytes()
        assert list(entry["frame_number"][:]) == [0, 1, 2]
        results = entry["results"]
        assert results.attrs["NX_class"] == "NXdata" and results.attrs["signal"] == "intensity"
        assert list(results.attrs["axes"]) == ["frame_number", "radial"]
        assert results.attrs["radial_indices"] == 1
        assert results["radial"].attrs["units"] == "1/nm"
        for i, frame in enumerate(frames):
            expected = reference.integrate1d(frame, 64, unit="q_nm^-1", method="csr",
                                             error_model="poisson")
            np.testing.assert_allclose(results["intensity"][i], expected.intensity, rtol=1e-6)
            np.testing.assert_allclose(results["intensity_errors"][i], expected.sigma,
                                       rtol=1e-6)
            np.testing.assert_allclose(results["radial"][:], expected.radial, rtol=1e-12)
        assert float(np.max(results["intensity"])) > 1  # rings, not an empty detector
        start = entry["start"].attrs
        assert start["sample"] == "LaB6" and start["energy_kev"] == 12.4
        assert json.loads(start["geometry"]) == geometry
        assert json.loads(start["integrate"])["bins"] == 64
        assert entry["stop"].attrs["frames_sent"] == 3 and entry["stop/complete"][0] == 1
        assert entry["data"].attrs["signal"] == "data" and entry["data/data"] == data


def test_a_reader_follows_the_run_in_swmr_mode_while_it_is_written(service, ipc, sender,
                                                                   tmp_path):
    into, stats = ipc(), ipc()
    sink = service("publisher", "--in", "@" + into, "--sink", "nexus", "--status", stats,
                   "-o", f"directory={tmp_path}", "-o", "flush_frames=2",
                   "-o", "flush_seconds=0.1", name="nexus-followed")
    source = sender(">" + into)
    path = tmp_path / "followed.nxs"
    source.publish(Start({"run": "followed"}))
    # frames sent compressed, as a detector would: stored without being decompressed
    first = photon_frame(0)
    codec = {"v": 1, "arrays": {"image": descriptor(first, "bitshuffle-lz4")}}
    source.publish(Event({"frame": 0, "compressed": codec},
                         {"image": compress(first, "bitshuffle-lz4")}))
    follower = subprocess.Popen(
        [sys.executable, "-m", "tests.support.nexus_follower", str(path), "60"],
        stdout=subprocess.PIPE, text=True)
    try:
        seen: list[dict] = []
        reader = threading.Thread(target=lambda: seen.extend(
            json.loads(line) for line in follower.stdout), daemon=True)
        reader.start()
        total = 1
        while total < 40:  # until the follower has seen three sizes of a growing file
            frame = photon_frame(total)
            source.publish(Event({"frame": total, "compressed": codec},
                                 {"image": compress(frame, "bitshuffle-lz4")}))
            total += 1
            time.sleep(0.05)  # the pace of a slow detector (20 frames/s), not a wait
            if len({s["rows"] for s in seen if not s["complete"]}) >= 3 and total >= 10:
                break
        source.publish(Stop({"frames_sent": total}))
        assert follower.wait(60) == 0
        reader.join(10)
    finally:
        wait_or_kill(follower, 5)
        follower.stdout.close()
    growing = [s["rows"] for s in seen if not s["complete"]]
    assert len(set(growing)) >= 3 and growing == sorted(growing), seen  # followed, live
    assert seen[-1] == {"rows": total, "complete": 1, "bad": []}
    wait_for(closed(sink), 20, "the file closed")
    assert status(stats)["outputs"][0]["stored_compressed"] == total


def test_a_writer_killed_mid_run_leaves_a_file_of_what_it_flushed(service, ipc, sender,
                                                                  tmp_path):
    into, stats = ipc(), ipc()
    sink = service("publisher", "--in", "@" + into, "--sink", "nexus", "--status", stats,
                   "-o", f"directory={tmp_path}", "-o", "flush_frames=5",
                   "-o", "flush_seconds=0.2", name="nexus-killed")
    source = sender(">" + into)
    sending = threading.Event()
    sending.set()

    def send() -> None:  # 100 frames/s until the test is done
        source.publish(Start({"run": "killed", "sample": "lysozyme"}))
        index = 0
        while sending.is_set():
            source.publish(Event({"frame": index}, {"image": photon_frame(index),
                                                    "total": np.float64(index)}))
            index += 1
            time.sleep(0.01)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    try:
        def flushed() -> int:
            return status(stats)["outputs"][0]["flushed_rows"]

        wait_for(lambda: flushed() >= 30, 30, "30 frames flushed")
        floor = flushed()
        sink.process.send_signal(signal.SIGKILL)
        assert sink.process.wait(10) == -signal.SIGKILL
    finally:
        sending.clear()
        source.abandon()
        thread.join(10)

    # the writer never closed it: a SWMR reader opens it (a plain open needs h5clear -s)
    with h5py.File(tmp_path / "killed.nxs", "r", swmr=True) as f:
        entry = f["entry"]
        assert entry["start"].attrs["sample"] == "lysozyme"
        numbers = entry["frame_number"][:]
        rows = len(numbers)
        assert rows >= floor and list(numbers) == list(range(rows))
        data = entry["instrument/detector/data"]
        assert data.shape[0] >= rows
        for row in range(rows):
            assert np.array_equal(data[row], photon_frame(row)), f"row {row}"
        assert list(entry["results/total"][:rows]) == list(range(rows))
        assert entry["stop/complete"][0] == 0  # the run never ended


@pytest.mark.parametrize("codec", ["bitshuffle-lz4", "blosc2"])
def test_frames_compressed_by_one_service_are_restored_bit_exact_by_the_next(
        service, ipc, sender, receiver, codec):
    pytest.importorskip("blosc2")
    into, middle, raw, out = ipc(), ipc(), ipc(), ipc()
    compressed = receiver("@" + raw)
    restored = receiver("@" + out)
    service("operator", "--in", "@" + middle, "--out", ">" + out, "--operator", "decompress",
            name="decompress")
    service("operator", "--in", "@" + into, "--out", ">" + middle, "--out", ">" + raw,
            "--operator", "compress", "-o", f"codec={codec}", name="compress")
    source = sender(">" + into)
    frames = [photon_frame(i) for i in range(4)]
    source.publish(Start({"run": "c"}))
    for i, frame in enumerate(frames):
        source.publish(Event({"frame": i}, {"image": frame, "gain": np.float32(2.0)}))
    source.publish(Stop({"frames_sent": 4}))

    on_the_wire = compressed.take(6)
    for i, message in enumerate(on_the_wire[1:-1]):
        assert message.meta["compressed"] == {"v": 1, "arrays": {
            "image": [codec, "<u2", [128, 128]]}}
        assert isinstance(message.payload["image"], memoryview)  # a bytes entry
        assert message.payload["image"].nbytes < frames[i].nbytes / 2
    back = restored.take(6)
    assert [m.kind for m in back] == ["start", *["event"] * 4, "stop"]
    for frame, message in zip(frames, back[1:-1], strict=True):
        assert message.payload["image"].dtype == np.uint16
        assert message.payload["image"].tobytes() == frame.tobytes()
        assert message.payload["gain"] == np.float32(2.0)
        assert "compressed" not in message.meta


def test_the_beamline_demo_writes_a_file_of_frames_and_curves(tmp_path):
    pytest.importorskip("pyFAI")
    result = subprocess.run(
        [sys.executable, "-P", "-m", "services", "demo", "--integrate", "--frames", "20",
         "--rate", "0", "--shape", "128,128", "--directory", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "summary: 20 of 20 frames" in result.stdout
    (path,) = tmp_path.glob("*.nxs")
    with h5py.File(path, "r") as f:
        assert f["entry/instrument/detector/data"].shape == (20, 128, 128)
        assert f["entry/results/intensity"].shape == (20, 500)
        assert f["entry/stop/complete"][0] == 1



def test_integrate_in_a_pool_of_two_workers_writes_every_curve_in_order(service, ipc,
                                                                        tmp_path):
    """Each worker builds its integrator from the Start it gets; the writer after the pool
    takes the frames back in order (``order``) into one file."""
    pyFAI = pytest.importorskip("pyFAI")
    from arroyo_core.dispatch import DispatchLink
    from arroyo_core.powder_source import powder_frames, powder_geometry

    shape, count = (64, 80), 12
    geometry = powder_geometry(shape, distance=0.012)
    frames = powder_frames(shape, count, seed=3, geometry=geometry)
    out = ipc()
    sink = service("publisher", "--in", "@" + out, "--in-option", "order=true",
                   "--sink", "nexus", "-o", f"directory={tmp_path}", name="nexus-pool")
    feed = DispatchLink("@tcp://127.0.0.1:*", peers=2, linger_ms=2000)
    feed.open()
    try:
        pool = service("operator", "--replicas", "2", "--in", ">" + str(feed.status().bound),
                       "--out", ">" + out, "--operator", "integrate", "-o", "bins=32",
                       name="pool", ready=False)
        wait_for(lambda: all(f"READY pool-{k}" in pool.output() for k in range(2)), 60,
                 "both workers ready")
        feed.publish(Start({"run": "pooled", "shape": list(shape), "geometry": geometry}))
        for i, frame in enumerate(frames):
            feed.publish(Event({"run": "pooled", "frame": i}, {"image": frame}))
        feed.publish(Stop({"run": "pooled", "frames_sent": count}))
        wait_for(closed(sink), 60, "the run's file closed")
        shares = [w["given"] for w in feed.status().transport["pool"]["workers"]]
    finally:
        feed.close()
    assert len(shares) == 2 and all(shares) and sum(shares) == count, shares
    reference = pyFAI.load(geometry)
    with h5py.File(tmp_path / "pooled.nxs", "r") as f:
        assert list(f["entry/frame_number"][:]) == list(range(count))
        for i, frame in enumerate(frames):
            expected = reference.integrate1d(frame, 32, unit="q_nm^-1", method="csr")
            np.testing.assert_allclose(f["entry/results/intensity"][i], expected.intensity,
                                       rtol=1e-6)
        assert f["entry/stop"].attrs["frames_sent"] == count
