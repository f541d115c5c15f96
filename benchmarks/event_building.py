"""Event building at 500 events/s: three streams of one scan joined, every event checked.

Three source processes (``arroyo listener --source stream``): 4 Mpixel frames (2048x2048
uint8, 4.2 MB, over ``shm://``), 4 kB spectra and 64 B encoder records (over tcp), each at
``--rate`` (500) events/s -> an event builder service (``in`` a table of the three) -> this
process, which checks every built event: each part's own frame number (the image's
``frame_id``, the spectrum's channel 1, the encoder's first value) against the event's, and
the first row of each image against the ring of images it draws itself. Reported: events
built and their rate, complete and incomplete events (per stream), parts that did not match,
the builder's ledger (each stream's link: missing, malformed; its incomplete and late
counts) and its CPU (% of one core) during the run.

Cases:

- ``complete``: every event must be complete, nothing missing in any ledger;
- ``1% lost``: the spectra source skips 1% of its frames (chosen at random, seeded): exactly
  those events must be incomplete, missing ``spectra``, and every other event complete and
  matched;
- ``baseline``: the detector stream alone through a pass-through operator service in the
  builder's place, for the CPU of forwarding the same frames without building (the ratio
  builder / forwarder is what building costs on top).

Run ``python benchmarks/event_building.py [--seconds 8] [--rate 500] [--repeats 1]
[--shape 2048,2048]``.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from arroyo_core.link import InputLink  # noqa: E402
from arroyo_core.message import Message  # noqa: E402
from services.processes import ServiceProcess, free_port  # noqa: E402
from services.status_server import query_status  # noqa: E402

SHAPE = (2048, 2048)
DTYPE = "uint8"
RING = 4
CHANNELS = 1024  # uint32: 4 kB
QUIET = ["--log-level", "warning"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Checker:
    """The end of the chain, in this process: checks each built event part by part."""

    def __init__(self, address: str, streams: tuple[str, ...]) -> None:
        rng = np.random.default_rng(0)
        self.rows = [(rng.random(SHAPE) * 1000).astype(DTYPE)[0].copy() for _ in range(RING)]
        self.streams = streams
        self.link = InputLink(address)
        self.link.open()
        self.events = 0
        self.frames: set[int] = set()
        self.incomplete: dict[int, list[str]] = {}
        self.mismatched: list[tuple[int, str]] = []
        self.first = self.last = 0.0
        self.stop: Message | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.link.start, args=(self.take,), daemon=True)
        self.thread.start()

    def take(self, message: Message) -> None:
        if message.kind == "stop":
            self.stop = message
            self.done.set()
            return
        if message.kind != "event":
            return
        now = time.monotonic()
        self.first = self.first or now
        self.last = now
        self.events += 1
        meta, payload = message.meta, message.payload  # type: ignore[attr-defined]
        frame = meta["frame"]
        self.frames.add(frame)
        if meta.get("missing"):
            self.incomplete[frame] = meta["missing"]
        if "detector" in self.streams and "detector/image" in payload:
            if int(payload["detector/frame_id"][0]) != frame or not np.array_equal(
                    payload["detector/image"][0], self.rows[frame % RING]):
                self.mismatched.append((frame, "detector"))
        if "spectra/spectrum" in payload and int(payload["spectra/spectrum"][1]) != frame + 1:
            self.mismatched.append((frame, "spectra"))
        if "encoder/position" in payload and int(payload["encoder/position"][0]) != frame:
            self.mismatched.append((frame, "encoder"))

    def close(self) -> None:
        self.link.stop()
        self.thread.join(5)
        self.link.close()


def source(kind: str, out: str, frames: int, rate: float, more: list[str]) -> ServiceProcess:
    return ServiceProcess("listener", [
        "--source", "stream", "-o", f"kind={kind}", "-o", f"frames={frames}",
        "-o", f"rate={rate}", "-o", "run=bench", "--out", out, *more, *QUIET], name=kind)


def run_case(case: str, seconds: float, rate: float) -> dict[str, Any]:
    frames = int(seconds * rate)
    ports = {name: free_port() for name in ("detector", "spectra", "encoder", "out", "status")}
    skipped: list[int] = []
    if case == "1% lost":
        skipped = sorted(random.Random(1).sample(range(frames), frames // 100))
    building = case != "baseline"
    streams = ("detector", "spectra", "encoder") if building else ("detector",)
    schemes = {"detector": "shm", "spectra": "tcp", "encoder": "tcp"}
    inputs = {name: f">{schemes[name]}://127.0.0.1:{ports[name]}" for name in streams}
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "builder.toml"
        if building:
            table = ", ".join(f'{name} = "{address}"' for name, address in inputs.items())
            # Sources start a second or two apart (process start-up), and a source that
            # cannot keep its rate falls behind the others: the parts that came first wait
            # for the others, so the window and timeout are generous here.
            config.write_text(f"""
in = {{ {table} }}
join = {{ timeout = 60.0, window = 65536, window_bytes = "2GiB" }}
out = "@shm://127.0.0.1:{ports['out']}"
status = "tcp://127.0.0.1:{ports['status']}"
""")
        else:
            config.write_text(f"""
