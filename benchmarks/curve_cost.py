"""What CURVE costs: MB/s through one hop, with and without encryption, same run.

One hop is two processes on loopback tcp: this process sends, a child receives. The sender
binds (so it is the CURVE server, with the receiver's key on its allow-list) and the
receiver connects, as in an Arroyo chain. Two stacks are measured:

- ``arroyo``: a :class:`ZmqPublisher` publishing Events (a uint8 array of the given size)
  to a :class:`ZmqListener` that decodes them, the links a service uses;
- ``pyzmq``: bare ``send_multipart([header, array], copy=False)`` / ``recv_multipart``
  with the same socket security, for comparison.

A trial is timed at the sender from its first send until the receiver acknowledges the
trial's last message. Each (stack, size) runs a warm-up trial (handshake, page faults),
then plain and CURVE trials alternate, 5 each; the table shows medians and CURVE/plain.

It also times libsodium's ``crypto_box_afternm`` (what libzmq runs on every CURVE message,
on the sending side; the receiving side's ``crypto_box_open_afternm`` costs the same) on
one thread: a hop encrypts and decrypts every byte, so with N cores CURVE cannot carry more
than N x that rate / 2, whatever libzmq's threads do.

What can be tried against the cost, in both processes: ``--io-threads N`` (libzmq I/O
threads; a connection is served by one of them), ``--connections N`` (the pyzmq receiver
connects N times, so N I/O threads can each encrypt one connection's share; messages are
then no longer in order across connections), ``--malloc reuse`` (glibc keeps freed blocks up
to 32 MiB, so libzmq's fresh per-message CURVE buffers stop page-faulting).

Run ``python benchmarks/curve_cost.py [--repeats 5] [--stack arroyo|pyzmq|both]
[--sizes '1 MiB,16 MiB'] [--io-threads 2] [--connections 2] [--malloc reuse]``.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from arroyo_core.link import ZmqListener, ZmqPublisher
from arroyo_core.memory import keep_freed_blocks
from arroyo_core.message import Event
from arroyo_core.transports.zmq.curve import CurveLink, generate_key_pair
from services.processes import free_port

SIZES = [("1 KiB", 2**10), ("64 KiB", 2**16), ("1 MiB", 2**20), ("16 MiB", 2**24)]
TRIAL_BYTES = 256 * 2**20  # per trial, so that large messages run long enough to time
MAX_COUNT = 20_000  # small messages: bound by per-message CPU, 20k is plenty


@dataclass(frozen=True)
class Tuning:
    """What is tried against CURVE's cost, in both processes."""

    io_threads: int = 1
    connections: int = 1
    malloc: str = "default"

    def apply(self) -> zmq.Context:
        if self.malloc == "reuse" and not keep_freed_blocks():
            raise RuntimeError("mallopt failed: --malloc reuse needs glibc")
        return zmq.Context.instance(io_threads=self.io_threads)

    def __str__(self) -> str:
        return (f"io_threads {self.io_threads}, connections {self.connections}, "
                f"malloc {self.malloc}")


def libsodium() -> ctypes.CDLL | None:
    """The libsodium libzmq's CURVE uses: the one bundled with pyzmq's wheel, else the
    system's."""
    bundled = sorted((Path(zmq.__file__).parent.parent / "pyzmq.libs").glob("libsodium*"))
    found = str(bundled[0]) if bundled else ctypes.util.find_library("sodium")
    if not found:
        return None
    library = ctypes.CDLL(found)
    library.sodium_init()
    return library


def crypto_rate(size: int, seconds: float = 0.5) -> tuple[float, float]:
    """MB/s of libsodium's crypto_box_afternm (libzmq's CURVE per-message encryption; the
    decryption costs the same) and of a memcpy, one thread, messages of ``size``."""
    library = libsodium()
    if library is None:
        return float("nan"), float("nan")
    key, nonce = ctypes.create_string_buffer(32), ctypes.create_string_buffer(24)
    plain, boxed = ctypes.create_string_buffer(size + 32), ctypes.create_string_buffer(size + 32)
    rates = []
    for work in (lambda: library.crypto_box_afternm(boxed, plain, ctypes.c_ulonglong(size + 32),
                                                     nonce, key),
                 lambda: ctypes.memmove(boxed, plain, size)):
        count, began = 0, time.perf_counter()
        while time.perf_counter() - began < seconds:
            work()
            count += 1
        rates.append(count * size / (time.perf_counter() - began) / 1e6)
    return rates[0], rates[1]


