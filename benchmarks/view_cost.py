"""What the live view costs on the stream's path, next to the stats sink, in one process.

The view sink's ``publish`` runs on the processing thread of its service for every event
it takes: it copies a decimated image (at most ``max_side`` a side) and the 1-D arrays.
This measures that per event, for small to 16 MiB frames, beside ``StatsSink.publish`` on
the same events (the baseline: the cheapest sink there is), as medians of 5 repeats and
their ratio. It also measures what the server does per image shown, off the stream's path
(colour map and PNG of the decimated image), which bounds how many images a second one
browser can be sent.

Run ``python benchmarks/view_cost.py [--quick]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from arroyo_core import Event, Start
from arroyo_core.sinks import StatsSink
from arroyo_core.view import ViewSink
from arroyo_core.view.render import png

SHAPES = [((32, 32), np.uint16), ((512, 512), np.uint16), ((2048, 2048), np.uint16),
          ((4096, 4096), np.uint8), ((2048, 4096), np.uint16)]


def per_event(publish, events: list[Event], repeats: int) -> float:
    """Median seconds per ``publish`` call over ``repeats`` passes over ``events``."""
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        for event in events:
            publish(event)
        times.append((time.perf_counter() - began) / len(events))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer events per size")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'frame':>18} {'MiB':>6} {'view us/event':>14} {'stats us/event':>15} "
          f"{'ratio':>6} {'PNG ms/image':>13}")
    for shape, dtype in SHAPES:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        count = 8 if nbytes > 2**22 else 200
        count = max(4, count // 4) if args.quick else count
        frames = [rng.integers(0, 1000, shape).astype(dtype) for _ in range(2)]
        events = [Event({"run": "r", "frame": i},
                        {"image": frames[i % 2], "curve": np.linspace(0, 1, 1000)})
                  for i in range(count)]
        view, stats = ViewSink(port=0), StatsSink(interval=0)
        for sink in (view, stats):
            sink.publish(Start({"run": "r"}))
        view_s = per_event(view.publish, events, 5)
        stats_s = per_event(stats.publish, events, 5)
        image = view.latest.snapshot().image
        assert image is not None
        png(image)  # the colour table, once
        began = time.perf_counter()
        for _ in range(5):
            png(image)
        png_ms = (time.perf_counter() - began) / 5 * 1e3
        label = f"{'x'.join(map(str, shape))} {np.dtype(dtype).name}"
        print(f"{label:>18} {nbytes / 2**20:6.2f} {view_s * 1e6:14.1f} {stats_s * 1e6:15.1f} "
              f"{view_s / stats_s:6.1f} {png_ms:13.1f}")


if __name__ == "__main__":
    main()
