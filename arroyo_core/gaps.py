"""What was seen of one numbered sequence: the one gap counter of the package.

A link's ledger keeps one per sender (the ``seq`` of each message), and the sinks one per
run (the ``frame`` index the source stamps). Numbers are expected in order; a number
past the expected one leaves a gap (its numbers are *missing*, kept as ``[first, last]``
ranges, the first ``max_ranges`` of them; the count is always exact), and a number before
it is a *duplicate* (or one that arrived after its gap was counted: without a set of
every number seen, the two look alike).

:class:`LateFilling` is the counter for numbers that may come out of order: a number that
falls in a gap fills it (counted as *late*) instead of counting as a duplicate.

What was seen is therefore ``first .. expected - 1`` minus the missing ranges (exactly,
while :attr:`GapCounter.ranges_exact`), which is what a ledger that compares hops needs.
"""

from __future__ import annotations

from bisect import bisect_right

MAX_RANGES = 32  # missing ranges kept per sequence; the count is always exact


class GapCounter:
    """Counts what was seen of one sequence of integers; ``observe`` is on the hot path.

    Parameters
    ----------
    start
        The number expected first (a run's frames start at 0, and a run joined late has
        lost its first frames); None to start at the first number observed (a link that
        joins a sender mid-stream has lost nothing).
    max_ranges
        Missing ranges kept; further gaps are only counted.

    Attributes
    ----------
    first
        The first number observed (None before any).
    expected
        The next number expected: one past the highest observed.
    seen, missing, duplicates
        Numbers observed once, numbers skipped, numbers observed again (or late).
    ranges
        The missing numbers as ``[first, last]`` pairs, in order, at most ``max_ranges``.
    """

    __slots__ = ("start", "first", "_next", "seen", "missing", "duplicates", "ranges",
                 "max_ranges")

    def __init__(self, start: int | None = 0, max_ranges: int = MAX_RANGES) -> None:
        self.start = start
        self.first: int | None = None
        self._next: int | None = None  # None until the first number: then it sets ``first``
        self.seen = 0
        self.missing = 0
        self.duplicates = 0
        self.ranges: list[list[int]] = []
        self.max_ranges = max_ranges

    @property
    def expected(self) -> int | None:
        """The next number expected: one past the highest observed (before any, ``start``)."""
        return self.start if self._next is None else self._next

    def observe(self, number: int) -> int:
        """Count ``number``; return 0 if it was the one expected, the size of the gap it
        ends if numbers before it were skipped, or -1 if it is a duplicate (not counted as
        seen)."""
        expected = self._next
        if number == expected:  # the common case first: one comparison, two stores
            self._next = number + 1
            self.seen += 1
            return 0
        if expected is None:  # the first number observed
            self.first = number
            self._next = number if self.start is None else self.start
            return self.observe(number)
        if number < expected:
            return self.earlier(number)
        gap = number - expected
        self.missing += gap
        if len(self.ranges) < self.max_ranges:
            self.ranges.append([expected, number - 1])
        self._next = number + 1
        self.seen += 1
        self.skipped(expected, number - 1)
        return gap

    def observe_next(self, first: int, count: int) -> bool:
        """Count ``first .. first + count - 1`` at once if ``first`` is the number expected
        (the usual batch) and return True; else count nothing and return False (the
        caller observes them one by one)."""
        if first != self._next:
            return False
        self._next = first + count
        self.seen += count
        return True

    def earlier(self, number: int) -> int:
        """Count ``number``, below the expected one: a duplicate here (return -1); a
        subclass may tell a late number from a duplicate (:class:`LateFilling`). Off the
        hot path: only numbers out of order come here."""
        self.duplicates += 1
        return -1

    def skipped(self, first: int, last: int) -> None:
        """Called for each gap, ``first..last`` missing: a subclass may say so (a link's
        ledger logs it). Off the hot path: only gaps come here."""

    @property
    def ranges_exact(self) -> bool:
        """True while :attr:`ranges` holds every missing number (none were left out)."""
        return len(self.ranges) < self.max_ranges or self.missing == sum(
            last - first + 1 for first, last in self.ranges)


class LateFilling(GapCounter):
    """A GapCounter for numbers that may come out of order (a run's frames arriving
    through several senders, e.g. a restarted stage or a pool of workers): a number that
    falls in a kept missing range is *late*, not a duplicate, and is taken out of it.

    Exact while the missing ranges are (:attr:`ranges_exact`): keep ``max_ranges`` above
    the number of gaps open at once. Past it, a late number outside the kept ranges is
    counted as a duplicate, as in the plain counter.
    """

    __slots__ = ("late",)

    def __init__(self, start: int | None = 0, max_ranges: int = MAX_RANGES) -> None:
        super().__init__(start, max_ranges)
        self.late = 0  # numbers that came after a later one, and filled their gap

    def earlier(self, number: int) -> int:
        ranges = self.ranges
        index = bisect_right(ranges, number, key=_first) - 1
        if index < 0 or number > ranges[index][1]:
            return super().earlier(number)
        first, last = ranges[index]
        if first == last:
            del ranges[index]
        elif number == first:
            ranges[index][0] = number + 1
        elif number == last:
            ranges[index][1] = number - 1
        else:
            ranges[index][1] = number - 1
            ranges.insert(index + 1, [number + 1, last])
            if len(ranges) > self.max_ranges:
                ranges.pop()  # the count stays exact; the ranges no longer are
        self.missing -= 1
        self.seen += 1
        self.late += 1
        return 0


def _first(pair: list[int]) -> int:
    return pair[0]
