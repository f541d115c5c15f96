"""Built-in sinks: publishers that end a chain."""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from .components import Publisher
from .errors import ConfigError
from .gaps import GapCounter
from .message import Event, Message, Start, Stop
from .status import LinkStatus, RunStatus

log = logging.getLogger(__name__)

_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


class RunTally:
    """Frames, bytes and losses of one run, from the ``frame`` index the source stamps."""

    def __init__(self, run: Any) -> None:
        self.run = run
        self.frames = 0
        self.bytes = 0
        self.gaps = GapCounter(start=0)  # a run's frames count from 0: joining late loses some
        self.began = time.monotonic()
        self.ended: float | None = None
        self.frames_sent: int | None = None

    def count(self, event: Event) -> None:
        self.frames += 1
        self.bytes += event.nbytes
        frame = event.meta.get("frame")
        if isinstance(frame, int):
            self.gaps.observe(frame)

    def finish(self, stop: Stop) -> None:
        self.ended = time.monotonic()
        sent = stop.meta.get("frames_sent")
        self.frames_sent = sent if isinstance(sent, int) else None

    def status(self) -> RunStatus:
        seconds = max((self.ended or time.monotonic()) - self.began, 1e-9)
        gaps = self.gaps
        lost = gaps.missing
        if self.frames_sent is not None:  # also counts frames lost after the last received
            lost = self.frames_sent - (self.frames - gaps.duplicates)
        return RunStatus(run=self.run, frames=self.frames, bytes=self.bytes,
                         frames_sent=self.frames_sent, lost=lost, duplicates=gaps.duplicates,
                         missing_ranges=[list(r) for r in gaps.ranges], seconds=seconds,
                         frames_per_s=self.frames / seconds,
                         mb_per_s=self.bytes / seconds / 1e6, complete=self.ended is not None)


class StatsSink(Publisher):
    """Counts frames, bytes, rate and lost frames per run, and logs progress.

    Parameters
    ----------
    interval
        Seconds between progress lines (0: only the summary at each Stop).
    """

    def __init__(self, interval: float = 1.0) -> None:
        if not interval >= 0:
            raise ConfigError(f"option interval: expected 0 or more seconds, got {interval!r}")
        self.interval = interval
        self.runs: list[RunTally] = []
        self.current: RunTally | None = None
        self._last_log = time.monotonic()
        self._lock = threading.Lock()  # stats() is read from the status thread

    def publish(self, message: Message) -> None:
        with self._lock:
            if isinstance(message, Start):
                self.current = RunTally(message.meta.get("run"))
                self.runs.append(self.current)
            elif self.current is None:
                self.current = RunTally(None)  # joined mid-run
                self.runs.append(self.current)
            if isinstance(message, Event):
                self.current.count(message)
            elif isinstance(message, Stop):
                self.current.finish(message)
                log.info("run summary: %s", _line(self.current.status()))
        if self.interval and time.monotonic() - self._last_log >= self.interval:
            self._last_log = time.monotonic()
            if self.current is not None:
                log.info("progress: %s", _line(self.current.status()))

    def status(self) -> LinkStatus:
        with self._lock:
            runs = [r.status() for r in self.runs]
        return LinkStatus(name="stats sink", direction="output", kind="sink", runs=runs)

    def stats(self) -> dict[str, Any]:
        return self.status().to_dict()


def _line(run: RunStatus) -> str:
    return (f"{run.frames} frames, {run.frames_per_s:.0f} frames/s, {run.mb_per_s:.1f} MB/s, "
            f"lost {run.lost}")


class HDF5Sink(Publisher):
    """Writes each run to ``{directory}/{run}.h5``: one growing dataset per payload array,
    Start metadata as file attributes and Stop metadata as attributes of ``/stop``."""

    requires = {"h5py": "arroyo-stream[hdf5]"}  # checked by registry.build, so by --check

    def __init__(self, directory: str = ".", compression: str | None = None) -> None:
        self.directory = Path(directory)
        self.compression = compression
        self.file: Any = None
        self.written = 0

    def open(self) -> None:
        import h5py  # only this sink needs it

        self._h5py = h5py
        self.directory.mkdir(parents=True, exist_ok=True)

    def publish(self, message: Message) -> None:
        if isinstance(message, Start):
            self._open_file(message.meta)
        elif self.file is None:  # joined mid-run: keep the data in a file of its own
            log.warning("hdf5 sink: a %s arrived outside a run; writing it to a new file",
                        message.kind)
            self._open_file({"run": message.meta.get("run"), "joined_mid_run": True})
        if isinstance(message, Event):
            for name, value in message.payload.items():
                self._append(name, np.asarray(value))
            self.written += 1
        elif isinstance(message, Stop):
            _set_attrs(self.file.require_group("stop").attrs, message.meta)
            self._close_file()

    def _open_file(self, meta: dict[str, Any]) -> None:
        self._close_file()
        # The run id comes from the network: keep it from naming a path outside directory.
        run = _SAFE_NAME.sub("_", str(meta.get("run") or ""))[:100].lstrip(".")
        name = run or time.strftime("%Y%m%d-%H%M%S")
        path = self.directory / f"{name}.h5"
        counter = 1
        while path.exists():  # never overwrite an earlier run's file
            path = self.directory / f"{name}-{counter}.h5"
            counter += 1
        self.file = self._h5py.File(path, "x")
        _set_attrs(self.file.attrs, meta)

    def _append(self, name: str, array: np.ndarray) -> None:
        if array.dtype.kind in "mM":
            array = array.view(np.int64)  # HDF5 has no datetime type
        dataset = self.file.get(name)
        if dataset is None:
            dataset = self.file.create_dataset(
                name, shape=(0, *array.shape), maxshape=(None, *array.shape),
                dtype=array.dtype, chunks=(1, *array.shape) if array.size else None,
                compression=self.compression)
        dataset.resize(dataset.shape[0] + 1, axis=0)
        dataset[-1] = array

    def _close_file(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def close(self) -> None:
        self._close_file()

    def status(self) -> LinkStatus:
        return LinkStatus(name=f"hdf5 {self.directory}", direction="output", kind="sink",
                          sent=self.written)

    def stats(self) -> dict[str, Any]:
        return self.status().to_dict()


def _set_attrs(attrs: Any, meta: dict[str, Any]) -> None:
    for key, value in meta.items():
        try:
            attrs[key] = value
        except (TypeError, ValueError):
            attrs[key] = repr(value)  # nested metadata: keep it readable rather than lose it


class CollectingSink(Publisher):
    """Keeps every message it is given in ``messages``: the testing sink for your operators."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def publish(self, message: Message) -> None:
        self.messages.append(message)

    def status(self) -> LinkStatus:
        return LinkStatus(name="collecting sink", direction="output", kind="sink",
                          sent=len(self.messages))

    def stats(self) -> dict[str, Any]:
        return self.status().to_dict()
