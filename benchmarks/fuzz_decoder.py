"""A long decoder fuzz run: ``decode`` must return a usable Message or raise DecodeError.

Two engines, each checking every input with ``check`` from ``tests/unit/test_decoder_fuzz.py``
(the property the test suite runs for a few hundred examples):

- ``atheris`` (coverage-guided libFuzzer, if ``pip install atheris`` worked): inputs are
  byte strings cut into frames (a limits byte, then 2-byte-length-prefixed frames), seeded
  with valid messages; a custom mutator alternates libFuzzer's byte mutations with
  structured ones (a header field or array descriptor replaced, frames dropped or repeated).
  It runs in a child process, because libFuzzer exits the process when its time is up; this
  script reads its report.
- ``hypothesis``: the test suite's three generators (arbitrary frames, arbitrary msgpack
  headers, mutated valid messages), round after round with fresh seeds.

It prints inputs run, time, rate, outcomes by reason and any failure (with its input, which
belongs in ``REGRESSIONS`` in the test module once the decoder is fixed).

    python benchmarks/fuzz_decoder.py --seconds 150                 # atheris if installed
    python benchmarks/fuzz_decoder.py --seconds 150 --engine hypothesis
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import os
import random
import re
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PROGRESS_EVERY = 5.0  # seconds between the atheris child's progress lines


def load_fuzz_module() -> Any:
    """The test module, loaded by path (tests/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "test_decoder_fuzz", ROOT / "tests" / "unit" / "test_decoder_fuzz.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- atheris: byte strings <-> frames -------------------------------------------------------

def to_frames(data: bytes) -> tuple[list[bytes], int]:
    """Input layout: 1 byte of limits choice, then frames as [uint16 LE length][bytes]."""
    if not data:
        return [], 0
    choice, rest, frames = data[0], memoryview(data)[1:], []
    while rest:
        length = int.from_bytes(rest[:2], "little")
        frames.append(bytes(rest[2:2 + length]))
        rest = rest[2 + length:]
    return frames, choice


def from_frames(frames: list[bytes], choice: int = 0) -> bytes:
    return bytes([choice]) + b"".join(struct.pack("<H", min(len(f), 0xFFFF)) + f[:0xFFFF]
                                      for f in frames)


def seeds() -> list[list[bytes]]:
    import numpy as np

    from arroyo_core import Event, Start, Stop, encode

    dtypes = ["|b1", "|i1", "<u2", ">u2", "<i4", ">i8", "<f2", "<f4", ">f8", "<c8", ">c16",
              "<M8[ns]", ">m8[25s]", "|S3", "<U2", ">U1"]
    messages = [Start({"run": 7, "detector": "sim", "shape": [2, 3]}), Stop({"frames_sent": 9}),
                Event({"frame": 1}, {}), Event({"frame": 2}, {"raw": b"abc", "empty": b""})]
    for index, dtype in enumerate(dtypes):
        array = np.zeros((2, 3), dtype)
        messages.append(Event({"frame": index}, {"a": array, "s": array[0, 0],
                                                 "e": np.zeros((0, 2), dtype)}))
    return [[bytes(f) for f in encode(m, src="fuzz", seq=i, time=1.5)]
            for i, m in enumerate(messages)]


def structured_mutation(frames: list[bytes], rng: random.Random, fuzz: Any) -> list[bytes]:
    """One structure-aware edit, drawn from the same vocabulary as the hypothesis mutator."""
    import msgpack

    op = rng.choice(["field", "descriptor", "drop", "repeat", "swap", "fragment"])
    frames = list(frames) or [b""]
    if op in ("field", "descriptor"):
        try:
            header = msgpack.unpackb(frames[0], strict_map_key=False)
        except Exception:
            return frames
        if not isinstance(header, dict):
            return frames
        values = [None, True, 1, 0, -1, 2**63, 2**64 - 1, 1.5, float("nan"), "", "x", b"x", [],
                  {}, [1], {"a": 1}, msgpack.ExtType(3, b"x"), msgpack.Timestamp(1)]
        arrays = header.get("arrays")
        if op == "descriptor" and isinstance(arrays, list) and arrays:
            descriptor = arrays[rng.randrange(len(arrays))]
            if isinstance(descriptor, list) and descriptor:
                at = rng.randrange(len(descriptor))
                if at == 1:
                    descriptor[1] = rng.choice(
                        ["<u2", ">u2", "|u1", "<f8", "<M8[ns]", "<U1", "|S2", "bytes", "|O8",
                         "|V4", "<u3", "|u2", "<M8[0s]", "<U0", rng.choice(values)])
                elif at == 2 and isinstance(descriptor[2], list):
                    if descriptor[2] and rng.random() < 0.7:
                        descriptor[2][rng.randrange(len(descriptor[2]))] = rng.choice(
                            [0, 1, 2, 3, -1, 2**31, 2**32, 2**62, 2**63 - 1, 2**64 - 1, 1.0])
                    else:
                        descriptor[2] = [rng.choice([0, 1, 2, 2**62]) for _ in range(
                            rng.randrange(5))]
                else:
                    descriptor[at] = rng.choice(values)
        else:
            key = rng.choice(["v", "kind", "src", "seq", "time", "meta", "arrays", "other"])
            if rng.random() < 0.2:
                header.pop(key, None)
            else:
                header[key] = rng.choice(values)
        try:
            frames[0] = msgpack.packb(header, use_bin_type=rng.random() < 0.9)
        except (ValueError, TypeError, OverflowError):
            pass
    elif op == "drop":
        del frames[rng.randrange(len(frames))]
    elif op == "repeat":
        frames.insert(rng.randrange(len(frames)), frames[rng.randrange(len(frames))])
    elif op == "swap":
        i, j = rng.randrange(len(frames)), rng.randrange(len(frames))
        frames[i], frames[j] = frames[j], frames[i]
    else:
        i = rng.randrange(len(frames))
        at = rng.randint(0, len(frames[i]))
        frames[i] = frames[i][:at] + rng.choice(fuzz.MSGPACK_FRAGMENTS) + frames[i][at:]
    return frames


def atheris_child(seconds: float, workdir: Path, libfuzzer_args: list[str]) -> None:
    import atheris

    with atheris.instrument_imports(include=["arroyo_core"]):
        import arroyo_core.wire  # noqa: F401 - instrumented for coverage feedback
    fuzz = load_fuzz_module()
    from arroyo_core import Limits
    from arroyo_core.wire import DEFAULT_LIMITS

    small = Limits(max_message_bytes=200, max_header_bytes=120, max_arrays=2, max_ndim=2)
    outcomes: collections.Counter[str] = collections.Counter()
    started = last = time.monotonic()

    def test_one_input(data: bytes) -> None:
        nonlocal last
        frames, choice = to_frames(data)
        outcomes[fuzz.check(frames, small if choice & 1 else DEFAULT_LIMITS)] += 1
        now = time.monotonic()
        if now - last > PROGRESS_EVERY:
            last = now
            print(f"PROGRESS {sum(outcomes.values())} {now - started:.1f} {dict(outcomes)}",
                  flush=True)

    def mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        if rng.random() < 0.5:
            return atheris.Mutate(data, max_size)
        frames, choice = to_frames(data)
        if rng.random() < 0.5 and frames:  # libFuzzer's byte mutations on one frame only
            i = rng.randrange(len(frames))
            frames[i] = atheris.Mutate(frames[i], max(len(frames[i]) + 16, 64))
        else:
            frames = structured_mutation(frames, rng, fuzz)
        return from_frames(frames, choice ^ (rng.random() < 0.1))[:max_size]

    corpus = workdir / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for index, frames in enumerate(seeds()):
        (corpus / f"seed-{index:02d}").write_bytes(from_frames(frames, index % 2))
    argv = [sys.argv[0], f"-max_total_time={int(seconds)}", "-timeout=10", "-rss_limit_mb=4096",
            "-max_len=4096", f"-artifact_prefix={workdir}/", "-print_final_stats=1",
            *libfuzzer_args, str(corpus)]
    atheris.Setup(argv, test_one_input, custom_mutator=mutator)
    atheris.Fuzz()


def run_atheris(seconds: float, libfuzzer_args: list[str]) -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="fuzz-decoder-", dir=RESULTS))
    command = [sys.executable, __file__, "--atheris-child", "--seconds", str(seconds),
               "--workdir", str(workdir), "--", *libfuzzer_args]
    started = time.monotonic()
    child = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                           timeout=seconds + 120)
    elapsed = time.monotonic() - started
    log = child.stdout + child.stderr
    (workdir / "libfuzzer.log").write_text(log)
    runs = re.findall(r"Done (\d+) runs in (\d+) second", log)
    progress = re.findall(r"^PROGRESS (\d+) ([\d.]+) (.*)$", log, re.M)
    cov = re.findall(r"cov: (\d+) ft: (\d+) corp: (\d+)", log)
    total = int(runs[-1][0]) if runs else (int(progress[-1][0]) if progress else 0)
    print(f"engine atheris (libFuzzer, coverage-guided on arroyo_core): {total:,} inputs in "
          f"{elapsed:.1f} s wall ({total / max(elapsed, 1e-9):,.0f}/s)")
    if cov:
        print(f"  coverage: {cov[-1][0]} edges, {cov[-1][1]} features, corpus {cov[-1][2]} inputs")
    if progress:
        print(f"  outcomes (up to {progress[-1][1]} s): {progress[-1][2]}")
    crashed = "Uncaught Python exception" in log or ("ERROR: libFuzzer" in log) or (
        child.returncode != 0)
    if crashed:
        start = log.find("=== Uncaught Python exception")
        print(f"  FAILURE (exit {child.returncode}):")
        print(log[start if start >= 0 else -4000:][:4000])
        for artifact in sorted(workdir.glob("crash-*")) + sorted(workdir.glob("timeout-*")):
            frames, choice = to_frames(artifact.read_bytes())
            print(f"  input {artifact.name}: limits {'small' if choice & 1 else 'default'}, "
                  f"frames {frames!r}"[:2000])
    else:
        print("  failures: 0")
    print(f"  log and corpus: {workdir.relative_to(ROOT)}")
    return 1 if crashed else 0


