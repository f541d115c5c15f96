"""The integrate operator's throughput per worker, next to pyFAI alone in a plain loop.

Per worker: one ``arroyo operator --operator integrate`` service process; this process
sends it powder-ring frames (uint16 photon counts, :mod:`arroyo_core.powder_source`) over
ipc and receives its curves. Its rate is counted from the first curve to the last, so the
integrator's build at each Start (pyFAI's look-up table) is left out, as it is from the
baseline: ``integrate1d`` on the same frames with the same options, in a plain loop in this
process after one warm-up call. Rounds alternate between the two; medians of ``--repeats``.

OMP_NUM_THREADS is 1 (``--threads``) in both, as for one worker of a pool on a shared
machine; ``--threads 0`` leaves pyFAI's OpenMP default (all cores) to both.
``python benchmarks/integrate_throughput.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import sys
import tempfile
import threading
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bins", type=int, default=1000)
    parser.add_argument("--method", default="csr")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.threads and os.environ.get("OMP_NUM_THREADS") != str(args.threads):
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)

    import pyFAI

    from arroyo_core import Event, Start, Stop
    from arroyo_core.link import ZmqListener, ZmqPublisher
    from arroyo_core.powder_source import powder_frames, powder_geometry
    from services.processes import ServiceProcess

    frames_n, repeats = (30, 3) if args.quick else (args.frames, args.repeats)
    shapes = [(1024, 1024)] if args.quick else [(1024, 1024), (2048, 2048)]
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'default')}, bins "
          f"{args.bins}, method {args.method}, {frames_n} frames per round, medians of "
          f"{repeats} rounds")
    with tempfile.TemporaryDirectory() as scratch:
        into, out = f"ipc://{scratch}/in", f"ipc://{scratch}/out"
        worker = ServiceProcess("operator", [
            "--in", "@" + into, "--out", "@" + out, "--operator", "integrate",
            "-o", f"bins={args.bins}", "-o", f"method={args.method}"], name="integrate")
        worker.wait_ready(timeout=60)
        results: queue.Queue = queue.Queue()
        listener = ZmqListener(">" + out)
        listener.open()
        thread = threading.Thread(target=listener.start, args=(results.put,), daemon=True)
        thread.start()
        sender = ZmqPublisher(">" + into)
        sender.open()
        try:
            for shape in shapes:
                geometry = powder_geometry(shape)
                ring = powder_frames(shape, 4, geometry=geometry)

                def service_round(shape=shape, geometry=geometry, ring=ring) -> float:
                    sender.publish(Start({"run": "bench", "shape": list(shape),
                                          "geometry": geometry}))
                    for i in range(frames_n):
                        sender.publish(Event({"frame": i}, {"image": ring[i % 4]}))
                    sender.publish(Stop({"frames_sent": frames_n}))
                    arrivals = []
                    while True:
                        message = results.get(timeout=300)
                        if message.kind == "event":
                            arrivals.append(time.perf_counter())
                        elif message.kind == "stop":
                            break
                    assert len(arrivals) == frames_n, f"{len(arrivals)} of {frames_n} curves"
                    return (frames_n - 1) / (arrivals[-1] - arrivals[0])

                def loop_round(geometry=geometry, ring=ring) -> float:
                    integrator = pyFAI.load(geometry)
                    integrator.integrate1d(ring[0], args.bins, unit="q_nm^-1",
                                           method=args.method)  # warm-up: the tables
                    began = time.perf_counter()
                    for i in range(frames_n):
                        integrator.integrate1d(ring[i % 4], args.bins, unit="q_nm^-1",
                                               method=args.method)
                    return frames_n / (time.perf_counter() - began)

                rates: dict[str, list[float]] = {"service": [], "loop": []}
                for _ in range(repeats):
                    rates["loop"].append(loop_round())
                    rates["service"].append(service_round())
                loop, service = (statistics.median(rates[k]) for k in ("loop", "service"))
                print(f"{shape[0]}x{shape[1]} ({shape[0] * shape[1] / 1e6:.1f} Mpixel): "
                      f"pyFAI loop {loop:7.1f} frames/s, integrate service {service:7.1f} "
                      f"frames/s, ratio {service / loop:.2f}  (rounds: loop "
                      f"{[round(r) for r in rates['loop']]}, service "
                      f"{[round(r) for r in rates['service']]})")
        finally:
            sender.close()
            listener.stop()
            thread.join(5)
            listener.close()
            worker.stop()


if __name__ == "__main__":
    main()
