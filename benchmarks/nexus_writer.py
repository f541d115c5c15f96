"""The NeXus sink's write rate with bitshuffle-LZ4 on sparse uint16 frames, on one core,
and where the time goes.

Frames: powder rings as photon counts (:mod:`arroyo_core.powder_source`; ~95% zeros),
1024x1024 and 2048x2048 uint16. Rates are GB/s of uncompressed frame bytes, medians of
``--repeats`` runs of ``--frames`` frames each, written to ``--dir`` (a temporary directory
on the default disk unless given). Rows:

- ``NexusSink, frames as arrays``: the sink compresses each frame (bitshuffle, then a
  direct chunk write), as it does for frames that arrive uncompressed.
- ``NexusSink, frames arrive bitshuffle-lz4``: frames compressed upstream
  (``--operator compress``) are stored as they came.
- ``bare h5py + bitshuffle, direct chunks``: the same work without Arroyo (the baseline).
- ``bare h5py, hdf5plugin filter``: the plain way, ``dataset[i] = frame`` through the filter.

Then the share of the sink's time spent compressing. ``python benchmarks/nexus_writer.py
[--quick] [--threads 0]``; OMP_NUM_THREADS is 1 unless ``--threads 0`` (library default).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    if args.threads and os.environ.get("OMP_NUM_THREADS") != str(args.threads):
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)

    import struct

    import bitshuffle
    import h5py
    import hdf5plugin

    from arroyo_core import compression
    from arroyo_core.compression import compress, descriptor
    from arroyo_core.message import Event, Start, Stop
    from arroyo_core.nexus_sink import NexusSink
    from arroyo_core.powder_source import powder_frames

    frames_n, repeats = (60, 3) if args.quick else (args.frames, args.repeats)
    shapes = [(1024, 1024)] if args.quick else [(1024, 1024), (2048, 2048)]
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        root = Path(scratch)
        counter = iter(range(10**6))

        def sink_run(ring, packed) -> float:
            sink = NexusSink(str(root / f"s{next(counter)}"), flush_frames=100,
                             flush_seconds=0)
            sink.open()
            began = time.perf_counter()
            sink.publish(Start({"run": "bench"}))
            for i in range(frames_n):
                if packed:
                    meta = {"frame": i, "compressed": {"v": 1, "arrays": {
                        "image": descriptor(ring[i % 4], "bitshuffle-lz4")}}}
                    sink.publish(Event(meta, {"image": packed[i % 4]}))
                else:
                    sink.publish(Event({"frame": i}, {"image": ring[i % 4]}))
            sink.publish(Stop({}))
            sink.close()
            return time.perf_counter() - began

        def bare(ring, direct: bool) -> float:
            path = root / f"b{next(counter)}.h5"
            shape = ring[0].shape
            began = time.perf_counter()
            with h5py.File(path, "x", libver="latest") as f:
                data = f.create_dataset("data", (0, *shape), maxshape=(None, *shape),
                                        chunks=(1, *shape), dtype="<u2",
                                        **hdf5plugin.Bitshuffle(nelems=0, cname="lz4"))
                f.swmr_mode = True
                for i in range(frames_n):
                    data.resize(i + 1, axis=0)
                    if direct:
                        body = bitshuffle.compress_lz4(ring[i % 4].reshape(-1), 4096)
                        head = struct.pack(">QI", ring[0].nbytes, 8192)
                        data.id.write_direct_chunk((i, 0, 0), head + body.tobytes())
                    else:
                        data[i] = ring[i % 4]
                    if i % 100 == 99:
                        data.flush()
            return time.perf_counter() - began

        print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'default')}; "
              f"{frames_n} frames per run, medians of {repeats}")
        for shape in shapes:
            ring = powder_frames(shape, 4)
            packed = [compress(f, "bitshuffle-lz4") for f in ring]
            nbytes = ring[0].nbytes * frames_n
            rows = {
                "NexusSink, frames as arrays": lambda ring=ring: sink_run(ring, None),
                "NexusSink, frames arrive bitshuffle-lz4":
                    lambda ring=ring, packed=packed: sink_run(ring, packed),
                "bare h5py + bitshuffle, direct chunks": lambda ring=ring: bare(ring, True),
                "bare h5py, hdf5plugin filter": lambda ring=ring: bare(ring, False),
            }
            times: dict[str, list[float]] = {name: [] for name in rows}
            for _ in range(repeats):  # alternating, so drift of the machine hits all alike
                for name, run in rows.items():
                    times[name].append(run())
            baseline = statistics.median(times["bare h5py + bitshuffle, direct chunks"])
            print(f"\n{shape[0]}x{shape[1]} uint16, {ring[0].nbytes / 2**20:.0f} MiB frames")
            for name in rows:
                seconds = statistics.median(times[name])
                print(f"  {name:<42} {nbytes / seconds / 1e9:6.2f} GB/s "
                      f"{frames_n / seconds:7.0f} frames/s  {baseline / seconds:5.2f}x bare")
            spent = [0.0]
            original = compression.compress

            def timed(*a, original=original, spent=spent, **k):
                began = time.perf_counter()
                try:
                    return original(*a, **k)
                finally:
                    spent[0] += time.perf_counter() - began

            import arroyo_core.nexus_sink as nexus_module
            nexus_module.compress = timed  # type: ignore[assignment]
            total = sink_run(ring, None)
            nexus_module.compress = original  # type: ignore[assignment]
            print(f"  where a frame's time goes (frames as arrays): bitshuffle-lz4 "
                  f"{spent[0] / total:.0%}, HDF5 and the sink {1 - spent[0] / total:.0%}")


if __name__ == "__main__":
    main()
