"""What the runtime's checks on an operator's input and results cost per message.

The runtime gives an operator read-only arrays and checks each result the way the wire
would (arroyo_core.results, arroyo_core.wire.check), in one process and in every service.
This prints the cost of each step on a typical Event (a 512x512 uint16 frame, the source's
metadata), next to what encoding the same message costs, and the in-process runtime's
rate with and without the checks.

Run ``python benchmarks/runtime_checks.py``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from arroyo_core import results as results_module
from arroyo_core import runtime as runtime_module
from arroyo_core.components import Publisher
from arroyo_core.message import Event, Message, Start, Stop
from arroyo_core.operators import PassThrough
from arroyo_core.results import operator_results, read_only
from arroyo_core.runtime import Runtime
from arroyo_core.sources import MemoryListener
from arroyo_core.wire import check, decode, encode

REPEATS = 5


def per_call(function: Callable[[], Any], calls: int = 20_000) -> float:
    """Median over REPEATS of the mean seconds per call."""
    figures = []
    for _ in range(REPEATS):
        began = time.perf_counter()
        for _ in range(calls):
            function()
        figures.append((time.perf_counter() - began) / calls)
    return statistics.median(figures)


class Discard(Publisher):
    def publish(self, message: Message) -> None:
        pass


def runtime_rate(events: list[Event], checks: bool) -> float:
    """Messages per second through an in-process Runtime with a pass-through operator."""
    saved = runtime_module.read_only, runtime_module.operator_results
    if not checks:
        runtime_module.read_only = lambda event: None  # type: ignore[assignment]
        runtime_module.operator_results = (  # type: ignore[assignment]
            lambda results, operator, message: [results])
    try:
        figures = []
        for _ in range(REPEATS):
            messages = [Start({"run": "r"}), *events, Stop({"run": "r"})]
            runtime = Runtime(MemoryListener(messages), PassThrough(), [Discard()])
            began = time.perf_counter()
            runtime.run()
            figures.append(len(messages) / (time.perf_counter() - began))
        return statistics.median(figures)
    finally:
        runtime_module.read_only, runtime_module.operator_results = saved


def main() -> None:
    image = np.zeros((512, 512), "<u2")
    meta = {"run": "6cd49ba8cf5d4e0f9a1b2c3d4e5f6a7b", "frame": 12345, "crc32": 3735928559}
    event = Event(meta, {"image": image})
    decoded, _ = decode(encode(event, src="s", seq=0))
    fresh = Event(dict(meta), {"image": image})
    operator = PassThrough()
    rich = Event({**meta, "shape": [512, 512], "exposure": 0.01, "motors": {"x": 1.5, "y": -2.0},
                  "sample": "lysozyme", "tags": ["a", "b", "c"]}, {"image": image})

    rows = [
        ("wire.check, typical metadata", per_call(lambda: check(event))),
        ("wire.check, 8 keys with nesting", per_call(lambda: check(rich))),
        ("read_only, a decoded (read-only) event", per_call(lambda: read_only(decoded))),
        ("read_only, a writable array (makes a view)",
         per_call(lambda: (fresh.payload.__setitem__("image", image), read_only(fresh)))),
        ("operator_results, one Event", per_call(
            lambda: operator_results(event, operator, event))),
        ("for scale: wire.encode of the same Event", per_call(
            lambda: encode(event, src="s", seq=0))),
    ]
    print(f"{'step':48} {'per message':>12}")
    for name, seconds in rows:
        print(f"{name:48} {seconds * 1e9:9.0f} ns")

    events = [Event({"run": "r", "frame": i}, {"image": image}) for i in range(50_000)]
    with_checks = runtime_rate(events, checks=True)
    without = runtime_rate(events, checks=False)
    print(f"\nin-process Runtime, pass-through, {len(events)} events (medians of {REPEATS}):")
    print(f"  with checks    {with_checks:10,.0f} msg/s ({1e6 / with_checks:.2f} us/msg)")
    print(f"  without checks {without:10,.0f} msg/s ({1e6 / without:.2f} us/msg)")
    print(f"  checks cost    {(1 / with_checks - 1 / without) * 1e9:10,.0f} ns/msg")
    assert results_module  # imported so the patched names resolve in one place


if __name__ == "__main__":
    main()
