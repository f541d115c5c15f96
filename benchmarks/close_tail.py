"""Does a source that ends its run lose the run's tail when the next hop is slow?

A `simulated` listener service sends one run of 16 MiB frames as fast as it can and exits;
a bare pyzmq PULL takes 7 ms per frame. Prints, per setting of the source's ZeroMQ
heartbeats, how many of the 152 messages (Start, 150 frames, Stop) arrived in each trial.

    python benchmarks/close_tail.py [--trials 10]
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from services.processes import free_port  # noqa: E402

EXPECTED = 152


def trial(extra: list[str]) -> int:
    port = free_port()
    pull = zmq.Context.instance().socket(zmq.PULL)
    pull.rcvhwm, pull.linger, pull.rcvtimeo = 100, 0, 15_000
    pull.connect(f"tcp://127.0.0.1:{port}")
    source = subprocess.Popen(
        [sys.executable, "-m", "services", "listener", "--source", "simulated",
         "-o", "shape=[2048,4096]", "-o", "frames=150", "-o", "rate=0",
         "--out", f"@tcp://127.0.0.1:{port}", "--log-level", "warning", *extra],
        cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL)
    received = 0
    try:
        while received < EXPECTED:
            pull.recv_multipart(copy=False)
            received += 1
            time.sleep(0.007)  # a slow consumer, so the source's queues are full at its end
    except zmq.Again:
        pass
    source.wait()
    pull.close()
    return received


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    for label, extra in (("heartbeats 1 s (default)", []),
                         ("heartbeats off", ["--out-option", "heartbeat_ms=0"])):
        counts = [trial(extra) for _ in range(args.trials)]
        short = sum(c < EXPECTED for c in counts)
        print(f"{label:26} {short}/{args.trials} trials lost messages; received {counts}",
              flush=True)


if __name__ == "__main__":
    main()
