"""How long an operator takes per message, as a histogram with fixed bounds.

The runtime times messages only when asked (``Runtime.time_operator``, e.g. by a service
with a metrics endpoint), and then, for a fast operator, only one message in
:attr:`Histogram.every`: two clock readings and a bucket search cost about half a
microsecond, which would show at small events. ``every`` follows the durations seen so
that timing costs at most ``BUDGET`` of the operator's time (one in 5 at 10 us a
message, every message from 50 us up); the histogram then holds that sample of the
messages, whose quantiles and mean are the operator's (its count is the sample's; the
operator's status counts every message). A reader gets it in the operator's status record
(:class:`~arroyo_core.status.HistogramStatus`).
"""

from __future__ import annotations

from bisect import bisect_left
from math import ceil

from .status import HistogramStatus

# Upper bounds in seconds, from 10 us (a pass-through) to 10 s (a slow analysis).
BOUNDS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05,
          0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TIMING_COST_S = 5e-7  # of timing one message, about, on our machines
BUDGET = 0.01  # of the operator's time that timing may take
MAX_EVERY = 64


class Histogram:
    """Counts of observed durations per bucket (``le`` bounds as Prometheus has them: a
    value equal to a bound is in that bound's bucket), their number and their sum.

    ``skip`` counts down the messages until the next one to time; the caller (the
    runtime, from its one processing thread) decrements it and times a message at 0.
    """

    def __init__(self, bounds: tuple[float, ...] = BOUNDS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0
        self.every = 1  # time one message in this many
        self.skip = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds
        seen = sum(self.counts)
        if seen & 63 == 0:  # now and then: what the durations say the sampling should be
            mean = self.sum / seen
            self.every = min(MAX_EVERY, max(1, ceil(TIMING_COST_S / (BUDGET * mean))))
        self.skip = self.every

    def status(self) -> HistogramStatus:
        return HistogramStatus(bounds=list(self.bounds), counts=list(self.counts),
                               sum=self.sum)
