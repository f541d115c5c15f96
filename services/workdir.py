"""Where a service finds user code and relative paths: one rule for every way of running it.

A service runs in its *home*: the directory of the config file (``arroyo operator -c
FILE``) or chain file (``arroyo service CHAIN NAME``, which ``arroyo run``, ``arroyo
check``, supervisor and compose all start) that describes it, or the current directory
when there is no file. Its home is the service's working directory, so relative paths
(``keys/detector.key_secret``, ``directory = "runs"``, ``ipc://name``) are read against
it, and the first entry of its import path, so ``operator = "my_ops:Centroid"`` finds
``my_ops.py`` next to the file. A service started by hand (``arroyo listener|operator|
publisher``) also imports from the current directory, after its home, as ``python``
does; a chain's services do not, so that a chain behaves the same whichever directory
``arroyo run``, supervisord or a container starts it from.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path


def home_of(config_file: str | Path | None) -> Path:
    """The home of a service described by ``config_file`` (None: given on the command line)."""
    return Path(config_file).resolve().parent if config_file else Path.cwd()


@contextlib.contextmanager
def at_home(home: Path, with_cwd: bool = False) -> Iterator[None]:
    """Run in ``home``: its working directory and first on the import path (the current
    directory second, ``with_cwd``); both are restored on leaving."""
    entries = [str(home)]
    if with_cwd:
        entries.append(os.getcwd())
    saved = list(sys.path)
    sys.path[:0] = [entry for entry in dict.fromkeys(entries)]
    try:
        with contextlib.chdir(home):
            yield
    finally:
        sys.path[:] = saved
