"""The ``files`` source as a service, on real files the test writes (TIFF, CBF, EDF with
fabio, HDF5 with h5py): every image of every file arrives once, files written while the
service starts are not missed, a file still open for writing is not read early, a restart
reads only what is new, and an unreadable file is counted while the service goes on."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from arroyo_core.message import Event
from tests.support.ledgers import status
from tests.support.waiting import wait_for

fabio = pytest.importorskip("fabio")
h5py = pytest.importorskip("h5py")
pytest.importorskip("watchfiles")

pytestmark = pytest.mark.integration

SHAPE = (24, 20)


def image(seed: int, dtype: str = "uint16") -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1000, SHAPE).astype(dtype)


def write(directory, name: str, seed: int) -> dict[tuple[str, int], np.ndarray]:
    """Write one file of the kind its name says; return its images by (file, index)."""
    from fabio.cbfimage import CbfImage
    from fabio.edfimage import EdfImage
    from fabio.tifimage import TifImage

    path = directory / name
    if name.endswith(".h5"):
        stack = np.stack([image(seed + n) for n in range(3)])
        with h5py.File(path, "w") as f:
            f.create_dataset("entry/data/data", data=stack)
        return {(name, n): stack[n] for n in range(3)}
    kind = {".tif": TifImage, ".cbf": CbfImage, ".edf": EdfImage}[path.suffix]
    data = image(seed, "int32" if name.endswith(".cbf") else "uint16")
    kind(data=data).write(str(path))
    return {(name, 0): data}


@pytest.fixture
def files_service(receiver, service, ipc, tmp_path):  # the service stops before the receiver
    """(watched directory, Receiver of the output, status endpoint, start)."""
    watched, out, stats = tmp_path / "detector", ipc(), ipc()
    watched.mkdir()
    config = tmp_path / "listener.toml"
    config.write_text(f'source = "files"\nout = "@{out}"\nstatus = "{stats}"\n'
                      f'[options]\ndirectory = "{watched}"\nsettle = 0.3\ngive_up = 1.0\n'
                      f"rescan = 1.0\n")
    got = receiver(f">{out}")

    def start(ready: bool = True):
        return service("listener", "-c", str(config), name="files", ready=ready)

    return watched, got, stats, start


def collect(receiver, expected: dict, timeout: float = 30.0) -> dict:
    """Events until every one of ``expected`` came; fail on a repeat or a wrong image."""
    seen: dict = {}
    deadline = time.monotonic() + timeout
    while set(seen) != set(expected):
        message = receiver.get(max(0.1, deadline - time.monotonic()))
        if not isinstance(message, Event):
            continue
        key = (message.meta["file"], message.meta["index"])
        assert key not in seen, f"{key} read twice"
        assert key in expected, f"unexpected {key}"
        assert np.array_equal(message.payload["image"], expected[key]), key
        seen[key] = message
    return seen


def test_every_image_of_every_new_file_arrives_once_also_while_starting(files_service):
    watched, got, stats, start = files_service
    expected = write(watched, "before.tif", 1)
    expected |= write(watched, "before.h5", 10)
    writing = threading.Event()

    def keep_writing():  # files appear while the service imports, opens and scans
        for n in range(40):
            expected.update(write(watched, f"during_{n:02d}.tif", 100 + n))
            if writing.wait(0.01):
                break

    thread = threading.Thread(target=keep_writing)
    thread.start()
    service = start(ready=False)
    service.wait_ready()
    writing.set()
    thread.join()
    expected |= write(watched, "after.cbf", 200)
    expected |= write(watched, "after.edf", 201)
    seen = collect(got, expected)
    assert {m.meta["run"] for m in seen.values()} and all(
        m.meta["images_in_file"] == (3 if k[0].endswith(".h5") else 1) for k, m in seen.items())
    frames = sorted(m.meta["frame"] for m in seen.values())
    assert frames == list(range(len(expected)))  # one run, numbered without gaps
    assert status(stats)["input"]["malformed"] == {}


def test_a_file_still_being_written_is_not_read_early(files_service, tmp_path):
    watched, got, _, start = files_service
    start()
    stack = np.stack([image(n) for n in range(4)])
    with h5py.File(watched / "slow.h5", "w") as f:  # held open, written image by image
        data = f.create_dataset("entry/data/data", shape=(0, *SHAPE), maxshape=(None, *SHAPE),
                                dtype="uint16")
        for n in range(2):
            data.resize(n + 1, axis=0)
            data[n] = stack[n]
            f.flush()
        with (watched / "slow.tif").open("wb") as raw:  # a TIFF half written, kept open
            from fabio.tifimage import TifImage

            TifImage(data=image(50)).write(str(tmp_path / "whole.tif"))
            whole = (tmp_path / "whole.tif").read_bytes()
            raw.write(whole[: len(whole) // 2])
            raw.flush()
            marker = write(watched, "marker.cbf", 60)  # finished: read while the others wait
            collect(got, marker)  # so both had their chance to be read early
            raw.write(whole[len(whole) // 2:])
        for n in range(2, 4):
            data.resize(n + 1, axis=0)
            data[n] = stack[n]
    expected = {("slow.h5", n): stack[n] for n in range(4)}
    expected[("slow.tif", 0)] = image(50)
    collect(got, expected)


def test_a_restart_reads_only_new_files(files_service, tmp_path):
    watched, got, stats, start = files_service
    service = start()
    first = write(watched, "a.tif", 1) | write(watched, "b.h5", 2)
    collect(got, first)
    wait_for(lambda: len((watched / ".arroyo-files.jsonl").read_text().splitlines()) == 2,
             what="both files noted in the state file")
    assert service.stop() == 0
    later = write(watched, "c.tif", 3)  # while it is down
    start()
    later |= write(watched, "d.edf", 4)
    seen = collect(got, later)
    assert all(isinstance(m, Event) for m in seen.values())
    wait_for(lambda: status(stats)["input"]["received"] == 2, what="the two new images")
    assert status(stats)["input"]["received"] == 2  # a.tif and b.h5 were not read again


def test_an_unreadable_file_is_counted_and_the_service_goes_on(files_service):
    watched, got, stats, start = files_service
    service = start()
    (watched / "broken.tif").write_bytes(b"this is no TIFF " * 64)
    wait_for(lambda: status(stats)["input"]["malformed"] == {"unreadable": 1},
             what="the broken file counted")
    good = write(watched, "good.tif", 5)
    seen = collect(got, good)
    assert isinstance(seen[("good.tif", 0)], Event)
    assert service.process.poll() is None
    logged = [line for line in service.lines if "broken.tif" in line]
    assert len(logged) == 1, logged
