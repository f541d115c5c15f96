"""The ``files`` source: every image of every new file in a directory, as Events.

Nothing is missed while the service starts or while it is busy: the directory watcher
(watchfiles) runs before the directory is scanned for what is already there, it gathers
changes while a file is being read, and the directory is scanned again every ``rescan``
seconds in case the kernel dropped notifications. Nothing is read twice after a restart:
a file is noted in the state file (:mod:`.state`) once all its images were handled. A file
is read once it is finished (:mod:`.readers`).

A run is a directory (a file's run is the directory it is in) or, with ``run_pattern``, the
part of its path that the pattern's group ``run`` (or its first group) matches; a run is
open from its first file read until a file of another run is read, no file came for
``run_idle`` seconds, or the service stops. Its id is the run's name and a random suffix,
so the frames of each opening count from 0 (``name`` holds the plain name).
"""

from __future__ import annotations

import fnmatch
import logging
import re
import time
import uuid
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..components import Deliver, Listener
from ..errors import ConfigError
from ..ledger import InputLedger
from ..message import Event, Message, Start, Stop
from ..status import LinkStatus
from .readers import NotReady, Unreadable, open_for_writing, open_images
from .state import ReadFiles

log = logging.getLogger(__name__)

INSTALL = "arroyo-stream[files]"
PATTERNS = ("*.tif", "*.tiff", "*.cbf", "*.edf", "*.h5", "*.hdf5", "*.nxs")
POLL_MS = 100  # how long the watcher waits for changes before the loop looks around


@dataclass
class _Candidate:
    path: Path
    size: int
    mtime_ns: int
    changed: float  # monotonic time its size or mtime was last seen to change


