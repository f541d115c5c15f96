"""A pool worker and a reducer for the event-building tests.

The worker reads, from each part of a built event, the frame number its *data* says it is
(the image's ``frame_id``, the spectrum's channel 1, which is ``frame + 1``, the encoder's
first value) and the crc32 of the image, so the test can check each part against what its
source must have sent for that frame, with code of its own. The reducer gathers those rows
from every worker into one table, published every ``every`` rows and at the run's Stop.
"""

from __future__ import annotations

import os
import zlib

import numpy as np

from arroyo_core.components import Operator, Results
from arroyo_core.message import Event, Payload
from arroyo_core.reducer import Reducer

COLUMNS = ("frame", "detector", "spectra", "encoder", "image_crc", "worker_pid")


class Digest(Operator):
    """One row per built event: its frame, each part's own frame number (-1: no part), the
    image's crc32 and this worker's pid."""

    def on_event(self, event: Event) -> Results:
        payload = event.payload
        row = [event.meta["frame"], -1, -1, -1, -1, os.getpid()]
        if "detector/frame_id" in payload:
            row[1] = int(payload["detector/frame_id"][0])
            row[4] = zlib.crc32(payload["detector/image"])
        if "spectra/spectrum" in payload:
            row[2] = int(payload["spectra/spectrum"][1]) - 1
        if "encoder/position" in payload:
            row[3] = int(payload["encoder/position"][0])
        return Event({"run": event.meta["run"], "frame": event.meta["frame"],
                      "missing": event.meta.get("missing", [])},
                     {"row": np.array(row, dtype=np.int64)})


class RowTable(Reducer):
    """Every worker's rows, by frame, as one (n, 6) int64 array (``table``)."""

    def __init__(self, every: int = 100, interval: float = 0.0) -> None:
        super().__init__(every=every, interval=interval)
        self.rows: dict[int, np.ndarray] = {}

    def reset(self) -> None:
        self.rows = {}

    def accumulate(self, event: Event) -> None:
        row = np.array(event.payload["row"])  # a copy: the received frame is reused
        self.rows[int(row[0])] = row

    def result(self) -> dict[str, Payload]:
        rows = [self.rows[frame] for frame in sorted(self.rows)]
        return {"table": np.array(rows, dtype=np.int64).reshape(-1, len(COLUMNS))}
