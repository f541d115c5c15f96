"""The origins of one source that a reliable receiver has had (:class:`~arroyo_core.reliable.
Arrivals` keeps one :class:`SeenOrigins` per origin source), so a message made again from
one of them is known as a duplicate.

An origin's key is ``(oseq, k)``: the source's sequence number and the result index. Keys
mostly come in order, a run at a time (a batch's Events: ``oseq, oseq + 1, ...`` with one
``k``), and only after a pool out of order (its workers' runs interleave). So what came in
order is kept as *spans*, ``[first, last, k]`` for the keys ``(first..last, k)``, one span
while runs follow on from each other: a run costs a comparison, not a set entry per Event,
and a chain without a pool keeps one span. What came out of order is kept key by key.

Memory is bounded: past :data:`MAX_SEEN` keys, the oldest half is only remembered as
"up to ``low``" (origins come nearly in order, a pool reorders them by its workers' credit
and gives a dead worker's again within about a second, so a key older than the newest
``MAX_SEEN / 2`` is one had before).
"""

from __future__ import annotations

from bisect import bisect_right

# Origins kept per source before the oldest half is forgotten (about 4 MiB per origin
# source at most, when all came out of order).
MAX_SEEN = 32768

Key = tuple[int, int]  # (oseq, k)


class SeenOrigins:
    """The keys of one origin source had so far: everything up to ``low``, then the
    ``spans`` that came in order and the ``keys`` that did not; ``high``, the newest."""

    __slots__ = ("low", "high", "starts", "spans", "keys", "count")

    def __init__(self) -> None:
        self.low: Key = (-1, -1)
        self.high: Key = (-1, -1)
        self.starts: list[Key] = []  # each span's first key, for bisect
        self.spans: list[list[int]] = []  # [first, last, k], in key order, disjoint
        self.keys: set[Key] = set()  # had, out of order (each below ``high`` then)
        self.count = 0  # keys in spans and keys: what the bound counts

    def had(self, key: Key) -> bool:
        """Whether ``key`` was had (or is older than what is remembered)."""
        if key <= self.low or key in self.keys:
            return True
        index = bisect_right(self.starts, key) - 1
        if index < 0:
            return False
        first, last, k = self.spans[index]  # the only span that can hold it
        return key[1] == k and first <= key[0] <= last

    def add(self, key: Key) -> bool:
        """Note ``key``; False if it was had before."""
        if key > self.high:
            self.add_run(key[0], key[1], 1)
            return True
        if self.had(key):
            return False
        self.keys.add(key)
        self.count += 1
        if self.count > MAX_SEEN:
            self.forget_older()
        return True

    def add_run(self, oseq: int, k: int, n: int) -> None:
        """Note the keys ``(oseq..oseq + n - 1, k)``, all newer than ``high``."""
        spans, last = self.spans, oseq + n - 1
        if spans and spans[-1][2] == k and spans[-1][1] + 1 == oseq:
            spans[-1][1] = last  # follows on from the span before: one span
        else:
            spans.append([oseq, last, k])
            self.starts.append((oseq, k))
        self.high = (last, k)
        self.count += n
        if self.count > MAX_SEEN:
            self.forget_older()

    def forget_older(self) -> None:
        """Keep about the newest half of the keys; the rest is only "up to ``low``"."""
        spans, starts = self.spans, self.starts
        loose = sorted(self.keys)
        target = self.count - MAX_SEEN // 2
        low, gone, span, one = self.low, 0, 0, 0  # (span: of spans, one: of loose)
        while gone < target and (span < len(spans) or one < len(loose)):
            if span < len(spans) and (one == len(loose) or starts[span] < loose[one]):
                first, last, k = spans[span]
                if gone + last - first + 1 <= target:  # all of it
                    gone += last - first + 1
                    low, span = (last, k), span + 1
                else:  # its newer part stays
                    cut = first + target - gone
                    low, gone = (cut - 1, k), target
                    spans[span][0], starts[span] = cut, (cut, k)
            else:
                low, gone, one = loose[one], gone + 1, one + 1
        del spans[:span], starts[:span]
        self.low = max(self.low, low)
        self.keys = {key for key in loose[one:] if key > self.low}
        self.count = len(self.keys) + sum(last - first + 1 for first, last, _ in spans)
