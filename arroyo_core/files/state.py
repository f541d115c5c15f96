"""Which files a ``files`` source has read, kept across restarts in a small state file.

One JSON object a line, appended (and flushed to the disk) once every image of a file has
been handled by the service: ``{"file": "run1/img_0001.tif", "size": ..., "mtime_ns": ...,
"images": 1}``. A file read again with the same path, size
and modification time is skipped after a restart; one that changed is read again. A line
cut off by a crash is ignored (its file is read again: at least once, never lost). The file
is rewritten compactly at each start.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class ReadFiles:
    """The state file at ``path``: the files read (path, size, modification time)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, tuple[int, int]] = {}  # file: (size, mtime_ns)
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                    self.done[entry["file"]] = (int(entry["size"]), int(entry["mtime_ns"]))
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        with temporary.open("w") as out:
            for name, (size, mtime) in self.done.items():
                out.write(json.dumps({"file": name, "size": size, "mtime_ns": mtime}) + "\n")
        os.replace(temporary, path)
        self.file = path.open("a")

    def seen(self, name: str, size: int, mtime_ns: int) -> bool:
        return self.done.get(name) == (size, mtime_ns)

    def add(self, name: str, size: int, mtime_ns: int, **more: Any) -> None:
        """Note ``name`` as read (``more``: what else the line says, e.g. its images)."""
        self.done[name] = (size, mtime_ns)
        self.file.write(json.dumps({"file": name, "size": size, "mtime_ns": mtime_ns,
                                    **more}) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()
