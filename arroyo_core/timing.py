"""How long an operator takes per message, as a histogram with fixed bounds.

The runtime times each message's processing only when asked (``Runtime.time_operator``),
because two clock readings and a bucket search cost about half a microsecond per message,
which shows at small events. A reader (the metrics endpoint, ``arroyo status --json``)
gets the histogram in the operator's status record
(:class:`~arroyo_core.status.HistogramStatus`).
"""

from __future__ import annotations

from bisect import bisect_left

from .status import HistogramStatus

# Upper bounds in seconds, from 10 us (a pass-through) to 10 s (a slow analysis).
BOUNDS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05,
          0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    """Counts of observed durations per bucket (``le`` bounds as Prometheus has them: a
    value equal to a bound is in that bound's bucket), their number and their sum."""

    def __init__(self, bounds: tuple[float, ...] = BOUNDS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    def status(self) -> HistogramStatus:
        return HistogramStatus(bounds=list(self.bounds), counts=list(self.counts),
                               sum=self.sum)
