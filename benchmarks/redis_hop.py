"""Throughput of one Redis stream hop: Arroyo's Redis links next to a bare redis-py loop.

Both hops are two processes around a redis-server this script starts (on a free port, no
persistence, in a temporary directory):

- Arroyo: a child process publishes Events with an :class:`OutputLink` to
  ``redis://...?stream=NAME`` (XADD with ``MAXLEN ~``); this process reads them with an
  :class:`InputLink` from ``redis://...?stream=NAME&group=bench`` (XREADGROUP, XACK after
  handling) inside a real :class:`Runtime`, as an operator service does, and times them in
  its sink. It runs twice: with the Redis links' default of one entry per message (what
  consumers outside Arroyo read), and with ``batch=64`` (up to 64 small Events an entry, as
  ZeroMQ links do by default; docs/protocol.md section 9), which only Arroyo readers split.
- bare redis-py: a child process XADDs ``{h: header, a0: array}`` (the same bytes and the
  same MAXLEN); this process XREADGROUPs them with the same COUNT, XACKs each batch with
  the next read (pipelined), and makes each array a numpy view. It runs twice: with
  ``redis.Redis.from_url(url)`` and redis-py's defaults ("bare"), and with the client
  options Arroyo's links use (``connection.client_options()``: among others a command
  packer that hands megabyte arrays to the socket uncopied, where redis-py's hiredis
  packer copies them twice) ("bare, tuned"), so the table separates what Arroyo adds per
  message from what its client settings save.

The rate is measured at the reader, from the first to the last event, so process start-up
does not count. Arroyo and bare runs alternate; the table shows the medians of the repeats
and the ratio of the medians (absolute figures move by tens of percent on a shared machine).

Run ``python benchmarks/redis_hop.py [--quick]``. ``--role produce`` is the child process
this script starts for itself.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np
import redis
from broker_timing import DTYPE, RING, rate, ring, time_arroyo

from arroyo_core.link import OutputLink
from arroyo_core.message import Event, Stop
from arroyo_core.transports.redis.connection import client_options
from arroyo_core.wire import encode
from services.processes import free_port

BATCH_BYTES = 8 * 2**20  # the stream receiver's default read size target
MAXLEN = 200_000
MODES = ["arroyo", "arroyo-batched", "bare", "bare-tuned"]

# name, frame shape (uint16), messages per run (full, quick)
SIZES = [
    ("1 KiB", (16, 32), 30_000, 8_000),
    ("1 MiB", (512, 1024), 600, 200),
]


def read_count(nbytes: int) -> int:
    """The COUNT the stream receiver settles on for entries of ``nbytes``."""
    return max(1, min(64, BATCH_BYTES // nbytes))


def bare_client(url: str, tuned: bool) -> redis.Redis:
    return redis.Redis.from_url(url, **(client_options() if tuned else {}))


# --- producers (child process) ------------------------------------------------------

def produce(mode: str, url: str, stream: str, shape: tuple[int, ...], count: int) -> None:
    frames = ring(shape)
    if mode.startswith("arroyo"):
        publisher = OutputLink(f"{url}?stream={stream}&maxlen={MAXLEN}",
                               batch=64 if mode == "arroyo-batched" else None)
        publisher.open()
        publisher.allow_batching()  # as every service's runtime does
        for index in range(count):
            publisher.publish(Event({"frame": index}, {"image": frames[index % RING]}))
        publisher.publish(Stop({"frames_sent": count}))
        publisher.close()
        return
    client = bare_client(url, tuned=mode == "bare-tuned")
    for index in range(count):
        # The same header bytes Arroyo would send, then the array as it is.
        header = encode(Event({"frame": index}, {"image": frames[index % RING]}),
                        src="bare", seq=index)[0]
        client.xadd(stream, {"h": header, "a0": memoryview(frames[index % RING]).cast("B")},
                    maxlen=MAXLEN, approximate=True)
    client.xadd(stream, {"stop": b"1"}, maxlen=MAXLEN, approximate=True)


# --- readers (this process) ------------------------------------------------------------

def start_producer(mode: str, url: str, stream: str, size: int, count: int,
                   ) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, "--role", "produce", "--mode", mode,
                             "--url", url, "--stream", stream, "--size", str(size),
                             "--count", str(count)])


def run_arroyo(url: str, stream: str, size: int, count: int, mode: str) -> dict[str, Any]:
    nbytes = int(np.prod(SIZES[size][1])) * DTYPE.itemsize
    result, taken = time_arroyo(f"{url}?stream={stream}&group=bench&consumer=c1",
                                lambda: start_producer(mode, url, stream, size, count), nbytes)
    return result


def run_bare(url: str, stream: str, size: int, count: int, tuned: bool = False
             ) -> dict[str, Any]:
    shape = SIZES[size][1]
    nbytes = int(np.prod(shape)) * DTYPE.itemsize
    client = bare_client(url, tuned)
    client.xgroup_create(stream, "bench", id="0", mkstream=True)
    producer = start_producer("bare-tuned" if tuned else "bare", url, stream, size, count)
    first = last = None
    received = 0
    acks: list[bytes] = []
    done = False
    while not done:
        pipe = client.pipeline(transaction=False)
        if acks:
            pipe.xack(stream, "bench", *acks)
        pipe.xreadgroup("bench", "c1", {stream: ">"}, count=read_count(nbytes), block=100)
        reply = pipe.execute()[-1]
        acks = []
        for entry_id, fields in (reply[0][1] if reply else []):
            acks.append(entry_id)
            if b"stop" in fields:
                done = True
                break
            image = np.frombuffer(fields[b"a0"], dtype=DTYPE).reshape(shape)
            last = time.perf_counter()
            if first is None:
                first = last
            received += image.ndim > 0
    client.xack(stream, "bench", *acks)
    producer.wait(30)
    client.close()
    return rate(first, last, received, nbytes)


def redis_server(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
         "--save", "", "--appendonly", "no", "--logfile", "redis.log"])
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return process, url
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages and repeats")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--role", choices=["produce"], help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--stream", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "produce":
        produce(args.mode, args.url, args.stream, SIZES[args.size][1], args.count)
        return
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is not installed")
    repeats = args.repeats or (3 if args.quick else 5)
    with tempfile.TemporaryDirectory() as directory:
        server, url = redis_server(directory)
        client = redis.Redis.from_url(url)
        version = client.info("server")["redis_version"]
        try:
            rows = []
            for size, (name, _, full, quick) in enumerate(SIZES):
                count = quick if args.quick else full
                results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
                for repeat in range(repeats):
                    for mode in MODES:
                        stream = f"hop-{mode}-{size}-{repeat}"
                        if mode.startswith("arroyo"):
                            result = run_arroyo(url, stream, size, count, mode)
                        else:
                            result = run_bare(url, stream, size, count, mode == "bare-tuned")
                        results[mode].append(result)
                        client.delete(stream)
                rows.append((name, count, results))
                print(f"{name}: done ({repeats} x {count} messages each way)", file=sys.stderr)
        finally:
            server.terminate()
            server.wait(10)
    print(f"\nRedis stream hop, 2 processes, redis-server {version} on loopback tcp, "
          f"redis-py {redis.__version__}; medians of {repeats} runs")
    print("| payload | messages | Arroyo msg/s (MB/s) | Arroyo, batch=64 msg/s (MB/s) "
          "| bare redis-py msg/s (MB/s) | bare, tuned msg/s (MB/s) | Arroyo / bare "
          "| Arroyo / bare, tuned | batch=64 / bare |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    summary = {}
    for name, count, results in rows:
        medians = {mode: {k: statistics.median(r[k] for r in results[mode])
                          for k in ("msgs_per_s", "mb_per_s")} for mode in MODES}
        ratios = [medians[mine]["msgs_per_s"] / medians[bare]["msgs_per_s"]
                  if medians[bare]["msgs_per_s"] else 0.0 for mine, bare in
                  (("arroyo", "bare"), ("arroyo", "bare-tuned"), ("arroyo-batched", "bare"))]
        cells = " | ".join(f"{medians[mode]['msgs_per_s']:,.0f} ({medians[mode]['mb_per_s']:,.1f})"
                           for mode in MODES)
        print(f"| {name} | {count} | {cells} | {ratios[0]:.2f} | {ratios[1]:.2f} "
              f"| {ratios[2]:.2f} |")
        summary[name] = {"medians": medians, "ratio_bare": ratios[0],
                         "ratio_bare_tuned": ratios[1], "ratio_batched_bare": ratios[2]}
    print("\n" + json.dumps(summary))


if __name__ == "__main__":
    main()
