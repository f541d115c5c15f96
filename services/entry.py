"""The ``arroyo`` command, whose first act is to let SIGTERM stop it.

In a container a service is process 1, and the kernel ignores a signal that process 1 has
no handler for. Until a service installed its own handler (once its links were open), a
SIGTERM from ``docker stop`` or ``compose down`` did nothing and the engine killed it when
its grace period ran out. This handler comes before anything slow (imports, plug-ins,
links): a service stopped before it was ready has nothing to drain, and exits 0 at once.
"""

from __future__ import annotations

import signal
import sys
from typing import Any


def _stop_before_ready(signum: int, frame: Any) -> None:
    print(f"stopped by {signal.Signals(signum).name} before it was ready", file=sys.stderr,
          flush=True)
    raise SystemExit(0)


def main() -> None:
    signal.signal(signal.SIGTERM, _stop_before_ready)
    signal.signal(signal.SIGHUP, _stop_before_ready)  # its parent died (services.processes)
    from .cli import main as cli

    cli()