def trial_count(size: int) -> int:
    return max(8, min(MAX_COUNT, TRIAL_BYTES // size))


def hwm_for(size: int) -> int:
    return max(2, min(100, 64 * 2**20 // size))  # at most ~64 MiB queued per side


def curve_options(keys: Path, sender: bool, curve: bool) -> dict[str, Any]:
    if not curve:
        return {}
    if sender:
        return {"curve_secret_key_file": str(keys / "server.key_secret"),
                "curve_allow": str(keys / "receiver.key")}
    return {"curve_secret_key_file": str(keys / "receiver.key_secret"),
            "curve_server_key_file": str(keys / "server.key")}


def receive(stack: str, endpoint: str, ack_endpoint: str, keys: Path, curve: bool,
            size: int, count: int, trials: int, tuning: Tuning) -> None:
    """Child process: receive ``trials`` x ``count`` messages, ack each trial's last."""
    context = tuning.apply()
    ack = context.socket(zmq.PUSH)
    ack.linger = 1000
    ack.connect(ack_endpoint)
    total = count * trials
    options = curve_options(keys, sender=False, curve=curve)
    if stack == "arroyo":
        listener = ZmqListener(">" + endpoint, hwm=hwm_for(size), max_message_bytes=2 * size
                               + 2**16, heartbeat_ms=0, **options)
        listener.open()
        received = 0

        def deliver(message: Any) -> None:
            nonlocal received
            received += 1
            if received % count == 0:
                ack.send(b"")
            if received == total:
                listener.stop()

        listener.start(deliver)
        listener.close()
    else:
        socket = context.socket(zmq.PULL)
        socket.rcvhwm = hwm_for(size)
        socket.linger = 0
        link = CurveLink.from_options("bench", endpoint, False,
                                      options.get("curve_secret_key_file"),
                                      options.get("curve_server_key_file"), None)
        if link is not None:
            link.secure(socket)
        for _ in range(tuning.connections):
            socket.connect(endpoint)
        copy = size < 2**16
        for received in range(1, total + 1):
            frames = socket.recv_multipart(copy=copy)
            np.frombuffer(frames[1] if copy else frames[1].buffer, np.uint8)
            if received % count == 0:
                ack.send(b"")
        socket.close()
    ack.close()


class Sender:
    """One configuration's sending side and its receiving child process."""

    def __init__(self, stack: str, keys: Path, curve: bool, size: int, trials: int,
                 tuning: Tuning) -> None:
        self.stack, self.size, self.count = stack, size, trial_count(size)
        port, ack_port = free_port(), free_port()
        endpoint = f"tcp://127.0.0.1:{port}"
        self.ack = zmq.Context.instance().socket(zmq.PULL)
        self.ack.linger = 0
        self.ack.bind(f"tcp://127.0.0.1:{ack_port}")
        options = curve_options(keys, sender=True, curve=curve)
        self.array = np.random.default_rng(0).integers(0, 255, size, dtype=np.uint8)
        if stack == "arroyo":
            self.publisher = ZmqPublisher("@" + endpoint, hwm=hwm_for(size), heartbeat_ms=0,
                                          linger_ms=0, **options)
            self.publisher.open()
            self.event = Event({"frame": 0}, {"image": self.array})
        else:
            self.socket = zmq.Context.instance().socket(zmq.PUSH)
            self.socket.sndhwm = hwm_for(size)
            self.socket.linger = 0
            self.link = CurveLink.from_options("bench", endpoint, True,
                                               options.get("curve_secret_key_file"), None,
                                               options.get("curve_allow"))
            if self.link is not None:
                self.link.secure(self.socket)
            self.socket.bind(endpoint)
        self.child = multiprocessing.get_context("spawn").Process(
            target=receive, args=(stack, endpoint, f"tcp://127.0.0.1:{ack_port}", keys, curve,
                                  size, self.count, trials, tuning), daemon=True)
        self.child.start()

    def trial(self) -> float:
        """Send one trial; return MB/s (10^6 bytes) of payload delivered."""
        began = time.perf_counter()
        if self.stack == "arroyo":
            for _ in range(self.count):
                self.publisher.publish(self.event)
        else:
            copy = self.size < 2**16
            for _ in range(self.count):
                self.socket.send_multipart([b"h", self.array], copy=copy)
        if not self.ack.poll(120_000):
            raise RuntimeError("the receiver did not acknowledge the trial in 120 s")
        self.ack.recv()
        return self.count * self.size / (time.perf_counter() - began) / 1e6

    def close(self) -> None:
        self.child.join(30)
        if self.stack == "arroyo":
            self.publisher.close()
        else:
            self.socket.close()
            if self.link is not None:
                self.link.release()
        self.ack.close()


def measure(stack: str, keys: Path, size: int, repeats: int,
            tuning: Tuning) -> dict[bool, list[float]]:
    senders = {curve: Sender(stack, keys, curve, size, repeats + 1, tuning)
               for curve in (False, True)}
    try:
        for sender in senders.values():
            sender.trial()  # warm-up
        rates: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(repeats):
            for curve, sender in senders.items():
                rates[curve].append(sender.trial())
        return rates
    finally:
        for sender in senders.values():
            sender.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--stack", choices=["arroyo", "pyzmq", "both"], default="both")
    parser.add_argument("--sizes", default=",".join(name for name, _ in SIZES),
                        help="which sizes, e.g. '1 MiB,16 MiB'")
    parser.add_argument("--io-threads", type=int, default=1,
                        help="libzmq I/O threads of each process's context")
    parser.add_argument("--connections", type=int, default=1,
                        help="pyzmq stack: connections from the receiver to the sender")
    parser.add_argument("--malloc", choices=["default", "reuse"], default="default",
                        help="reuse: keep large freed blocks for reuse (mallopt), so "
                             "libzmq's per-message CURVE buffers do not page-fault")
    args = parser.parse_args()
    tuning = Tuning(args.io_threads, args.connections, args.malloc)
    tuning.apply()
    logging.basicConfig(level=logging.ERROR)  # peers coming and going between trials
    stacks = ["arroyo", "pyzmq"] if args.stack == "both" else [args.stack]
    print(f"pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}, medians of {args.repeats}, "
          "one hop over loopback tcp, MB/s = 10^6 bytes of payload per second; "
          f"{tuning}")
    cores = len(os.sched_getaffinity(0))
    print(f"\nlibsodium on one thread (what CURVE adds per byte; {cores} core(s) here):")
    print("| size | crypto_box MB/s | memcpy MB/s | CURVE ceiling MB/s (cores x crypto / 2) |")
    print("|---|---:|---:|---:|")
    for name, size in SIZES:
        if name in args.sizes.split(","):
            crypto, copy = crypto_rate(size)
            print(f"| {name} | {crypto:,.0f} | {copy:,.0f} | {cores * crypto / 2:,.0f} |")
    print()
    print("| stack | size | messages/trial | plain MB/s | CURVE MB/s | CURVE / plain |")
    print("|---|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as directory:
        keys = Path(directory)
        generate_key_pair("server", keys)
        generate_key_pair("receiver", keys)
        for stack in stacks:
            for name, size in SIZES:
                if name not in args.sizes.split(","):
                    continue
                rates = measure(stack, keys, size, args.repeats, tuning)
                plain, curve = (statistics.median(rates[c]) for c in (False, True))
                print(f"| {stack} | {name} | {trial_count(size)} | {plain:,.0f} | "
                      f"{curve:,.0f} | {curve / plain:.2f} |", flush=True)


if __name__ == "__main__":
    main()