# --- hypothesis ---------------------------------------------------------------------------

def run_hypothesis(seconds: float, chunk: int) -> int:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    fuzz = load_fuzz_module()
    outcomes: collections.Counter[str] = collections.Counter()
    per_generator: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    options = settings(max_examples=chunk, deadline=10_000, database=None,
                       suppress_health_check=list(HealthCheck))

    def record(name: str, frames: list[bytes], limits: Any) -> None:
        per_generator[name] += 1
        outcomes[fuzz.check(frames, limits)] += 1

    @options
    @given(fuzz.ARBITRARY_FRAMES, fuzz.LIMITS)
    def arbitrary_frames(frames, limits):
        record("arbitrary frames", frames, limits)

    @options
    @given(fuzz.ARBITRARY_HEADERS, fuzz.LIMITS)
    def arbitrary_headers(case, limits):
        import msgpack

        value, payload = case
        try:
            head = msgpack.packb(value, use_bin_type=True)
        except (ValueError, TypeError, OverflowError):
            return
        record("arbitrary msgpack headers", [head, *payload], limits)

    @options
    @given(fuzz.messages(), st.data(), fuzz.LIMITS)
    def mutated(message, data, limits):
        record("mutated valid messages", fuzz.mutate(data.draw, fuzz.encoded(*message)), limits)

    started = time.monotonic()
    rounds = 0
    while time.monotonic() - started < seconds:
        for test in (mutated, mutated, arbitrary_headers, arbitrary_frames):
            if time.monotonic() - started >= seconds:
                break
            try:
                test()
            except Exception:  # a falsifying example, already shrunk by hypothesis
                failures.append(traceback.format_exc(limit=-6))
        rounds += 1
        if len(failures) >= 3:
            break
    elapsed = time.monotonic() - started
    total = sum(per_generator.values())
    print(f"engine hypothesis: {total:,} inputs in {elapsed:.1f} s ({total / elapsed:,.0f}/s), "
          f"{rounds} rounds of up to {chunk} examples per generator")
    for name, count in per_generator.most_common():
        print(f"  {name}: {count:,}")
    print(f"  outcomes: {dict(outcomes.most_common())}")
    print(f"  failures: {len(failures)}")
    for failure in failures:
        print(failure)
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument("--engine", choices=["auto", "atheris", "hypothesis", "both"],
                        default="auto")
    parser.add_argument("--chunk", type=int, default=1000,
                        help="hypothesis examples per generator per round")
    parser.add_argument("--atheris-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("libfuzzer_args", nargs="*", help="after --: passed to libFuzzer")
    args = parser.parse_args()
    if args.atheris_child:
        atheris_child(args.seconds, args.workdir, args.libfuzzer_args)
        return 0
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if importlib.util.find_spec("atheris") else "hypothesis"
        if engine == "hypothesis":
            print("atheris is not installed (pip install atheris); using hypothesis")
    print(f"python {sys.version.split()[0]}, pid {os.getpid()}, {args.seconds:.0f} s per engine")
    status = 0
    if engine in ("atheris", "both"):
        status |= run_atheris(args.seconds, args.libfuzzer_args)
    if engine in ("hypothesis", "both"):
        status |= run_hypothesis(args.seconds, args.chunk)
    return status


if __name__ == "__main__":
    sys.exit(main())
