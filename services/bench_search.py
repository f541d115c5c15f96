"""How ``arroyo bench`` chooses the rates it tries: pure logic, no processes.

Rising target rates (doubling from a start rate) until one fails, then bisection between
the highest rate that passed and the lowest that failed until they are within
``precision`` of each other, then the highest passing rate again ``repeats`` times: a
rate is sustained only if every trial at it passed. A repeat that fails makes that rate
the lowest failure and the search goes on below it. A start rate that fails is halved
until a rate passes (or ``min_rate`` is reached: nothing is sustained).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

MAX_TRIALS = 60  # a safety net: a search never runs more steps than this


@dataclass
class Search:
    """The trials so far and what they decide.

    Parameters
    ----------
    trial
        Runs the chain at a target rate (frames/s) once; True if it passed.
    start
        The first target rate.
    precision
        Stop bisecting when the lowest failing rate is within this fraction above the
        highest passing one (0.05: 5 %).
    repeats
        How many more times the highest passing rate is run; each must pass.
    max_rate
        No rate above this is tried (0: no limit); reaching it ends the search.
    min_rate
        No rate below this is tried.
    """

    trial: Callable[[float], bool]
    start: float
    precision: float = 0.05
    repeats: int = 2
    max_rate: float = 0.0
    min_rate: float = 1.0
    passes: dict[float, int] = field(default_factory=dict)  # rate: trials passed
    fails: dict[float, int] = field(default_factory=dict)  # rate: trials failed

    def run(self) -> float | None:
        """Search; the highest rate every trial of which passed (None: no rate did)."""
        rate = self._capped(self.start)
        while self.lowest_fail is None and self._try(rate):  # rising
            if self.max_rate and rate >= self.max_rate:
                break
            rate = self._capped(rate * 2)
        while len(self.trials) < MAX_TRIALS:
            low, high = self.sustained, self.lowest_fail
            if low is None:  # nothing has passed below the failures: go down
                below = (high or rate) / 2
                if below < self.min_rate:
                    return None
                self._try(max(below, self.min_rate))
                continue
            if high is not None and high > low * (1 + self.precision):
                self._try(_round((low + high) / 2))
                continue
            if self.passes[low] < 1 + self.repeats:  # confirm the deciding rate
                self._try(low)
                continue
            return low
        return self.sustained

    @property
    def trials(self) -> list[float]:
        return self._order

    @property
    def lowest_fail(self) -> float | None:
        return min(self.fails, default=None)

    @property
    def sustained(self) -> float | None:
        """The highest rate below every failure whose trials all passed."""
        high = self.lowest_fail
        ok = [rate for rate in self.passes if rate not in self.fails
              and (high is None or rate < high)]
        return max(ok, default=None)

    def _try(self, rate: float) -> bool:
        passed = self.trial(rate)
        counts = self.passes if passed else self.fails
        counts[rate] = counts.get(rate, 0) + 1
        self._order.append(rate)
        return passed

    def _capped(self, rate: float) -> float:
        rate = max(rate, self.min_rate)
        return _round(min(rate, self.max_rate) if self.max_rate else rate)

    def __post_init__(self) -> None:
        self._order: list[float] = []


def _round(rate: float) -> float:
    """Three significant figures: rates a reader can repeat, and no endless halving."""
    return float(f"{rate:.3g}")
