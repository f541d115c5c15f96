"""A recording: the wire frames of a stream as they came, with when each message came.

The file is a stream of msgpack objects (no pickle; a reader never runs anything the file
says). The first is the file's header::

    {"arroyo_recording": 1, "address": "...", "created": "2026-12-01T14:00:00+00:00"}

and each further one is a message: ``[seconds, [frame, ...]]``, ``seconds`` since the
first message came, each frame its bytes exactly as received (the Arroyo header frame
first, batches and all: docs/protocol.md), so a replay sends the same bytes, the same
sender ids and sequence numbers, and every ledger after it counts the same run.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import msgpack

from arroyo_core.errors import ConfigError

FORMAT_VERSION = 1
READ_BUFFER = 2**32 - 1  # msgpack's limit on one object: a 4 GiB frame at most


class RecordingWriter:
    """Appends messages to a new recording at ``path``; :meth:`close` flushes it."""

    def __init__(self, path: str | Path, address: str) -> None:
        self.path = Path(path)
        try:
            self._file: IO[bytes] = self.path.open("xb")
        except OSError as exc:
            raise ConfigError(f"cannot write a recording to {path}: "
                              f"{exc.strerror or exc}") from None
        self._packer = msgpack.Packer(use_bin_type=True)
        self._file.write(self._packer.pack({
            "arroyo_recording": FORMAT_VERSION, "address": address,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}))
        self._first: float | None = None
        self.messages = 0
        self.bytes = 0

    def write(self, frames: Sequence[Any], arrived: float | None = None) -> None:
        """One message's frames (bytes, memoryviews or zmq Frames), which ``arrived`` at
        that ``time.monotonic()`` (default: now)."""
        arrived = time.monotonic() if arrived is None else arrived
        if self._first is None:
            self._first = arrived
        views = [frame.buffer if hasattr(frame, "buffer") else frame for frame in frames]
        self._file.write(self._packer.pack([arrived - self._first, views]))
        self.messages += 1
        self.bytes += sum(memoryview(view).nbytes for view in views)

    def close(self) -> None:
        self._file.close()


class Recording:
    """Reads a recording: :attr:`header`, then :meth:`messages` in order."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._file: IO[bytes] = self.path.open("rb")
        except OSError as exc:
            raise ConfigError(f"cannot read the recording {path}: {exc.strerror or exc}") \
                from None
        self._unpacker = msgpack.Unpacker(self._file, raw=False, max_buffer_size=READ_BUFFER)
        try:
            header = next(self._unpacker)
        except (StopIteration, ValueError, msgpack.UnpackException):
            header = None
        if not (isinstance(header, dict) and header.get("arroyo_recording") == FORMAT_VERSION):
            self._file.close()
            raise ConfigError(f"{path} is not an Arroyo recording (version {FORMAT_VERSION})")
        self.header: dict[str, Any] = header

    def messages(self) -> Iterator[tuple[float, list[bytes]]]:
        """``(seconds since the first message, frames)`` per message; a ConfigError if
        the file is cut short or holds something else (what came before it is yielded)."""
        for index, item in enumerate(self._unpacker):
            if not (isinstance(item, list) and len(item) == 2
                    and isinstance(item[0], (int, float)) and isinstance(item[1], list)
                    and all(isinstance(frame, bytes) for frame in item[1])):
                raise ConfigError(f"{self.path}: message {index} is not [seconds, [frames]]")
            yield float(item[0]), item[1]

    def count(self) -> tuple[int, float]:
        """(messages, seconds from the first to the last), read through a second reader."""
        again = Recording(self.path)
        try:
            messages, last = 0, 0.0
            for at, _ in again.messages():
                messages, last = messages + 1, at
            return messages, last
        finally:
            again.close()

    def close(self) -> None:
        self._file.close()
