"""What one output link costs its sending thread per message, plain against reliable.

The source side of benchmarks/reliable_throughput.py's chain without the chain: this process
publishes Events of pre-made arrays through an :class:`~arroyo_core.link.OutputLink` to a
real sink service (``arroyo publisher`` with :class:`chain_throughput.TimingSink`), and
measures the sending thread's CPU time (``time.thread_time``) per message. No runtime and no
other stage share its core, so a few pairs resolve a few microseconds, where the chain's
rate needs 30 pairs or more to tell 5% (docs/reliability.md section 6); the chain runs the
same steps about twice as slowly, its caches emptied by the copies.

Run ``python benchmarks/link_cost.py [--size '1 MiB'] [--pairs 5] [--profile]``;
``--profile`` adds cProfile's Python calls per message, per mode.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chain_throughput import DTYPE, HERE, RING, SIZES, Child, _free_address, _stop  # noqa: E402

from arroyo_core.link import OutputLink  # noqa: E402
from arroyo_core.message import Event, Start, Stop  # noqa: E402


def measure(shape: tuple[int, ...], count: int, reliable: bool,
            profile: cProfile.Profile | None = None) -> float:
    """The sending thread's CPU us per Event of one run of ``count``."""
    address = _free_address()
    into = ["--in-option", "reliable=true"] if reliable else []
    sink = Child([sys.executable, "-m", "services", "publisher", "--name", "sink",
                  "--in", ">" + address, "--sink", "chain_throughput:TimingSink",
                  "--log-level", "warning", *into],
                 {"PYTHONPATH": f"{HERE}:{HERE.parent}"})
    try:
        sink.wait_for("READY", 30)
        link = OutputLink("@" + address, reliable=reliable)
        link.open()
        ring = [np.full(shape, i, DTYPE) for i in range(RING)]
        link.publish(Start({"run": "cost"}))
        if profile is not None:
            profile.enable()
        began = time.thread_time()
        for frame in range(count):
            link.publish(Event({"run": "cost", "frame": frame}, {"image": ring[frame % RING]}))
        cpu = time.thread_time() - began
        if profile is not None:
            profile.disable()
        link.publish(Stop({"run": "cost"}))
        sink.wait_for("RESULT", 120)
        link.close()
        return cpu * 1e6 / count
    finally:
        _stop([sink])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="1 MiB", help="one of: " + ", ".join(s[0] for s in SIZES))
    parser.add_argument("--pairs", type=int, default=5, help="plain/reliable pairs [5]")
    parser.add_argument("--count", type=int, default=3000, help="Events per run [3000]")
    parser.add_argument("--profile", action="store_true", help="also count Python calls")
    args = parser.parse_args()
    shape = next(s[1] for s in SIZES if s[0] == args.size)
    costs: dict[bool, list[float]] = {False: [], True: []}
    print(f"sending thread's CPU us per {args.size} Event, one output link to a sink service")
    for pair in range(args.pairs):
        for reliable in ((False, True) if pair % 2 == 0 else (True, False)):
            costs[reliable].append(measure(shape, args.count, reliable))
        print(f"  pair {pair + 1}: plain {costs[False][-1]:6.1f}   reliable "
              f"{costs[True][-1]:6.1f}", flush=True)
    plain, reliable_ = (statistics.median(costs[mode]) for mode in (False, True))
    print(f"medians: plain {plain:.1f} us, reliable {reliable_:.1f} us "
          f"(+{reliable_ - plain:.1f})")
    if args.profile:
        for reliable in (False, True):
            profile = cProfile.Profile()
            measure(shape, args.count, reliable, profile)
            calls = pstats.Stats(profile).total_calls / args.count  # type: ignore[attr-defined]
            print(f"{'reliable' if reliable else 'plain'}: {calls:.1f} Python calls per Event")


if __name__ == "__main__":
    main()
