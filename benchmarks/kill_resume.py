"""Loss per kill and resume time after kill -9 of a chain's middle stage, PUSH and PUB.

The situation of tests/integration/test_every_loss.py (tests/support/kills.py):
a source -> passthrough -> `--sink zmq` forwarder chain under a real supervisord, 10,000
frames of 64x64 uint16 at 500 frames/s, an independent receiver (raw pyzmq + msgpack) at
the end, and the middle stage killed five times: once after it had run a while, twice as
soon as frames flowed again through its new instance (about half a second after its
start), once 2 s after that, and once more at once. Prints, per kill, how long the killed instance
had been up, the frames lost with it (counted by the receiver), and how long until frames
reached the receiver again; then the true loss against what `arroyo status` reported.

Runs against whichever checkout is first on PYTHONPATH (its code and its
deploy/supervisor/supervisord.conf), e.g. to compare with another branch:

    python benchmarks/kill_resume.py [--repeat 1] [--patterns push pub]
    python benchmarks/kill_resume.py --reliable --frames 40000 --rate 4000

``--reliable`` puts ``reliable = true`` in the chain file (docs/reliability.md section 6)
and has the source stamp each frame's crc32, which the receiver checks: the loss and the
duplicates must then be 0. PUB/SUB links are not reliable, so it runs PUSH only.
    cd ../main && PYTHONPATH=$PWD python /path/to/this/benchmarks/kill_resume.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
# The scenario, shared with the test, from tests.support: appended to the path, so that
# `services` is still the one of the checkout PYTHONPATH names (and so is tests.support,
# if that checkout's tests are a package; an older checkout's are not, and this one's is
# used).
sys.path.append(str(HERE))

import services  # noqa: E402  (whichever checkout PYTHONPATH names)
from tests.support.kills import describe, run_kills  # noqa: E402

QUICK_S = 1.5  # a kill this soon after its instance started is a "quick" one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--patterns", nargs="+", choices=["push", "pub"],
                        help="[push pub; with --reliable, push]")
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=500.0, help="frames per second")
    parser.add_argument("--reliable", action="store_true", help="a reliable chain")
    args = parser.parse_args()
    if args.patterns is None:
        args.patterns = ["push"] if args.reliable else ["push", "pub"]
    elif args.reliable and "pub" in args.patterns:
        parser.error("--reliable: PUB/SUB links cannot be reliable (docs/reliability.md "
                     "section 6); use --patterns push")
    root = Path(services.__file__).resolve().parents[1]
    print(f"code and supervisord.conf from {root}")
    for pattern in args.patterns:
        slow, quick, resumes, reported_ok = [], [], [], []
        fatal = 0
        for attempt in range(args.repeat):
            with tempfile.TemporaryDirectory(prefix="kill-resume-") as directory:
                outcome = run_kills(Path(directory), pattern, frames=args.frames,
                                    rate=args.rate, root=root, reliable=args.reliable)
            print(f"\nrun {attempt + 1}: " + describe(outcome), flush=True)
            if args.reliable:
                print(f"  duplicates at the receiver {outcome.duplicates}, crc32 checked "
                      f"{outcome.crc}", flush=True)
            for kill in outcome.kills:
                (quick if kill.since_start < QUICK_S else slow).append(kill.lost)
                if kill.resumed is not None:
                    resumes.append(kill.resumed)
            fatal += sum(state == "FATAL" for state in outcome.states.values())
            if outcome.reported:
                reported_ok.append(sum(r["missing"] for r in outcome.reported.values())
                                   == outcome.true_loss)
        print(f"\n{pattern}: frames lost per kill: {_summary(slow)} after the stage had run "
              f"a while; {_summary(quick)} within {QUICK_S} s of its start; resumed at the "
              f"receiver after {_summary(resumes, 's')} (max "
              f"{max(resumes, default=float('nan')):.2f} s); stages FATAL at the end: {fatal}; "
              f"reported loss = true loss: "
              f"{f'{sum(reported_ok)} of {len(reported_ok)} runs' if reported_ok else 'n/a'}",
              flush=True)


def _summary(values: list, unit: str = "") -> str:
    """'median 4 of 3 [2, 4, 6]' for counts, 'median 0.57 s of 10' for times."""
    if not values:
        return "n/a"
    median = statistics.median(values)
    if unit:
        return f"median {median:.2f} {unit} of {len(values)}"
    return f"median {median:g} of {len(values)} {values}"


if __name__ == "__main__":
    main()