in = "{inputs['detector']}"
out = "@shm://127.0.0.1:{ports['out']}"
status = "tcp://127.0.0.1:{ports['status']}"
""")
        middle = ServiceProcess("operator", ["-c", str(config), *QUIET], name="builder")
        children = [middle]
        checker = None
        try:
            middle.wait_ready(60)
            checker = Checker(f">shm://127.0.0.1:{ports['out']}", streams)
            shape = f"shape=[{SHAPE[0]},{SHAPE[1]}]"
            for name in reversed(streams):  # the small streams first, the detector last
                kind = {"detector": "image", "spectra": "spectrum", "encoder": "encoder"}[name]
                more = {"detector": ["-o", shape, "-o", f"dtype={DTYPE}", "-o", f"ring={RING}"],
                        "spectra": ["-o", f"channels={CHANNELS}",
                                    *(["-o", f"skip={skipped}"] if skipped else [])],
                        "encoder": []}[name]
                address = f"@{schemes[name]}://127.0.0.1:{ports[name]}"
                children.append(source(kind, address, frames, rate, more))
            pid = middle.process.pid
            while not checker.events and not checker.done.is_set():
                checker.done.wait(0.01)  # the first event: measuring starts
            cpu0, wall0 = cpu_seconds(pid), time.monotonic()
            if not checker.done.wait(seconds * 4 + 60):
                raise RuntimeError(f"{case}: no Stop within the time allowed; builder "
                                   f"output:\n{middle.output()[-3000:]}")
            cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - wall0)
            record = query_status(f"tcp://127.0.0.1:{ports['status']}", timeout=10)
        finally:
            for child in reversed(children):
                child.stop(15)
            if checker is not None:
                checker.close()
    assert checker.stop is not None
    links = (record["input"].get("event_builder", {}).get("streams", {}) if building
             else {"detector": {"link": record["input"]}})
    # Each stream's link: sequence gaps and malformed messages (none), and its run ledger's
    # missing frames (exactly the frames its source skipped); the checker's own link: none.
    ledger = {name: s["link"]["missing"] + sum(s["link"]["malformed"].values())
              for name, s in links.items()}
    frames_missing = {name: s["link"]["run_ledger"][-1]["missing"] for name, s in links.items()}
    expected_missing = {name: len(skipped) if name == "spectra" else 0 for name in links}
    end = checker.link.status()
    end_missing = end.missing + end.run_ledger[-1].missing if end.run_ledger else -1
    said = checker.stop.meta.get("incomplete", {})
    span = checker.last - checker.first
    incomplete = {frame: missing for frame, missing in checker.incomplete.items()}
    expected_incomplete = {frame: ["spectra"] for frame in skipped}
    ok = (checker.events == frames and checker.frames == set(range(frames))
          and incomplete == expected_incomplete and not checker.mismatched
          and not any(ledger.values()) and frames_missing == expected_missing
          and end_missing == 0 and (said == ({"spectra": len(skipped)} if skipped else {})
                                    or not building))
    return {"case": case, "events": checker.events, "frames": frames,
            "rate": (checker.events - 1) / span if span else 0.0,
            "incomplete": len(incomplete), "expected_incomplete": len(skipped),
            "mismatched": len(checker.mismatched), "ledger_missing": ledger,
            "frames_missing": frames_missing, "end_missing": end_missing,
            "per_stream": {name: {k: s.get(k) for k in ("incomplete", "late")}
                           for name, s in links.items()} if building else {},
            "given_up": record["input"].get("event_builder", {}).get("given_up"),
            "cpu": 100 * cpu, "ok": ok}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--shape", default="2048,2048", help="of the detector's frames (uint8)")
    args = parser.parse_args()
    global SHAPE
    SHAPE = tuple(int(n) for n in args.shape.split(","))
    results: dict[str, list[dict[str, Any]]] = {}
    for _ in range(args.repeats):
        for case in ("baseline", "complete", "1% lost"):
            result = run_case(case, args.seconds, args.rate)
            results.setdefault(case, []).append(result)
            print(f"{case:9}: {result['events']}/{result['frames']} events at "
                  f"{result['rate']:.0f}/s, incomplete {result['incomplete']} (expected "
                  f"{result['expected_incomplete']}), mismatched {result['mismatched']}, "
                  f"seq missing {result['ledger_missing']}, frames missing per link "
                  f"{result['frames_missing']}, at the end {result['end_missing']}, per stream "
                  f"{result['per_stream']}, given up {result['given_up']}, "
                  f"{'builder' if case != 'baseline' else 'forwarder'}"
                  f" CPU {result['cpu']:.0f}% -> {'ok' if result['ok'] else 'FAILED'}",
                  flush=True)
    cpu = {case: statistics.median(r["cpu"] for r in runs) for case, runs in results.items()}
    rate = {case: statistics.median(r["rate"] for r in runs) for case, runs in results.items()}
    print(f"\nmedians of {args.repeats}: events/s built {rate['complete']:.0f} (target "
          f"{args.rate:.0f}); builder CPU {cpu['complete']:.0f}% of a core, forwarding the "
          f"detector stream alone {cpu['baseline']:.0f}% (ratio "
          f"{cpu['complete'] / cpu['baseline']:.2f}); with 1% of spectra lost "
          f"{cpu['1% lost']:.0f}%")
    failed = [r["case"] for runs in results.values() for r in runs if not r["ok"]]
    print("all checks passed" if not failed else f"FAILED: {failed}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
