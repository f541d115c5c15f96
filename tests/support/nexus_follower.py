"""A reader that follows a NeXus file in SWMR mode while the NeXus sink writes it, in a
process of its own: ``python -m tests.support.nexus_follower PATH TIMEOUT``.

It opens the file once the writer has turned it to SWMR mode, then refreshes the frame
numbers (first) and the frames (then), checks every new row against the frame the test
sent for that number (``photon_frame``), and prints one JSON line per change it sees:
``{"rows": n, "complete": 0|1, "bad": [...]}``. It exits 0 once the run is complete and
every row was read, 1 when the time runs out.
"""

from __future__ import annotations

import json
import sys
import time

import h5py
import hdf5plugin  # noqa: F401  (registers the bitshuffle filter for reading)
import numpy as np

SHAPE = (128, 128)


def photon_frame(index: int) -> np.ndarray:
    """Frame ``index`` of a followed run: sparse counts, different for every index."""
    return np.random.default_rng(index).poisson(0.2, SHAPE).astype(np.uint16)


def follow(path: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:  # the writer holds the file exclusively until it turns to SWMR mode
        try:
            f = h5py.File(path, "r", swmr=True)
            if "frame_number" in f["entry"]:
                break
            f.close()
        except (OSError, KeyError):
            pass
        if time.monotonic() > deadline:
            return 1
        time.sleep(0.02)
    with f:
        numbers, data = f["entry/frame_number"], f["entry/instrument/detector/data"]
        complete = f["entry/stop/complete"]
        seen, bad = 0, []
        while time.monotonic() < deadline:
            complete.refresh()
            done = int(complete[0])  # read before the rows: then no row comes after it
            numbers.refresh()
            data.refresh()
            rows = min(len(numbers), data.shape[0])
            if rows > seen:
                for row in range(seen, rows):
                    if not np.array_equal(data[row], photon_frame(int(numbers[row]))):
                        bad.append(row)
                seen = rows
                print(json.dumps({"rows": rows, "complete": done, "bad": bad}), flush=True)
            if done:
                print(json.dumps({"rows": seen, "complete": 1, "bad": bad}), flush=True)
                return 0
            time.sleep(0.02)
    return 1


if __name__ == "__main__":
    sys.exit(follow(sys.argv[1], float(sys.argv[2])))
