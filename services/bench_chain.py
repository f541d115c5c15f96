"""The chain ``arroyo bench`` measures, run as real service processes on this machine.

Every service but the source is started once and keeps running; each step starts the
source afresh for one run at the step's target rate (``rate`` and ``frames`` set over
its options), follows the run at the end of the chain through the status sockets, and
reads what the source sent from the ledger it logs as it exits. The chain is either a
chain file (its one listener must be the simulated source; its services are started as
``arroyo run`` starts them, with any addresses the file gives) or the built-in simulated
source -> operator -> stats sink on loopback tcp. Status sockets are the bench's own
(``ipc://`` in a temporary directory), so a chain file needs none.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from arroyo_core.errors import ArroyoError, ConfigError
from arroyo_core.status import RunLedgerStatus, RunStatus, ServiceStatus
from services.status_server import query_status

from .bench_step import CpuMeter, Step, arrival_rate, judge
from .chain import load_chain
from .processes import ServiceProcess

POLL_S = 0.1  # between status reads while a run goes on
GRACE_S = 5.0  # past a run's planned length before it counts as not ending in time
DRAIN_S = 60.0  # for a run cut short to reach the end of the chain
SIMULATED = ("simulated", "arroyo_core.sources:SimulatedDetector")
LOCAL = ("127.0.0.1", "localhost", "::1")  # hosts a chain file's services may have here

Progress = Callable[[int, int, float, int], None]  # arrived, frames, frames/s, lost


class BenchError(ArroyoError):
    """The chain could not be measured: a service failed, or a run never ended."""


@dataclass(frozen=True)
class Frame:
    """The frames the simulated source sends."""

    shape: tuple[int, ...]
    dtype: str

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize

    def options(self) -> list[str]:
        return ["-o", f"shape=[{','.join(map(str, self.shape))}]", "-o", f"dtype={self.dtype}"]


class BenchChain:
    """The services of a chain, the source's command per step, and where the chain ends.

    Use :meth:`from_file` or :meth:`built_in`, then as a context manager (it starts every
    service but the source, and stops them all on leaving), and :meth:`step`.
    """

    def __init__(self, description: str, services: list[tuple[str, list[str]]],
                 source: str, source_argv: Callable[[float, int], list[str]],
                 ends: list[str], frame: Frame, workdir: Path,
                 late: dict[str, Callable[[], list[str]]] | None = None) -> None:
        self.description = description
        self._argv = services  # (name, arroyo arguments), started in this order
        self._late = late or {}  # started after those: their arguments need them up
        self.source = source
        self._source_argv = source_argv
        self.ends = ends
        self.frame = frame
        self.workdir = workdir
        self.running: dict[str, ServiceProcess] = {}
        self.verbose = False  # echo the services' log lines
        self._seen_runs: set[str] = set()

    @classmethod
    def from_file(cls, path: str | Path, frame: Frame | None = None) -> BenchChain:
        """The chain of a chain file; ``frame`` replaces its source's shape and dtype."""
        chain = load_chain(path)
        listeners = [n for n, s in chain.services.items() if s.role == "listener"]
        if len(listeners) != 1 or chain.services[listeners[0]].config.source not in SIMULATED:
            raise ConfigError(f"{path}: arroyo bench drives the chain's source at chosen rates, "
                              f"so the chain needs exactly one listener, with source = "
                              f"\"simulated\" (it has {listeners or 'none'})")
        elsewhere = {n: svc.host for n, svc in chain.services.items() if svc.host not in LOCAL}
        if elsewhere:
            raise ConfigError(f"{path}: arroyo bench runs every service on this machine, but "
                              f"the file places some elsewhere ({elsewhere}); bench a copy "
                              "without their 'host' keys")
        source = listeners[0]
        options = chain.services[source].config.options
        frame = frame or Frame(tuple(options.get("shape", (512, 512))),
                               str(options.get("dtype", "uint16")))
        depth = chain.depth()
        ends = [name for name in chain.order() if depth[name] == 0 and name != source]
        if not ends:
            raise ConfigError(f"{path}: no service receives from the source {source!r}")
        workdir = Path(tempfile.mkdtemp(prefix="arroyo-bench-"))
        chain_file = str(Path(path).resolve())

        def argv(name: str) -> list[str]:
            return ["service", chain_file, name, "--status", _status(workdir, name)]

        def source_argv(rate: float, frames: int) -> list[str]:
            return [*argv(source), "-o", f"rate={rate}", "-o", f"frames={frames}",
                    "-o", "runs=1", *frame.options()]

        names = [n for n in reversed(chain.order()) if n != source]
        return cls(f"chain {chain.name} ({path}): " + " -> ".join(chain.order()),
                   [(n, argv(n)) for n in names], source, source_argv, ends, frame, workdir)

    @classmethod
    def built_in(cls, frame: Frame, operator: str = "passthrough",
                 pattern: str = "push") -> BenchChain:
        """Simulated source -> ``operator`` -> stats sink over loopback tcp (``pattern`` on
        both hops). The operator binds both its ports, so the source, started anew for each
        step, connects at once."""
        workdir = Path(tempfile.mkdtemp(prefix="arroyo-bench-"))
        receive = {"push": "pull", "pub": "sub"}[pattern]
        services = [("operator", ["operator", "--name", "operator", "--operator", operator,
                                  "--in", "@tcp://127.0.0.1:*", "--in-pattern", receive,
                                  "--out", "@tcp://127.0.0.1:*", "--out-pattern", pattern,
                                  "--status", _status(workdir, "operator")])]
        chain = cls(f"built-in chain: source --{pattern}--> operator ({operator}) "
                    f"--{pattern}--> sink (stats)", services, "source",
                    lambda rate, frames: [], ["sink"], frame, workdir, {})

        def source_argv(rate: float, frames: int) -> list[str]:
            hop1 = chain.running["operator"].bound("in")
            return ["listener", "--name", "source", "--source", "simulated", *frame.options(),
                    "-o", f"rate={rate}", "-o", f"frames={frames}", "--out", ">" + hop1,
                    "--out-pattern", pattern, "--status", _status(workdir, "source")]

        def sink_argv() -> list[str]:
            hop2 = chain.running["operator"].bound("out")
            return ["publisher", "--name", "sink", "--in", ">" + hop2, "--in-pattern",
                    receive, "--sink", "stats", "-o", "interval=0",
                    "--status", _status(workdir, "sink")]

        chain._source_argv = source_argv
        chain._late["sink"] = sink_argv
        return chain

    @property
    def names(self) -> list[str]:
        """Every service, upstream first."""
        return [self.source, *reversed([name for name, _ in self._argv]), *self._late]

    def __enter__(self) -> BenchChain:
        try:
            for name, argv in self._argv:
                self._start(name, argv)
            for name, make in self._late.items():
                self._start(name, make())
        except BaseException:
            self.close()
            raise
        return self

    def _start(self, name: str, argv: list[str]) -> None:
        self.running[name] = ServiceProcess.from_argv(argv, name, echo=self.verbose,
                                                      own_session=True, die_with_parent=True)
        self.running[name].wait_ready(30)

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every service (SIGTERM, then SIGKILL) and remove the status sockets."""
        for process in reversed(self.running.values()):
            process.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def failed(self) -> list[str]:
        """The services (not the source) that have exited."""
        return [name for name, process in self.running.items()
                if name != self.source and process.process.poll() is not None]

    def step(self, rate: float, seconds: float, tolerance: float,
             progress: Progress | None = None) -> Step:
        """Run the source once at ``rate`` frames/s for about ``seconds``; measure it."""
        frames = max(10, round(rate * seconds))
        source = ServiceProcess.from_argv(self._source_argv(rate, frames), self.source,
                                          echo=self.verbose, own_session=True,
                                          die_with_parent=True)
        self.running[self.source] = source
        cpu = CpuMeter()
        try:
            source.wait_ready(30)
        except RuntimeError as exc:
            raise BenchError(str(exc)) from None
        for name, process in self.running.items():
            cpu.watch(name, process.process.pid)
        cpu.start()
        began = time.monotonic()
        planned = frames / rate
        samples: list[tuple[float, int]] = []
        ended: tuple[float, int] | None = None
        cut = False
        while True:
            time.sleep(POLL_S)
            cpu.sample()
            now = time.monotonic()
            record = self._run_at_ends()
            arrived = min((r.seen for r, _ in record.values()), default=0)
            if record and all(r.complete for r, _ in record.values()):
                ended = (now, arrived)
                break
            samples.append((now, arrived))
            if progress is not None:
                lost = sum(run.lost for _, run in record.values() if run is not None)
                progress(arrived, frames, arrival_rate(samples, frames, None), lost)
            if self.failed():
                raise BenchError(f"{', '.join(self.failed())} exited during the run")
            if not cut and now - began > planned * (1 + tolerance) + GRACE_S:
                source.stop()  # a Stop ends the run; the chain drains what it holds
                cut = True
            if now - began > planned + GRACE_S + DRAIN_S:
                raise BenchError(f"the run at {rate:g} frames/s did not reach the end of "
                                 f"the chain ({arrived} of {frames} frames after "
                                 f"{now - began:.0f} s)")
        cpu_percent = cpu.percent(self.names)
        try:
            source.process.wait(30)  # it ends by itself after its run, its ledger logged
        except subprocess.TimeoutExpired:
            source.stop()
        self.running.pop(self.source)
        return self._measured(rate, frames, record, samples, ended, began, cpu_percent,
                              tolerance, source, cut)

    def _measured(self, rate: float, frames: int,
                  record: dict[str, tuple[RunLedgerStatus, RunStatus | None]],
                  samples: list[tuple[float, int]], ended: tuple[float, int], began: float,
                  cpu: dict[str, float], tolerance: float, source: ServiceProcess,
                  cut: bool) -> Step:
        ledgers = list(record.values())
        runs = [run for _, run in ledgers if run is not None]
        sent = _sent(source.output(), ledgers[0][0].run)
        achieved = arrival_rate(samples, frames, ended, began)
        step = Step(
            target=rate, frames=frames, sent=sent,
            arrived=min(r.seen for r, _ in ledgers),
            counted=min((run.frames - run.duplicates for run in runs), default=None),
            lost=max([r.lost or 0 for r, _ in ledgers] + [run.lost for run in runs]),
            dropped=max(r.policy_dropped for r, _ in ledgers),
            accounted=max(r.filtered + r.failed for r, _ in ledgers),
            achieved=round(achieved, 1),
            gb_per_s=float(f"{achieved * self.frame.nbytes / 1e9:.4g}"),
            cpu=cpu, seconds=round(ended[0] - samples[0][0] + POLL_S, 2) if samples else 0.0,
            passed=False, why="")
        step.why = judge(step, complete=not cut, tolerance=tolerance)
        step.passed = not step.why
        return step

    def _run_at_ends(self) -> dict[str, tuple[RunLedgerStatus, RunStatus | None]]:
        """Per end service, the run ledger of this step's run at its input (the first run
        not seen in an earlier step) and what a counting sink there counted of it."""
        found = {}
        for name in self.ends:
            try:
                record = ServiceStatus.from_dict(query_status(_status(self.workdir, name), 2.0))
            except TimeoutError:
                return {}
            ledger = [r for r in (record.input.run_ledger or []) if str(r.run)
                      not in self._seen_runs] if record.input is not None else []
            if not ledger:
                return {}
            counted = [run for output in record.outputs for run in output.runs or []
                       if run.run == ledger[0].run]
            found[name] = (ledger[0], counted[0] if counted else None)
        if found and all(r.complete for r, _ in found.values()):
            self._seen_runs.add(str(next(iter(found.values()))[0].run))
        return found


def _status(workdir: Path, name: str) -> str:
    return f"ipc://{workdir / name}.status"


def _sent(log: str, run: Any) -> int | None:
    """Frames of ``run`` the source's outputs sent, from the ledger it logged on exit."""
    for line in reversed(log.splitlines()):
        _, marker, text = line.partition(" stopped; ledger: ")
        if marker:
            record = ServiceStatus.from_dict(json.loads(text))
            seen = [r.seen for output in record.outputs for r in output.run_ledger or []
                    if r.run == run]
            return min(seen) if seen else None
    return None
