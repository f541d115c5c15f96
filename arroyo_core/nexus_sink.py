"""The NeXus sink: one NeXus/HDF5 file per run, compressed, that readers follow live (SWMR).

The layout (``docs/beamline.md``)::

    {directory}/{run}.nxs                     attrs: default = "entry", arroyo_nexus_layout = 1
    └── entry (NXentry)                       attrs: default = "results" (or "data")
        ├── frame_number (n,)                 int64: each row's Event meta["frame"] (-1 if none)
        ├── start (NXcollection)              attrs: the run's Start metadata
        ├── instrument (NXinstrument)
        │   └── detector (NXdetector)
        │       └── data (n, *frame)          the frames: one chunk per frame, compressed
        ├── data (NXdata)                     signal "data": links to the frames
        ├── results (NXdata)                  every other payload entry (n, *shape); the axes
        │                                     the Start's ``nxdata`` names once, with units
        └── stop (NXcollection)               complete (1,): 1 once the Stop came;
                                              attrs: the Stop's metadata

The datasets are made at the run's first Event (its payload says their shapes), then the
file turns to SWMR mode: from then on a reader that opens it with ``swmr=True`` and calls
``refresh()`` sees the rows as they are flushed. Frames are compressed with bitshuffle-LZ4
(HDF5 filter 32008, through hdf5plugin for readers) by writing each frame's chunk directly;
a frame that arrived compressed in that codec (:mod:`arroyo_core.compression`) is stored as
it came, without being decompressed.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .components import Publisher
from .compression import (
    META_KEY,
    VERSION,
    check_bitshuffle,
    compress,
    compressed_entries,
    expand,
)
from .errors import ConfigError
from .hdf5_sink import run_path
from .message import Event, Message, Start, Stop
from .status import LinkStatus
from .watermark import FlushWatermark

log = logging.getLogger(__name__)

LAYOUT = 1  # the arroyo_nexus_layout attribute: what docs/beamline.md describes
INSTALL = "arroyo-stream[nexus]"
Compression = Literal["bitshuffle-lz4", "lz4", "gzip", "none"]


class NexusSink(Publisher):
    """Writes each run to ``{directory}/{run}.nxs`` in NeXus layout (docs/beamline.md), in
    SWMR mode so readers can follow it, flushed so that a killed writer leaves a file of
    every row up to the last flush (open it with ``swmr=True``, or after ``h5clear -s``).

    Parameters
    ----------
    directory
        Where the files go (made if missing); a file is never overwritten.
    frames
        Payload entries that are detector frames (``instrument/detector``); the first is
        ``data``. Every other entry goes to ``results``.
    compression
        Of the frames: ``bitshuffle-lz4`` (direct chunk writes), ``lz4``, ``gzip`` or ``none``.
    flush_frames
        Flush after this many rows (0: not by count).
    flush_seconds
        Flush at most this many seconds after a row was written (0: not by time).
    """

    requires = {"h5py": INSTALL, "hdf5plugin": INSTALL, "bitshuffle": INSTALL}

    def __init__(self, directory: str = ".", frames: list[str] | None = None,
                 compression: Compression = "bitshuffle-lz4", flush_frames: int = 10,
                 flush_seconds: float = 1.0) -> None:
        if compression not in ("bitshuffle-lz4", "lz4", "gzip", "none"):
            raise ConfigError(f"option compression: expected bitshuffle-lz4, lz4, gzip or none, "
                              f"got {compression!r}")
        if not (flush_frames >= 0 and flush_seconds >= 0):
            raise ConfigError("options flush_frames, flush_seconds: expected 0 (off) or more")
        self.directory = Path(directory)
        self.frames = list(frames) if frames is not None else ["image"]
        self.compression = compression
        self.flush_frames, self.flush_seconds = int(flush_frames), float(flush_seconds)
        self.file: Any = None
        self.path: Path | None = None
        self.written = self.files = self.rows = self.flushed_rows = 0
        self.stored_compressed = 0  # frames stored as they arrived, never decompressed
        self._meta: dict[str, Any] = {}
        self._datasets: dict[str, Any] = {}  # per-row datasets of the open file, by entry
        # When to flush, and what is flushed: a reliable input acknowledges only that.
        self.watermark: FlushWatermark = FlushWatermark(
            self._flush, self.flush_frames, self.flush_seconds, "arroyo-nexus-flush")
        self._lock = self.watermark.lock

    def open(self) -> None:
        try:
            import h5py
            import hdf5plugin
        except ImportError as exc:
            raise ConfigError(f"needs {exc.name}, which is not installed: "
                              f"pip install '{INSTALL}'") from None
        self._h5py, self._plugin = h5py, hdf5plugin
        self.directory.mkdir(parents=True, exist_ok=True)
        self.watermark.start()

    def publish(self, message: Message) -> None:
        with self._lock:
            if isinstance(message, Start):
                self._open_file(message.meta)
            elif self.file is None:  # joined mid-run: a file of its own
                log.warning("nexus sink: a %s arrived outside a run; writing it to a new file",
                            message.kind)
                self._open_file({"run": message.meta.get("run"), "joined_mid_run": True})
            if isinstance(message, Event):
                if not self._datasets:
                    self._make_datasets(message)
                self._append(message)
            elif isinstance(message, Stop):
                self._finish(message.meta)
            self.watermark.took()  # (not if it failed: nothing of it is written)
            if isinstance(message, Event):
                self.watermark.wrote()

    def _open_file(self, meta: dict[str, Any]) -> None:
        self._close_file()
        path = run_path(self.directory, meta, ".nxs")
        # SWMR needs HDF5's newest format
        self.file = f = self._h5py.File(path, "x", libver="latest")
        self.path, self._meta = path, meta
        self.files += 1
        self.rows = self.flushed_rows = 0
        f.attrs.update({"NX_class": "NXroot", "default": "entry", "creator": "arroyo",
                        "arroyo_nexus_layout": LAYOUT, "file_name": path.name})
        entry = _group(f, "entry", "NXentry")
        started = meta.get("started")
        if isinstance(started, (int, float)):
            entry["start_time"] = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started))
        _set_attrs(_group(entry, "start", "NXcollection").attrs, meta)
        self.watermark.flush()
        log.info("nexus sink: writing run %s to %s", meta.get("run"), path.resolve())

    def _make_datasets(self, event: Event) -> None:
        """The run's datasets, shaped by its first Event; then SWMR mode (no new datasets)."""
        entry = self.file["entry"]
        event_meta = compressed_entries(event.meta)
        given = self._meta.get("nxdata")
        hints: dict[str, Any] = given if isinstance(given, dict) else {}
        axes: dict[str, Any] = hints["axes"] if isinstance(hints.get("axes"), dict) else {}
        frames = entry.create_dataset("frame_number", (0,), maxshape=(None,), dtype="<i8",
                                      chunks=(4096,))
        self._datasets = {"frame_number": frames}
        detector = _group(_group(entry, "instrument", "NXinstrument"), "detector", "NXdetector")
        results = None
        for name, value in event.payload.items():
            if name in event_meta:
                _, dtype_text, shape = event_meta[name]
                dtype, shape = np.dtype(dtype_text), tuple(shape)
            else:
                array = np.asarray(value)
                dtype, shape = array.dtype, array.shape
            if name in self.frames:
                where = "data" if name == self.frames[0] else name
                filters = self._filters(dtype)
                dataset = detector.create_dataset(
                    where, (0, *shape), maxshape=(None, *shape), dtype=dtype,
                    chunks=(1, *shape), **filters)
                self._datasets[name] = dataset
                continue
            if results is None:
                results = _group(entry, "results", "NXdata")
            if name in axes:  # the same for every frame of the run: written once
                results[name] = np.asarray(expand(event).payload[name])
                _set_attrs(results[name].attrs, axes[name] if isinstance(axes[name], dict) else {})
                continue
            self._datasets[name] = results.create_dataset(
                name, (0, *shape), maxshape=(None, *shape), dtype=dtype,
                chunks=(1, *shape) if np.prod(shape) else None)
        data = _group(entry, "data", "NXdata")
        if self.frames[0] in self._datasets:
            data["data"] = self._datasets[self.frames[0]]
            data["frame_number"] = frames
            data.attrs.update({"signal": "data", "axes": ["frame_number", *["."] * len(
                self._datasets[self.frames[0]].shape[1:])], "frame_number_indices": 0})
        entry.attrs["default"] = "results" if results is not None else "data"
        if results is not None:
            self._describe_results(results, hints, axes)
        stop = _group(entry, "stop", "NXcollection")
        stop.create_dataset("complete", data=[0], maxshape=(1,), chunks=(1,), dtype="i1")
        self.file.swmr_mode = True  # readers may follow from here on
        self.watermark.flush()

    def _filters(self, dtype: np.dtype) -> dict[str, Any]:
        if self.compression == "bitshuffle-lz4":
            return dict(self._plugin.Bitshuffle(nelems=0, cname="lz4"))
        if self.compression == "lz4":
            return dict(self._plugin.LZ4())
        return {"compression": "gzip"} if self.compression == "gzip" else {}

    def _describe_results(self, results: Any, hints: dict[str, Any],
                          axes: dict[str, Any]) -> None:
        """NXdata attributes: the signal, its errors, and which axis spans which dimension."""
        results["frame_number"] = self._datasets["frame_number"]
        signal = hints.get("signal")
        if signal not in self._datasets:
            signal = next((n for n in self._datasets if n != "frame_number"
                           and n not in self.frames), None)
        if signal is None:
            return
        dims = self._datasets[signal].shape[1:]
        names = [n for n in axes if n in results and results[n].ndim == 1]
        # the hinted axes in order, each on the first free dimension of its length
        order = ["."] * len(dims)
        for name in names:
            for i, size in enumerate(dims):
                if order[i] == "." and results[name].shape[0] == size:
                    order[i] = name
                    results.attrs[f"{name}_indices"] = i + 1
                    break
        results.attrs.update({"signal": signal, "axes": ["frame_number", *order],
                              "frame_number_indices": 0})
        errors = hints.get("errors")
        if isinstance(errors, str) and errors in self._datasets:
            results[f"{signal}_errors"] = self._datasets[errors]  # NeXus's name for them

    def _append(self, event: Event) -> None:
        """One row of every dataset, all checked before any grows, so rows stay aligned."""
        packed = compressed_entries(event.meta)
        direct = {n for n, spec in packed.items() if n in self.frames
                  and self.compression == "bitshuffle-lz4" and spec[0] == "bitshuffle-lz4"}
        payload = event.payload
        if packed.keys() - direct:  # decompress the others; keep the direct ones as they came
            rest = {n: s for n, s in packed.items() if n not in direct}
            meta = {**event.meta, META_KEY: {"v": VERSION, "arrays": rest}}
            expanded = expand(Event(meta, {n: v for n, v in payload.items() if n not in direct}))
            payload = {**expanded.payload, **{n: payload[n] for n in direct}}
        missing = self._datasets.keys() - payload.keys() - {"frame_number"}
        extra = payload.keys() - self._datasets.keys()
        extra -= set(self.file["entry/results"]) if "results" in self.file["entry"] else set()
        if missing or extra:
            raise ValueError(f"nexus sink: an Event with entries {sorted(payload)} in a "
                             f"run whose datasets (fixed in SWMR mode by its first Event) are "
                             f"{sorted(set(self._datasets) - {'frame_number'})}")
        rows = self.rows
        chunks: dict[str, Any] = {}
        for name, dataset in self._datasets.items():
            if name == "frame_number":
                continue
            if name in direct:
                raw = np.frombuffer(payload[name], np.uint8)
                check_bitshuffle(raw, dataset.dtype.itemsize * int(np.prod(dataset.shape[1:])),
                                  dataset.dtype.itemsize)
                chunks[name] = raw
                continue
            array = np.asarray(payload[name])
            if array.shape != dataset.shape[1:]:
                raise ValueError(f"nexus sink: entry {name!r} of shape {array.shape} in a run "
                                 f"whose first was {dataset.shape[1:]}")
            if name in self.frames and self.compression == "bitshuffle-lz4":
                chunks[name] = compress(array.astype(dataset.dtype, copy=False), "bitshuffle-lz4")
            else:
                chunks[name] = array
        for name, value in chunks.items():
            dataset = self._datasets[name]
            dataset.resize(rows + 1, axis=0)
            if name in self.frames and self.compression == "bitshuffle-lz4":
                dataset.id.write_direct_chunk((rows, *[0] * (dataset.ndim - 1)), value)
                self.stored_compressed += name in direct
            else:
                dataset[rows] = value
        frame = event.meta.get("frame")
        numbers = self._datasets["frame_number"]
        numbers.resize(rows + 1, axis=0)  # last: a row is complete once it is numbered
        numbers[rows] = frame if type(frame) is int else -1
        self.rows = rows + 1
        self.written += 1

    def _flush(self) -> None:
        if self.file is not None:
            for name, dataset in self._datasets.items():  # frame numbers last (see _append)
                if name != "frame_number" and self.file.swmr_mode:
                    dataset.flush()
            self.file.flush()
            self.flushed_rows = self.rows

    def flush(self) -> None:
        self.watermark.idle()  # (the runtime: nothing more queued for now)

    def _finish(self, meta: dict[str, Any]) -> None:
        entry = self.file["entry"]
        stop = entry["stop"] if "stop" in entry else _group(entry, "stop", "NXcollection")
        if "complete" in stop:
            stop["complete"][0] = 1
        else:
            stop["complete"] = [1]
        # (attributes are not covered by SWMR: a follower reads them once the file is closed)
        _set_attrs(stop.attrs, meta)
        self._close_file()

    def _close_file(self) -> None:
        if self.file is not None:
            self.watermark.flush()
            self.file.close()
            self.file = None
            self._datasets = {}
            log.info("nexus sink: closed %s, %d frames", self.path, self.rows)

    def close(self) -> None:
        with self._lock:
            self._close_file()
            self.watermark.flush()  # (what was taken since the last file closed)
        self.watermark.stop()

    def status(self) -> LinkStatus:
        return LinkStatus(name=f"nexus {self.directory}", direction="output", kind="sink",
                          sent=self.written,
                          transport={"file": str(self.path) if self.path else None,
                                     "open": self.file is not None,
                                     "files": self.files, "rows": self.rows,
                                     "flushed_rows": self.flushed_rows,
                                     "stored_compressed": self.stored_compressed})

    def stats(self) -> dict[str, Any]:
        return self.status().to_dict()


def _group(parent: Any, name: str, nx_class: str) -> Any:
    group = parent.require_group(name)
    group.attrs["NX_class"] = nx_class
    return group


def _set_attrs(attrs: Any, meta: dict[str, Any]) -> None:
    for key, value in meta.items():
        if isinstance(value, (dict, list)) and not _flat_list(value):
            attrs[key] = json.dumps(value)  # nested metadata: as JSON text, readable anywhere
            continue
        try:
            attrs[key] = value if value is not None else "null"
        except (TypeError, ValueError):
            attrs[key] = repr(value)


def _flat_list(value: Any) -> bool:
    """A non-empty list of numbers or of strings: HDF5 stores it as an array attribute."""
    return (isinstance(value, list) and bool(value)
            and (all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
                 or all(isinstance(v, str) for v in value)))