class NewFiles(Listener):
    """Emits one Event per image of each new file in a directory (payload ``image``;
    metadata ``file``, its path under the directory, and ``index``, the image's place in
    the file).

    Parameters
    ----------
    directory
        The directory to watch.
    patterns
        File names to read (shell patterns); TIFF, CBF, EDF go through fabio, HDF5 through
        h5py.
    recursive
        Watch the directories under it too.
    run_pattern
        A regular expression on a file's path under the directory whose group ``run`` (or
        first group, or whole match) names its run; empty: the file's directory is its run.
    dataset
        The HDF5 dataset of images (default: ``entry/data/data``, else the first of 2 or
        more dimensions).
    settle
        Seconds a file's size must stay the same before it is read, where the kernel
        cannot say whether a writer still has it open.
    give_up
        Seconds after its last change that a file that cannot be read is counted as
        malformed (``unreadable``) and left.
    rescan
        Seconds between scans of the whole directory (0: only at the start).
    run_idle
        Seconds without a new file after which the open run ends (0: it stays open).
    state
        The state file of files read (relative paths are under ``directory``).
    """

    acknowledges = True  # a file is noted as read once its images are handled
    requires = {"watchfiles": INSTALL, "fabio": INSTALL, "h5py": INSTALL}

    def __init__(self, directory: str = ".", patterns: Iterable[str] = PATTERNS,
                 recursive: bool = False, run_pattern: str = "", dataset: str = "",
                 settle: float = 0.5, give_up: float = 30.0, rescan: float = 5.0,
                 run_idle: float = 0.0, state: str = ".arroyo-files.jsonl") -> None:
        self.root = Path(directory).resolve()
        self.patterns = [patterns] if isinstance(patterns, str) else list(patterns)
        self.recursive = bool(recursive)
        try:
            self.run_pattern = re.compile(run_pattern) if run_pattern else None
        except re.error as exc:
            raise ConfigError(f"option run_pattern: {exc}") from None
        self.dataset = dataset
        self.settle, self.give_up, self.rescan = float(settle), float(give_up), float(rescan)
        self.run_idle = float(run_idle)
        self.state_path = self.root / state
        self.ledger = InputLedger(f"files {self.root}")
        self.pending: dict[str, _Candidate] = {}
        self.run: dict[str, Any] | None = None  # the open run
        self.files = 0  # files read
        self._last_of: weakref.WeakKeyDictionary[Message, tuple] = weakref.WeakKeyDictionary()
        self._watch: Any = None
        self.state: ReadFiles | None = None

    def open(self) -> None:
        import watchfiles

        if not self.root.is_dir():
            raise ConfigError(f"option directory: {self.root} is not a directory")
        self.state = ReadFiles(self.state_path)
        logging.getLogger("watchfiles").setLevel(logging.WARNING)  # not a line per change
        self._watch = watchfiles.watch(
            self.root, watch_filter=None, debounce=50, step=20, rust_timeout=POLL_MS,
            yield_on_timeout=True, stop_event=self.stop_requested, recursive=self.recursive,
            raise_interrupt=False, ignore_permission_denied=True)
        next(self._watch)  # the watcher runs from here on, so the scan misses nothing
        self._scan()

    def start(self, deliver: Deliver) -> None:
        assert self._watch is not None, "open() first"
        scanned = time.monotonic()
        try:
            self._read_ready(deliver)
            for changes in self._watch:
                for _, path in changes:
                    self._consider(Path(path))
                now = time.monotonic()
                if self.rescan and now - scanned >= self.rescan:
                    self._scan()
                    scanned = now
                self._read_ready(deliver)
                if (self.run is not None and self.run_idle
                        and now - self.run["last"] > self.run_idle):
                    self._end_run(deliver)
                if self.stop_requested.is_set():
                    break
        finally:
            self._end_run(deliver)

    def _scan(self) -> None:
        found = self.root.rglob("*") if self.recursive else self.root.iterdir()
        for path in found:
            self._consider(path)

    def _consider(self, path: Path) -> None:
        if path == self.state_path or not any(fnmatch.fnmatch(path.name, pattern)
                                              for pattern in self.patterns):
            return
        try:
            name = path.relative_to(self.root).as_posix()
            info = path.stat()
        except (ValueError, OSError):
            return  # gone already, or outside the directory
        if not path.is_file() or (self.state is not None
                                  and self.state.seen(name, info.st_size, info.st_mtime_ns)):
            return
        if name not in self.pending:
            self.pending[name] = _Candidate(path, info.st_size, info.st_mtime_ns,
                                            time.monotonic())

    def _read_ready(self, deliver: Deliver) -> None:
        """Read every pending file that is finished, oldest first."""
        now = time.monotonic()
        for name, candidate in sorted(self.pending.items(),
                                      key=lambda item: (item[1].mtime_ns, item[0])):
            if self.stop_requested.is_set():
                return
            try:
                info = candidate.path.stat()
            except OSError:
                del self.pending[name]  # deleted before it was read
                continue
            if (info.st_size, info.st_mtime_ns) != (candidate.size, candidate.mtime_ns):
                candidate.size, candidate.mtime_ns = info.st_size, info.st_mtime_ns
                candidate.changed = now
                continue
            writing = open_for_writing(candidate.path)
            if writing or (writing is None and now - candidate.changed < self.settle):
                continue
            if self._read(name, candidate, deliver, now):
                del self.pending[name]

    def _read(self, name: str, candidate: _Candidate, deliver: Deliver, now: float) -> bool:
        """Deliver the file's images; False if it is to be tried again later."""
        try:
            count, images = open_images(candidate.path, self.dataset)
        except NotReady:
            return False
        except Unreadable as exc:
            if now - candidate.changed < self.give_up:
                return False
            self.ledger.reject("unreadable", f"{name}: {exc}")
            self._done(name, candidate, images=0, error=str(exc))
            return True
        if not count:
            self._done(name, candidate, images=0)
            return True
        run = self._run_of(name)
        if self.run is None or self.run["name"] != run:
            self._end_run(deliver)
            self._begin_run(run, deliver)
        assert self.run is not None
        self.run["last"] = now
        self.files += 1
        index = 0
        try:
            for index, image in enumerate(images):
                frame = self.run["frames"]
                event = Event({"run": self.run["run"], "frame": frame, "file": name,
                               "index": index, "images_in_file": count}, {"image": image})
                self.run["frames"] += 1
                self.ledger.observe(self.run["run"], frame)
                if index == count - 1:  # noted once handled, so before it is delivered
                    self._last_of[event] = (name, candidate.size, candidate.mtime_ns, count)
                deliver(event)
                if self.stop_requested.is_set() and index < count - 1:
                    return True  # not noted: read again (whole) after a restart
        except Unreadable as exc:
            self.ledger.reject("unreadable", f"{name}: {exc}")
            self._done(name, candidate, images=index, error=str(exc))
        return True

    def _run_of(self, name: str) -> str:
        if self.run_pattern is not None:
            match = self.run_pattern.search(name)
            if match:
                groups = match.groupdict()
                return str(groups.get("run") or (match.group(1) if match.groups()
                                                 else match.group(0)))
        parent = Path(name).parent.as_posix()
        return self.root.name if parent == "." else parent

    def _begin_run(self, name: str, deliver: Deliver) -> None:
        run = f"{name}:{uuid.uuid4().hex[:8]}"
        self.run = {"run": run, "name": name, "frames": 0, "files": 0,
                    "began": time.monotonic(), "last": time.monotonic()}
        deliver(Start({"run": run, "name": name, "source": "files",
                       "directory": str(self.root), "started": time.time()}))

    def _end_run(self, deliver: Deliver) -> None:
        run, self.run = self.run, None
        if run is not None:
            deliver(Stop({"run": run["run"], "name": run["name"],
                          "frames_sent": run["frames"],
                          "seconds": time.monotonic() - run["began"]}))

    def handled(self, message: Message) -> None:
        last = self._last_of.pop(message, None)
        if last is not None:
            name, size, mtime_ns, images = last
            self._done(name, _Candidate(Path(name), size, mtime_ns, 0.0), images=images)

    def _done(self, name: str, candidate: _Candidate, **more: Any) -> None:
        assert self.state is not None
        self.state.add(name, candidate.size, candidate.mtime_ns, **more)

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        if self.state is not None:
            self.state.close()
            self.state = None

    def status(self) -> LinkStatus:
        return self.ledger.status(kind="source", address=str(self.root),
                                  transport={"files": self.files,
                                             "waiting": len(self.pending)})

    def stats(self) -> dict[str, Any]:
        return self.status().to_dict()
