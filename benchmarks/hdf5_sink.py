"""What flushing costs the HDF5 sink, and what a killed writer leaves behind.

1. Cost: 512x512 uint16 frames (512 KiB) written by :class:`HDF5Sink` with each flush
   setting, and by an SWMR writer (libver latest, ``swmr_mode``, datasets flushed every
   100 frames) for comparison. At full rate: frames/s, CPU time per frame (less moved by
   other work on a shared machine than the rate) and what one flush takes. At 100
   frames/s: the time ``publish`` takes per frame (mean and 99th percentile) and the
   writer's CPU use.
2. Crashes: a child process writes with the sink at full rate and is killed with SIGKILL
   at a random moment; the file must open with h5py and hold, for every row, the frame
   whose number ``frame_number`` gives it, at least as many rows as were flushed.

Run ``python benchmarks/hdf5_sink.py [--quick] [--dir DIR]`` (DIR: where files go; default
a temporary directory; put it on the disk your sink writes to).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from arroyo_core.hdf5_sink import HDF5Sink
from arroyo_core.message import Event, Start, Stop

SHAPE = (512, 512)
RING = [np.full(SHAPE, i, "<u2") + np.arange(SHAPE[1], dtype="<u2") for i in range(8)]

SETTINGS = {  # name: HDF5Sink options
    "never (only at open and close)": {"flush_frames": 0, "flush_seconds": 0},
    "every frame": {"flush_frames": 1, "flush_seconds": 0},
    "every 10 frames": {"flush_frames": 10, "flush_seconds": 0},
    "default: 100 frames or 1 s": {},
}


def frame(index: int) -> np.ndarray:
    return RING[index % len(RING)]


class SwmrWriter:
    """The alternative: an SWMR file, its datasets flushed every ``every`` frames."""

    def __init__(self, path: Path, every: int = 100) -> None:
        self.file = h5py.File(path, "x", libver="latest")
        self.image = self.file.create_dataset("image", shape=(0, *SHAPE), dtype="<u2",
                                              maxshape=(None, *SHAPE), chunks=(1, *SHAPE))
        self.numbers = self.file.create_dataset("frame_number", shape=(0,), dtype="<i8",
                                                maxshape=(None,), chunks=(4096,))
        self.file.swmr_mode = True
        self.every = every
        self.rows = 0

    def publish(self, message: Any) -> None:
        if not isinstance(message, Event):
            return
        rows = self.rows
        for dataset in (self.image, self.numbers):
            dataset.resize(rows + 1, axis=0)
        self.image[rows] = message.payload["image"]
        self.numbers[rows] = message.meta["frame"]
        self.rows = rows + 1
        if self.rows % self.every == 0:
            self.image.flush()
            self.numbers.flush()

    def close(self) -> None:
        self.file.close()


def writer(kind: str, options: dict[str, Any], directory: Path) -> Any:
    if kind == "swmr":
        return SwmrWriter(directory / f"swmr-{time.monotonic_ns()}.h5")
    sink = HDF5Sink(str(directory), **options)
    sink.open()
    return sink


def cost(kind: str, options: dict[str, Any], directory: Path, frames: int,
         rate: float) -> dict[str, float]:
    """Write one run of ``frames`` at ``rate`` (0: full rate); times per frame."""
    sink = writer(kind, options, directory)
    flushes: list[float] = []
    if isinstance(sink, HDF5Sink):  # time each flush on its own, too
        flush = sink._flush

        def timed_flush() -> None:
            start = time.perf_counter()
            flush()
            flushes.append(time.perf_counter() - start)

        sink._flush = timed_flush  # type: ignore[method-assign]
    sink.publish(Start({"run": f"cost-{time.monotonic_ns()}"}))
    times = []
    began, cpu = time.perf_counter(), time.process_time()
    for index in range(frames):
        if rate:
            delay = began + index / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        event = Event({"frame": index}, {"image": frame(index)})
        start = time.perf_counter()
        sink.publish(event)
        times.append(time.perf_counter() - start)
    cpu_seconds = time.process_time() - cpu  # before Stop: the close is not a frame's
    seconds = time.perf_counter() - began
    sink.publish(Stop({"frames_sent": frames}))
    sink.close()
    return {"fps": frames / seconds, "mean_ms": statistics.fmean(times) * 1e3,
            "p99_ms": sorted(times)[int(len(times) * 0.99)] * 1e3,
            "cpu": cpu_seconds / seconds, "cpu_ms": cpu_seconds / frames * 1e3,
            "flush_ms": statistics.median(flushes) * 1e3 if flushes else float("nan")}


def crash_child(directory: str, flush_frames: int, flush_seconds: float) -> None:
    """Write frames until killed; print the rows flushed after each flush."""
    sink = HDF5Sink(directory, flush_frames=flush_frames, flush_seconds=flush_seconds)
    sink.open()
    sink.publish(Start({"run": "crash"}))
    print("writing", flush=True)
    index = 0
    while True:
        sink.publish(Event({"frame": index}, {"image": frame(index)}))
        index += 1
        if flush_frames and index % flush_frames == 0:
            print(sink.flushed_rows, flush=True)


def crash_trials(directory: Path, trials: int, options: dict[str, Any],
                 ) -> tuple[int, int, str, float]:
    """(files that opened with every row right, trials, the first problem seen, mean rows
    found in a file)."""
    good, problem, found = 0, "", []
    for trial in range(trials):
        run_dir = directory / f"crash-{trial}-{time.monotonic_ns()}"
        child = subprocess.Popen(
            [sys.executable, __file__, "--crash-child", str(run_dir),
             str(options.get("flush_frames", 100)), str(options.get("flush_seconds", 1.0))],
            stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        child.stdout.readline()
        time.sleep(random.uniform(0.1, 1.5))
        child.send_signal(signal.SIGKILL)
        child.wait()
        flushed = [int(line) for line in child.stdout.read().split()]
        child.stdout.close()
        try:
            (path,) = run_dir.glob("*.h5")
            with h5py.File(path, "r") as f:
                numbers = f["frame_number"][:]
                rows = f["image"].shape[0] if "image" in f else 0
                assert rows == len(numbers), f"{rows} image rows, {len(numbers)} numbers"
                assert rows >= (flushed[-2] if len(flushed) > 1 else 0), "lost flushed rows"
                assert list(numbers) == list(range(rows)), "frame numbers"
                for row in range(rows):
                    assert np.array_equal(f["image"][row], frame(row)), f"row {row}"
            good += 1
            found.append(rows)
        except Exception as exc:  # noqa: BLE001 - every failure is a finding here
            problem = problem or f"{type(exc).__name__}: {exc}"
        for path in run_dir.glob("*"):
            path.unlink()
        run_dir.rmdir()
    return good, trials, problem, statistics.fmean(found) if found else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--crash-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.crash_child:
        crash_child(args.crash_child[0], int(args.crash_child[1]), float(args.crash_child[2]))
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        directory = Path(tmp)
        full, paced, trials, rounds = (300, 100, 5, 1) if args.quick else (1000, 300, 20, 5)
        print(f"512x512 uint16 frames ({SHAPE[0] * SHAPE[1] * 2 // 1024} KiB) in {directory}; "
              f"medians of {rounds} alternating rounds")
        rows = [(name, "sink", options) for name, options in SETTINGS.items()]
        rows.append(("SWMR, datasets every 100 frames", "swmr", {}))
        figures: dict[str, list[tuple[dict[str, float], dict[str, float]]]] = {}
        for _ in range(rounds):
            for name, kind, options in rows:
                fast = cost(kind, options, directory, full, 0)
                slow = cost(kind, options, directory, paced, 100)
                figures.setdefault(name, []).append((fast, slow))
                for path in directory.glob("*.h5"):
                    path.unlink()
        print(f"{'flush':32} {'full rate':>11} {'cpu/frame':>10} {'one flush':>10} "
              f"{'at 100 fps: mean':>17} {'p99':>8} {'cpu':>6}")
        for name, runs in figures.items():
            def median(which: int, key: str, runs: Any = runs) -> float:
                return statistics.median(run[which][key] for run in runs)

            print(f"{name:32} {median(0, 'fps'):6.0f} fr/s {median(0, 'cpu_ms'):7.2f} ms "
                  f"{median(0, 'flush_ms'):7.2f} ms {median(1, 'mean_ms'):14.2f} ms "
                  f"{median(1, 'p99_ms'):5.2f} ms {median(1, 'cpu'):6.1%}")
        print(f"\nkill -9 at a random moment, {trials} trials each, at full rate:")
        for name, options in (("default: 100 frames or 1 s", {}),
                              ("every 10 frames", {"flush_frames": 10, "flush_seconds": 0}),
                              ("never (only at open)", {"flush_frames": 0, "flush_seconds": 0})):
            good, count, problem, rows = crash_trials(directory, trials, options)
            print(f"  {name:28} {good}/{count} files open with every row right, "
                  f"{rows:.0f} rows on average" + (f"; first: {problem}" if problem else ""))
        print(f"(pid {os.getpid()}, HDF5 {h5py.version.hdf5_version}, h5py {h5py.__version__})")


if __name__ == "__main__":
    main()
