"""Throughput of one AMQP hop: Arroyo's AMQP links next to a bare pika loop with the same
settings.

Both hops are two processes around a private rabbitmq-server this script starts (its own
node, ports and files in a temporary directory: tests.support.rabbitmq_server):

- Arroyo: a child process publishes Events with an :class:`OutputLink` to
  ``amqp://...?queue=NAME`` (publisher confirms, mandatory, one message per Event); this
  process reads them with an :class:`InputLink` (prefetch 256, or 64 MiB worth; manual
  acknowledgements once handled) inside a real :class:`Runtime`, as an operator service
  does, and times them in its sink.
- bare pika: a child process publishes, on a ``BlockingConnection`` with
  ``confirm_delivery()`` and ``mandatory=True``, a body made of the same header bytes and
  the array (a 4-byte header length, the header, the array: one join, as Arroyo's packing
  is one copy); this process consumes with the same prefetch, acknowledges each message
  (``multiple=True``) and makes each array a numpy view.

Queues are transient (not durable) in both. Arroyo's AMQP links keep freed blocks for reuse
(:mod:`arroyo_core.memory`: pika makes new buffers for every message, and faulting them in
costs half of its CPU at 1 MiB); ``--bare-keeps-blocks`` has the bare producer do the same
(the reader is one process for both, so it keeps them for both once Arroyo's ran).
The rate is measured at the reader, from the first to the last event, so process start-up
does not count. Arroyo and bare runs alternate; the table shows the medians of the repeats
and the ratio of the medians (absolute figures move by tens of percent on a shared machine).

Run ``python benchmarks/amqp_hop.py [--quick] [--bare-keeps-blocks]``. ``--role produce``
is the child process this script starts for itself.
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pika

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from broker_timing import DTYPE, RING, rate, ring, time_arroyo  # noqa: E402

from arroyo_core.link import OutputLink  # noqa: E402
from arroyo_core.memory import keep_freed_blocks  # noqa: E402
from arroyo_core.message import Event, Stop  # noqa: E402
from arroyo_core.wire import encode  # noqa: E402
from tests.support.rabbitmq_server import RabbitMQServer, installed  # noqa: E402

PREFETCH, PREFETCH_BYTES = 256, 64 * 2**20  # the receiver's defaults
MODES = ["arroyo", "bare"]
LENGTH = struct.Struct("<I")

# name, frame shape (uint16), messages per run (full, quick)
SIZES = [
    ("1 KiB", (16, 32), 10_000, 3_000),
    ("1 MiB", (512, 1024), 400, 150),
]


def prefetch(nbytes: int) -> int:
    """The prefetch the receiver settles on for messages of ``nbytes``."""
    return max(1, min(PREFETCH, PREFETCH_BYTES // nbytes))


def connect(url: str) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.URLParameters(url))


# --- producers (child process) ------------------------------------------------------

def produce(mode: str, url: str, queue: str, shape: tuple[int, ...], count: int,
            keep_blocks: bool) -> None:
    frames = ring(shape)
    if keep_blocks:
        keep_freed_blocks()
    if mode == "arroyo":
        publisher = OutputLink(f"{url}?queue={queue}")
        publisher.open()
        for index in range(count):
            publisher.publish(Event({"frame": index}, {"image": frames[index % RING]}))
        publisher.publish(Stop({"frames_sent": count}))
        publisher.close()
        return
    connection = connect(url)
    channel = connection.channel()
    channel.queue_declare(queue)
    channel.confirm_delivery()
    for index in range(count):
        header = encode(Event({"frame": index}, {"image": frames[index % RING]}),
                        src="bare", seq=index)[0]
        body = b"".join([LENGTH.pack(len(header)), header,
                         memoryview(frames[index % RING]).cast("B")])
        channel.basic_publish("", queue, body, mandatory=True)
    channel.basic_publish("", queue, b"stop", mandatory=True)
    connection.close()


# --- readers (this process) ------------------------------------------------------------

KEEP_BLOCKS: list[str] = []  # ["--keep-blocks"] with --bare-keeps-blocks


def start_producer(mode: str, url: str, queue: str, size: int, count: int,
                   ) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, "--role", "produce", "--mode", mode,
                             "--url", url, "--queue", queue, "--size", str(size),
                             "--count", str(count), *KEEP_BLOCKS])


def run_arroyo(url: str, queue: str, size: int, count: int) -> dict[str, Any]:
    nbytes = int(np.prod(SIZES[size][1])) * DTYPE.itemsize
    result, taken = time_arroyo(f"{url}?queue={queue}",
                                lambda: start_producer("arroyo", url, queue, size, count), nbytes)
    if taken != count:
        raise RuntimeError(f"the Arroyo run lost messages: {taken} of {count}")
    return result


def run_bare(url: str, queue: str, size: int, count: int) -> dict[str, Any]:
    shape = SIZES[size][1]
    nbytes = int(np.prod(shape)) * DTYPE.itemsize
    connection = connect(url)
    channel = connection.channel()
    channel.queue_declare(queue)
    channel.basic_qos(prefetch_count=prefetch(nbytes))
    producer = start_producer("bare", url, queue, size, count)
    first = last = None
    received = 0
    for method, _, body in channel.consume(queue, inactivity_timeout=0.1):
        if method is None:
            continue
        channel.basic_ack(method.delivery_tag, multiple=True)
        if body == b"stop":
            break
        (length,) = LENGTH.unpack_from(body)
        image = np.frombuffer(body, DTYPE, offset=LENGTH.size + length).reshape(shape)
        last = time.perf_counter()
        if first is None:
            first = last
        received += image.ndim > 0
    channel.cancel()
    connection.close()
    producer.wait(30)
    return rate(first, last, received, nbytes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages and repeats")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--only", choices=[name for name, *_ in SIZES],
                        help="one payload size only")
    parser.add_argument("--bare-keeps-blocks", action="store_true",
                        help="the bare producer keeps freed blocks too, as Arroyo's links do")
    parser.add_argument("--keep-blocks", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--role", choices=["produce"], help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--queue", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "produce":
        produce(args.mode, args.url, args.queue, SIZES[args.size][1], args.count,
                args.keep_blocks)
        return
    if args.bare_keeps_blocks:
        KEEP_BLOCKS.append("--keep-blocks")
    if not installed():
        sys.exit("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
    repeats = args.repeats or (3 if args.quick else 5)
    with tempfile.TemporaryDirectory() as directory:
        server = RabbitMQServer(Path(directory))
        server.start()
        url = server.url()
        try:
            rows = []
            for size, (name, _, full, quick) in enumerate(SIZES):
                if args.only and name != args.only:
                    continue
                count = quick if args.quick else full
                results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
                for repeat in range(repeats):
                    for mode in MODES:
                        queue = f"hop-{mode}-{size}-{repeat}"
                        if mode == "arroyo":
                            result = run_arroyo(url, queue, size, count)
                        else:
                            result = run_bare(url, queue, size, count)
                        results[mode].append(result)
                rows.append((name, count, results))
                print(f"{name}: done ({repeats} x {count} messages each way)", file=sys.stderr)
        finally:
            server.close()
    print(f"\nAMQP hop, 2 processes, rabbitmq-server (Debian's) on loopback tcp, pika "
          f"{pika.__version__}, confirms and manual acks; medians of {repeats} runs; the bare "
          f"producer {'keeps' if args.bare_keeps_blocks else 'does not keep'} freed blocks")
    print("| payload | messages | Arroyo msg/s (MB/s) | bare pika msg/s (MB/s) | Arroyo / bare |")
    print("|---|---:|---:|---:|---:|")
    summary = {}
    for name, count, results in rows:
        medians = {mode: {k: statistics.median(r[k] for r in results[mode])
                          for k in ("msgs_per_s", "mb_per_s")} for mode in MODES}
        bare = medians["bare"]["msgs_per_s"]
        ratio = medians["arroyo"]["msgs_per_s"] / bare if bare else 0.0
        each = [round(a["msgs_per_s"] / b["msgs_per_s"], 2) if b["msgs_per_s"] else 0.0
                for a, b in zip(results["arroyo"], results["bare"], strict=True)]
        cells = " | ".join(f"{medians[mode]['msgs_per_s']:,.0f} ({medians[mode]['mb_per_s']:,.1f})"
                           for mode in MODES)
        print(f"| {name} | {count} | {cells} | {ratio:.2f} |")
        summary[name] = {"medians": medians, "ratio": ratio, "ratio_per_repeat": each}
    print("\n" + json.dumps(summary))


if __name__ == "__main__":
    main()
