"""Progress of a long command: a bar on a terminal (rich), plain lines when the output is
not one (a log, a pipe, CI), at most one a second, so that a log stays readable.

::

    with Progress("replay", total=1000) as progress:
        for n in ...:
            progress.update(n, f"{rate:,.0f} msg/s")
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import IO, Any

PLAIN_EVERY_S = 1.0


class Progress:
    """Shows ``done`` of ``total`` (unknown: None) with a short ``detail`` text.

    Parameters
    ----------
    what
        What is going on, shown before the bar or at the start of each line.
    total
        The amount that ``done`` counts up to, if known.
    unit
        What ``done`` counts, for plain lines ("frames", "messages").
    stream
        Where to show it (default: standard output); a bar only if it is a terminal.
    transient
        The bar goes once done (on a terminal; a line says the outcome instead).
    """

    def __init__(self, what: str, total: int | None = None, unit: str = "",
                 stream: IO[str] | None = None, transient: bool = False) -> None:
        self.what = what
        self.total = total
        self.unit = unit
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.transient = transient
        self._bar: Any = None
        self._task: Any = None
        self._shown = 0.0
        self._last: tuple[int, str] | None = None
        self._printed: tuple[int, str] | None = None

    def __enter__(self) -> Progress:
        if self.tty:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import Progress as Bar

            self._bar = Bar(TextColumn("{task.description}"), BarColumn(),
                            MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("{task.fields[detail]}"),
                            console=Console(file=self.stream), transient=self.transient)
            self._bar.start()
            self._task = self._bar.add_task(self.what, total=self.total, detail="")
        return self

    def update(self, done: int, detail: str = "") -> None:
        """``done`` so far, and what else to say about it now."""
        self._last = (done, detail)
        if self._bar is not None:
            self._bar.update(self._task, completed=done, detail=detail)
            return
        now = time.monotonic()
        if now - self._shown >= PLAIN_EVERY_S:
            self._shown = now
            self._line(done, detail)

    def echo(self, line: str) -> None:
        """A line of its own (above the bar, on a terminal)."""
        if self._bar is not None:
            self._bar.console.print(line, highlight=False, markup=False)
        else:
            print(line, file=self.stream, flush=True)

    def _line(self, done: int, detail: str) -> None:
        of = f"/{self.total:,}" if self.total is not None else ""
        unit = f" {self.unit}" if self.unit else ""
        tail = f"  {detail}" if detail else ""
        self._printed = (done, detail)
        print(f"{self.what}: {done:,}{of}{unit}{tail}", file=self.stream, flush=True)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif self._last is not None and self._last != self._printed:
            self._line(*self._last)  # the final figures, whenever the last line was
