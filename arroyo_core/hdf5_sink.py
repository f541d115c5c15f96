"""The HDF5 sink: one file per run, readable after the writer is killed.

The layout (``docs/hdf5.md``)::

    {directory}/{run}.h5
    ├── attrs                 the run's Start metadata, and arroyo_hdf5_layout = 1
    ├── frame_number (n,)     int64: each row's frame number (meta["frame"]; -1 if none)
    ├── {name} (n, *shape)    one dataset per payload entry, row i from the same Event as
    │                         frame_number[i] (the fill value, 0, where an Event lacked it)
    └── stop/                 only once the run ended: attrs are the Stop's metadata

HDF5 rewrites its own structures in place, so a file written without flushing is lost
when the writer dies: the superblock and object headers are only consistent on disk
after a flush. The sink flushes every ``flush_frames`` rows and ``flush_seconds`` after a
row was written (from a thread of its own, so a stalled stream is flushed too); a killed
writer leaves a file that h5py opens as it was at the last flush, every dataset with the
same number of rows. On a reliable input the sink's acknowledgements wait for the flush
(:class:`~arroyo_core.watermark.FlushWatermark`), and it also flushes when its input is
idle, so no acknowledged row is lost with the writer. The files keep HDF5's 1.8 format
(superblock version 2 at most): from version 3 on, a file a writer did not close refuses
to open until ``h5clear`` has cleared it, which SWMR needs as well (docs/hdf5.md says
why we flush instead).
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from .components import Publisher
from .errors import ConfigError
from .message import Event, Message, Start, Stop
from .status import LinkStatus
from .watermark import FlushWatermark

log = logging.getLogger(__name__)

LAYOUT = 1  # the arroyo_hdf5_layout attribute: what docs/hdf5.md describes
FRAME_NUMBER = "frame_number"
RESERVED = frozenset([FRAME_NUMBER, "stop"])  # names a payload entry cannot have
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


class HDF5Sink(Publisher):
    """Writes each run to ``{directory}/{run}.h5`` (layout: docs/hdf5.md), flushed so that a
    killed writer leaves a readable file of every row up to the last flush.

    Parameters
    ----------
    directory
        Where the files go (made if missing); a file is never overwritten.
    compression
        HDF5 compression of the payload datasets (``gzip``, ``lzf``), or none.
    flush_frames
        Flush after this many rows (0: not by count).
    flush_seconds
        Flush at most this many seconds after a row was written (0: not by time).
    """

    requires = {"h5py": "arroyo-stream[hdf5]"}  # checked by registry.build, so by --check

    def __init__(self, directory: str = ".", compression: str | None = None,
                 flush_frames: int = 100, flush_seconds: float = 1.0) -> None:
        if not flush_frames >= 0:
            raise ConfigError(f"option flush_frames: expected 0 (off) or more frames, "
                              f"got {flush_frames!r}")
        if not flush_seconds >= 0:
            raise ConfigError(f"option flush_seconds: expected 0 (off) or more seconds, "
                              f"got {flush_seconds!r}")
        self.directory = Path(directory)
        self.compression = compression
        self.flush_frames = int(flush_frames)
        self.flush_seconds = float(flush_seconds)
        self.file: Any = None
        self.path: Path | None = None
        self.written = 0  # Events written, all files
        self.files = 0
        self.rows = 0  # of the open file
        self.flushed_rows = 0  # of the open file, on disk as of its last flush
        self._datasets: dict[str, Any] = {}  # of the open file, by name
        # When to flush, and what is flushed: a reliable input acknowledges only that.
        self.watermark: FlushWatermark = FlushWatermark(
            self._flush, self.flush_frames, self.flush_seconds, "arroyo-hdf5-flush")
        self._lock = self.watermark.lock  # one Event's rows, or a flush, at a time

    def open(self) -> None:
        import h5py  # only this sink needs it

        self._h5py = h5py
        self.directory.mkdir(parents=True, exist_ok=True)
        self.watermark.start()

    def publish(self, message: Message) -> None:
        with self._lock:
            if isinstance(message, Start):
                self._open_file(message.meta)
            elif self.file is None:  # joined mid-run: keep the data in a file of its own
                log.warning("hdf5 sink: a %s arrived outside a run; writing it to a new file",
                            message.kind)
                self._open_file({"run": message.meta.get("run"), "joined_mid_run": True})
            if isinstance(message, Event):
                self._append(message)
            elif isinstance(message, Stop):
                _set_attrs(self.file.require_group("stop").attrs, message.meta)
                self._close_file()
            self.watermark.took()  # (not if it failed: nothing of it is written)
            if isinstance(message, Event):
                self.watermark.wrote()

    def _open_file(self, meta: dict[str, Any]) -> None:
        self._close_file()
        path = run_path(self.directory, meta, ".h5")
        # At most the 1.8 format: a version 3 superblock marks the file open for writing,
        # and a killed writer's file would then not open without h5clear.
        self.file = self._h5py.File(path, "x", libver=("earliest", "v108"))
        self.path = path
        self.files += 1
        self.rows = self.flushed_rows = 0
        _set_attrs(self.file.attrs, meta)
        self.file.attrs["arroyo_hdf5_layout"] = LAYOUT
        self._datasets = {FRAME_NUMBER: self.file.create_dataset(
            FRAME_NUMBER, shape=(0,), maxshape=(None,), dtype="<i8", chunks=(4096,))}
        self.watermark.flush()  # the superblock and the empty layout: readable from now on
        log.info("hdf5 sink: writing run %s to %s", meta.get("run"), path.resolve())

    def _append(self, event: Event) -> None:
        """Write one row of every dataset: all checked before any grows, so a bad entry
        leaves the rows aligned."""
        rows, datasets = self.rows, self._datasets
        arrays = {}
        for name, value in event.payload.items():
            if name in RESERVED:
                raise ValueError(f"hdf5 sink: payload name {name!r} is taken by the file "
                                 f"layout ({sorted(RESERVED)}; docs/hdf5.md)")
            array = np.asarray(value)
            if array.dtype.kind in "mM":
                array = array.view(np.int64)  # HDF5 has no datetime type
            dataset = datasets.get(name)
            if dataset is not None and dataset.shape[1:] != array.shape:
                raise ValueError(f"hdf5 sink: payload {name!r} of shape {array.shape} in a "
                                 f"run whose earlier ones were {dataset.shape[1:]}")
            arrays[name] = array
        for name, array in arrays.items():
            if name not in datasets:  # the rows before it get the fill value
                datasets[name] = self.file.create_dataset(
                    name, shape=(rows, *array.shape), maxshape=(None, *array.shape),
                    dtype=array.dtype, chunks=(1, *array.shape) if array.size else None,
                    compression=self.compression)
        frame = event.meta.get("frame")
        for name, dataset in datasets.items():
            dataset.resize(rows + 1, axis=0)
            if name in arrays:
                dataset[rows] = arrays[name]
            elif name == FRAME_NUMBER:
                dataset[rows] = frame if type(frame) is int else -1
        self.rows = rows + 1
        self.written += 1

    def _flush(self) -> None:
        if self.file is not None:
            self.file.flush()  # to the operating system: survives kill -9, not a power cut
            self.flushed_rows = self.rows

    def flush(self) -> None:
        self.watermark.idle()  # (the runtime: nothing more queued for now)

    def _close_file(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
            self._datasets = {}
            self.flushed_rows = self.rows
            log.info("hdf5 sink: closed %s, %d frames", self.path, self.rows)
        self.watermark.flush()  # (the file is closed: only what it made durable is left)

    def close(self) -> None:
        with self._lock:
            self._close_file()
        self.watermark.stop()

    def status(self) -> LinkStatus:
        return LinkStatus(name=f"hdf5 {self.directory}", direction="output", kind="sink",
                          sent=self.written,
                          transport={"file": str(self.path) if self.path else None,
                                     "files": self.files, "rows": self.rows,
                                     "flushed_rows": self.flushed_rows})

    def stats(self) -> dict[str, Any]:
        return self.status().to_dict()


def run_path(directory: Path, meta: dict[str, Any], suffix: str) -> Path:
    """``{directory}/{run}{suffix}`` for a run's Start metadata, never an existing file
    (``{run}-1{suffix}`` ...); the run id is sanitised, as it comes from the network."""
    run = _SAFE_NAME.sub("_", str(meta.get("run") or ""))[:100].lstrip(".")
    name = run or time.strftime("%Y%m%d-%H%M%S")
    path = directory / f"{name}{suffix}"
    counter = 1
    while path.exists():  # never overwrite an earlier run's file
        path = directory / f"{name}-{counter}{suffix}"
        counter += 1
    return path


def _set_attrs(attrs: Any, meta: dict[str, Any]) -> None:
    for key, value in meta.items():
        try:
            attrs[key] = value
        except (TypeError, ValueError):
            attrs[key] = repr(value)  # nested metadata: keep it readable rather than lose it
