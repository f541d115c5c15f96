"""Deployment figures: restart time under supervisor after kill -9, frames lost on kill -9
and on `supervisorctl stop all`, and recovery time after a 3 s link outage between hosts.

The figures come from the integration tests that exercise exactly these situations for real
(a supervisord running the project's configuration; three network namespaces, which needs
root). This script runs them ``--repeat`` times and prints each run's figures and the medians.

    python benchmarks/deploy_figures.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = [
    "tests/integration/test_supervisor.py::"
    "test_kill_9_restarts_and_counts_losses_and_stop_all_loses_nothing",
    "tests/integration/test_netns.py",
]
FIGURES = {
    "new pid after kill -9 (s)": r"new pid after ([0-9.]+) s",
    "READY after kill -9 (s)": r"READY after ([0-9.]+) s",
    "stream resumed after kill -9 (s)": r"stream resumed at the sink after ([0-9.]+) s",
    "frames lost on kill -9": r"frames lost on kill -9: ([0-9]+) of",
    "frames lost on stop all": r"`supervisorctl stop all`: ([0-9]+) of",
    "stop all took (s)": r"all stopped in ([0-9.]+) s",
    "frames resumed after link up (s)": r"frames resumed ([0-9.]+) s after",
    "frames lost in 3 s link outage": r"run 2 lost ([0-9]+) of",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    values: dict[str, list[float]] = {name: [] for name in FIGURES}
    for attempt in range(args.repeat):
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", *TESTS],
                                cwd=ROOT, capture_output=True, text=True)
        lines = [line for line in result.stdout.splitlines()
                 if line.startswith(("supervisor restart", "frames lost", "three namespaces"))]
        print(f"run {attempt + 1}: " + ("\n       ".join(lines) or result.stdout[-2000:]))
        for name, pattern in FIGURES.items():
            found = re.search(pattern, result.stdout)
            if found:
                values[name].append(float(found.group(1)))
    print("\nmedian of", args.repeat, "runs:")
    for name, got in values.items():
        print(f"  {name:36} {statistics.median(got):8.2f}" if got else f"  {name:36} (no figure)")


if __name__ == "__main__":
    main()
