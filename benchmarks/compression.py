"""Compression of detector frames for the network: ratio and speed of each codec on
realistic frames (sparse photon counts of calibrant rings, as :mod:`arroyo_core.powder_source`
draws them), next to uniform noise, which no codec should be judged on.

For each codec (``bitshuffle-lz4``, ``blosc2``) and frame: the compression ratio, and
compress and decompress speed in GB/s of uncompressed bytes (medians of ``--repeats``),
single-threaded (OMP_NUM_THREADS=1, blosc2 nthreads=1: what one worker of a pool gets) and
with the libraries' default threads. ``python benchmarks/compression.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, 1 Mpixel only")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=0,
                        help="library threads (0: library default; 1: one core)")
    args = parser.parse_args()
    if args.threads and os.environ.get("OMP_NUM_THREADS") != str(args.threads):
        # OpenMP reads it at load time: run again with it set
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)

    import blosc2
    import numpy as np

    from arroyo_core.compression import compress, decompress
    from arroyo_core.powder_source import powder_frames

    if args.threads:
        blosc2.set_nthreads(args.threads)
    repeats = 10 if args.quick else args.repeats
    shapes = [(1024, 1024)] if args.quick else [(1024, 1024), (2048, 2048)]
    print(f"threads: {args.threads or 'library default'}; medians of {repeats}")
    print(f"{'frame':<38} {'codec':<15} {'ratio':>7} {'compress':>10} {'decompress':>11}")
    for shape in shapes:
        kinds = {
            f"powder rings {shape[0]}x{shape[1]} u2": powder_frames(shape, 4),
            f"noise 0..999 {shape[0]}x{shape[1]} u2": [
                np.random.default_rng(i).integers(0, 1000, shape, dtype=np.uint16)
                for i in range(4)],
        }
        for label, frames in kinds.items():
            zeros = float(np.mean([np.mean(f == 0) for f in frames]))
            for codec in ("bitshuffle-lz4", "blosc2"):
                packed = [compress(f, codec) for f in frames]
                ratio = frames[0].nbytes * len(frames) / sum(len(p) for p in packed)
                c_times, d_times = [], []
                for i in range(repeats):
                    frame = frames[i % 4]
                    began = time.perf_counter()
                    data = compress(frame, codec)
                    c_times.append(time.perf_counter() - began)
                    began = time.perf_counter()
                    back = decompress(data, codec, frame.dtype, frame.shape)
                    d_times.append(time.perf_counter() - began)
                    assert back.tobytes() == frame.tobytes()
                nbytes = frames[0].nbytes
                print(f"{label + f' ({zeros:.0%} zeros)':<38} {codec:<15} {ratio:>6.1f}x "
                      f"{nbytes / statistics.median(c_times) / 1e9:>7.2f} GB/s "
                      f"{nbytes / statistics.median(d_times) / 1e9:>7.2f} GB/s")


if __name__ == "__main__":
    main()
