"""One step of ``arroyo bench``: what it measured and whether the chain kept up.

A step is one run of the simulated source at a target rate. It passes when the chain
kept up with it the way a detector needs: every frame the source sent arrived at the end
of the chain, the ledgers say none was lost or dropped by an overflow policy, and frames
arrived at the target rate. The last condition matters on links that apply back-pressure
(``push``): a chain too slow for them loses nothing but slows the source down, which a
real detector cannot be.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import psutil


@dataclass
class Step:
    """What one run of the chain at ``target`` frames/s did (``to_dict`` for JSON)."""

    target: float  # frames/s the source was asked for
    frames: int  # frames the source was asked to send
    sent: int | None  # frames the source's ledger says it sent (None: it logged none)
    arrived: int  # distinct frames of the run that reached the end of the chain
    counted: int | None  # frames a counting sink at the end counted (None: no such sink)
    lost: int | None  # frames no hop accounts for (None: the run did not end there)
    dropped: int  # frames overflow policies dropped on the way
    accounted: int  # frames operators filtered or failed on: missing, but not lost
    achieved: float  # frames/s arriving at the end of the chain
    gb_per_s: float  # achieved, in GB/s of the source's frames
    cpu: dict[str, float]  # per service: percent of one core during the step
    seconds: float  # from the source's READY to the run's end at the end of the chain
    passed: bool
    why: str  # why it did not pass ("" when it did)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(step: Step, complete: bool, tolerance: float) -> str:
    """Why ``step`` did not keep up, or "" if it did (see the module docstring)."""
    if not complete:
        return f"the run did not end in time ({step.arrived} of {step.frames} frames arrived)"
    if step.lost:
        return f"lost {step.lost} frames"
    if step.dropped:
        return f"{step.dropped} frames dropped by overflow policy"
    if step.sent is not None and step.sent < step.frames:
        return f"the source sent only {step.sent} of {step.frames} frames"
    expected = (step.sent if step.sent is not None else step.frames) - step.accounted
    if step.arrived != expected:
        return f"{step.arrived} of {expected} frames arrived"
    if step.counted is not None and step.counted < expected:
        return f"the sink counted {step.counted} of {expected} frames"
    if step.achieved < step.target * (1 - tolerance):
        return (f"fell behind: frames arrived at {step.achieved:.4g} frames/s, "
                f"{step.achieved / step.target:.0%} of the target")
    return ""


def arrival_rate(samples: list[tuple[float, int]], frames: int,
                 ended: tuple[float, int] | None, began: float = 0.0) -> float:
    """Frames/s arriving at the end of the chain, from ``(time, frames seen)`` samples
    taken while the run went on, and ``ended`` (time and frames) when its end was seen.

    The slope of a least-squares line through the samples between the first frame and the
    last, where there are enough of them: the start-up before the first frame (the source
    waiting for its peers) and the polling delay at the end do not count. Else frames
    over the time from the first sample with frames to the end, or from ``began`` (when
    the source started) for a run too short to see between two samples.
    """
    inside = [(t, n) for t, n in samples if 0 < n < frames]
    if len(inside) >= 4 and inside[-1][0] - inside[0][0] > 0.2:
        mean_t = sum(t for t, _ in inside) / len(inside)
        mean_n = sum(n for _, n in inside) / len(inside)
        spread = sum((t - mean_t) ** 2 for t, _ in inside)
        return sum((t - mean_t) * (n - mean_n) for t, n in inside) / spread
    if len(inside) >= 2 and inside[-1][1] > inside[0][1]:  # exact counts at known times
        return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])
    if ended is None:
        return 0.0
    first = next(((t, n) for t, n in samples if n > 0), (began, 0))
    return (ended[1] - first[1]) / max(ended[0] - first[0], 1e-3)


class CpuMeter:
    """CPU time of processes over a window, as percent of one core (100: a core busy)."""

    def __init__(self) -> None:
        self._began = time.monotonic()
        self._first: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._processes: dict[str, psutil.Process] = {}

    def watch(self, name: str, pid: int) -> None:
        """Count ``pid``'s CPU time from now on as ``name``'s."""
        try:
            process = psutil.Process(pid)
            used = _used(process)
        except psutil.Error:
            return
        self._processes[name] = process
        self._first[name] = self._last[name] = used

    def start(self) -> None:
        """Begin the window: the processes watched count from now."""
        self._began = time.monotonic()
        for name, process in self._processes.items():
            try:
                self._first[name] = self._last[name] = _used(process)
            except psutil.Error:
                self._first[name] = self._last[name]

    def sample(self) -> None:
        """Read every process's CPU time (one that has gone keeps its last reading)."""
        for name, process in self._processes.items():
            try:
                self._last[name] = _used(process)
            except psutil.Error:
                pass

    def percent(self, names: Iterable[str]) -> dict[str, float]:
        """Each process's CPU time since the window began, over the window's length."""
        window = max(time.monotonic() - self._began, 1e-9)
        return {name: round(100 * (self._last[name] - self._first[name]) / window, 1)
                for name in names if name in self._processes}


def _used(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)
