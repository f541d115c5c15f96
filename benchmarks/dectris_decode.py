"""DECTRIS stream v2: does the ``dectris`` source decode a 4 Mpixel bslz4 image at least as
fast as one core decompresses it with the library it uses (bitshuffle)?

Three figures, each the median of ``--repeats`` alternating rounds of ``--images`` images,
in images/s and GB/s of decompressed pixels:

- ``bitshuffle, one core``: ``bitshuffle.decompress_lz4`` on the image's blocks, in a loop
  (OMP_NUM_THREADS=1, set before bitshuffle loads): the baseline.
- ``decode, one thread``: the listener's whole decoding of the message (CBOR, the block
  walk that keeps a corrupt stream from being read past its end, decompression, the typed
  array and its shape), in a loop in this process.
- ``decode, N threads``: the same on ``--threads`` threads in this process, as the
  source's ``threads`` option decodes (bitshuffle gives up the GIL while it works).
- ``PULL only``: a plain PULL socket receiving the same messages without decoding them:
  what the sender and ZeroMQ allow, the ceiling of the next two on this machine.
- ``listener, threads=N``: the ``dectris`` source's receive loop over ZeroMQ (ipc), fed by
  a PUSH socket in another process that sends the same compressed image under one image
  id after another; counted from the first Event delivered to the last.

The image is 2048x2048 uint16 of Poisson noise with mean 2 (a weakly lit detector; about
5x compression), in 8 KiB blocks, as DECTRIS detectors send it.
``python benchmarks/dectris_decode.py [--repeats 5] [--images 200] [--threads 2]``
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor


def sender(address: str, chunk: bytes, images: int) -> None:
    """A detector's PUSH socket: the same compressed image under ``images`` image ids."""
    import cbor2
    import zmq

    from arroyo_core.dectris.cbor import COMPRESSED, ROW_MAJOR, encode

    tagged = cbor2.CBORTag(ROW_MAJOR, [[2048, 2048], cbor2.CBORTag(
        69, cbor2.CBORTag(COMPRESSED, ["bslz4", 2, chunk]))])  # 69: uint16, little-endian
    common = {"series_id": 1, "series_unique_id": "BENCH"}
    # The map without image_id, encoded once; each message adds the pair image_id: N (a
    # map of 4 pairs, 0xa4, becomes one of 5), so the sender is not what is measured.
    body = encode({"type": "image", **common, "data": {"t": tagged}})
    assert body[0] == 0xA4

    context = zmq.Context()
    socket = context.socket(zmq.PUSH)
    socket.bind(address)
    socket.send(encode({"type": "start", **common, "number_of_images": images}))
    for number in range(images):
        socket.send(b"".join([b"\xa5", body[1:], cbor2.dumps("image_id"),
                              cbor2.dumps(number)]))
    socket.send(encode({"type": "end", **common}))
    socket.close(linger=-1)
    context.term()  # returns once every message has gone


def bare_pull(address: str, process) -> float:  # type: ignore[no-untyped-def]
    """Receive a round on a plain PULL socket: the rate the sender and ZeroMQ allow."""
    import zmq

    socket = zmq.Context.instance().socket(zmq.PULL)
    socket.rcvtimeo = 30_000  # a sender that failed: an error, not a wait for ever
    socket.connect(address)
    socket.recv()  # start
    began = None
    count = 0
    while True:
        frame = socket.recv(copy=False)
        if len(frame) < 1000:  # end
            break
        count += 1
        if began is None:
            began = time.perf_counter()
        last = time.perf_counter()
    socket.close(linger=0)
    process.join()
    return (last - began) * count / (count - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                      formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--images", type=int, default=200, help="per round")
    parser.add_argument("--threads", type=int, default=2, help="the listener's decode threads")
    args = parser.parse_args()
    if os.environ.get("OMP_NUM_THREADS") != "1":  # OpenMP reads it as bitshuffle loads
        os.execve(sys.executable, [sys.executable, *sys.argv],
                  {**os.environ, "OMP_NUM_THREADS": "1"})

    import bitshuffle
    import numpy as np

    from arroyo_core.dectris import DectrisListener
    from arroyo_core.dectris.cbor import Decoder, encode, encode_array
    from arroyo_core.message import Stop

    image = np.random.default_rng(0).poisson(2.0, (2048, 2048)).astype(np.uint16)
    tagged = encode_array(image, "bslz4")
    chunk = tagged.value[1].value.value[2]
    blocks, block = np.frombuffer(chunk, np.uint8, offset=12), 8192 // image.itemsize
    body = {"type": "image", "data": {"t": tagged}}
    message = encode({**body, "series_id": 1, "series_unique_id": "B", "image_id": 0})
    decoder = Decoder()
    assert np.array_equal(decoder.decode(message)["data"]["t"], image)
    print(f"2048x2048 uint16, {image.nbytes / len(chunk):.1f}x compressed "
          f"({len(message) / 1e6:.2f} MB a message); medians of {args.repeats} rounds of "
          f"{args.images} images; OMP_NUM_THREADS=1")

    def bare() -> float:
        began = time.perf_counter()
        for _ in range(args.images):
            bitshuffle.decompress_lz4(blocks, image.shape, image.dtype, block)
        return time.perf_counter() - began

    def decode() -> float:
        began = time.perf_counter()
        for _ in range(args.images):
            decoder.decode(message)
        return time.perf_counter() - began

    def decode_threads() -> float:
        """The same decoding on ``args.threads`` threads, as the source's ``threads``
        option runs it (bitshuffle gives up the GIL while it decompresses)."""
        with ThreadPoolExecutor(args.threads) as pool:
            began = time.perf_counter()
            for _ in pool.map(lambda _: decoder.decode(message), range(args.images)):
                pass
            return time.perf_counter() - began

    def listener(threads: int) -> float:
        """Seconds per ``args.images`` images through the source (threads 0: a bare PULL
        socket that only receives them, what the sender and the socket allow)."""
        with tempfile.TemporaryDirectory() as directory:
            address = f"ipc://{directory}/dectris"
            process = multiprocessing.get_context("spawn").Process(
                target=sender, args=(address, chunk, args.images))
            process.start()
            if not threads:
                return bare_pull(address, process)
            source = DectrisListener(f">{address}", threads=threads)
            source.open()
            times: list[float] = []
            done = threading.Event()

            def deliver(got):
                times.append(time.perf_counter())
                if isinstance(got, Stop):
                    done.set()

            thread = threading.Thread(target=source.start, args=(deliver,))
            thread.start()
            deadline = time.monotonic() + 120
            while not done.wait(1):
                assert process.is_alive() or process.exitcode == 0, "the sender failed"
                assert time.monotonic() < deadline, f"no Stop after 120 s: {source.status()}"
            source.stop()
            thread.join()
            source.close()
            process.join()
            events = len(times) - 2
            assert events == args.images, (f"{events} of {args.images} images arrived: "
                                           f"{source.status()}")
            return (times[-2] - times[1]) * args.images / (events - 1)

    ways = {"bitshuffle, one core": bare, "decode, one thread": decode,
            f"decode, {args.threads} threads": decode_threads,
            "PULL only, no decoding": lambda: listener(0),
            "listener, threads=1": lambda: listener(1),
            f"listener, threads={args.threads}": lambda: listener(args.threads)}
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.repeats):
        for name, way in ways.items():
            seconds[name].append(way())
    base = args.images / statistics.median(seconds["bitshuffle, one core"])
    print(f"{'':<24} {'images/s':>9} {'GB/s':>6} {'ratio':>6}   (range of images/s)")
    for name, times in seconds.items():
        rate = args.images / statistics.median(times)
        low, high = args.images / max(times), args.images / min(times)
        print(f"{name:<24} {rate:>9.0f} {rate * image.nbytes / 1e9:>6.2f} {rate / base:>6.2f}"
              f"   ({low:.0f}-{high:.0f})")


if __name__ == "__main__":
    main()
