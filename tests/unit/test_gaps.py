"""GapCounter: the one count of what was seen of a numbered sequence (a sender's seq, a
run's frame numbers)."""

from __future__ import annotations

from arroyo_core.gaps import MAX_RANGES, GapCounter, LateFilling


def observe_all(gaps: GapCounter, numbers) -> list[int]:
    return [gaps.observe(n) for n in numbers]


def test_in_order_numbers_are_seen_without_gaps():
    gaps = GapCounter()
    assert observe_all(gaps, range(5)) == [0] * 5
    assert (gaps.first, gaps.expected, gaps.seen, gaps.missing) == (0, 5, 5, 0)


def test_a_gap_returns_its_size_and_keeps_its_range():
    gaps = GapCounter()
    assert observe_all(gaps, [0, 1, 5, 6, 10]) == [0, 0, 3, 0, 3]
    assert gaps.ranges == [[2, 4], [7, 9]] and gaps.missing == 6 and gaps.seen == 5
    assert gaps.ranges_exact


def test_numbers_before_the_expected_one_are_duplicates_and_not_seen():
    gaps = GapCounter()
    assert observe_all(gaps, [0, 1, 1, 2, 0, 5, 3]) == [0, 0, -1, 0, -1, 2, -1]
    assert (gaps.duplicates, gaps.missing, gaps.seen) == (3, 2, 4)  # 3 came after its gap


def test_start_none_begins_at_the_first_number_and_start_0_counts_what_came_before():
    joined = GapCounter(start=None)  # a link joining a sender mid-stream has lost nothing
    assert observe_all(joined, [1000, 1001]) == [0, 0]
    assert (joined.first, joined.missing, joined.expected) == (1000, 0, 1002)
    late = GapCounter(start=0)  # a sink joining a run late has lost its first frames
    assert late.expected == 0 and late.first is None
    assert late.observe(1000) == 1000
    assert (late.first, late.missing, late.ranges) == (1000, 1000, [[0, 999]])


def test_ranges_are_capped_but_the_count_stays_exact():
    gaps = GapCounter()
    observe_all(gaps, range(0, 4 * (MAX_RANGES + 10), 2))
    assert len(gaps.ranges) == MAX_RANGES
    assert gaps.missing == 2 * (MAX_RANGES + 10) - 1
    assert not gaps.ranges_exact


def test_what_was_seen_follows_from_first_expected_and_ranges():
    """What a ledger comparing hops needs: the numbers seen, as ranges."""
    gaps = GapCounter()
    seen = [0, 1, 2, 6, 7, 9]
    observe_all(gaps, seen)
    missing = {n for a, b in gaps.ranges for n in range(a, b + 1)}
    assert [n for n in range(gaps.first, gaps.expected) if n not in missing] == seen


def test_late_filling_takes_a_late_number_out_of_its_gap():
    """A run's frames through several senders (a restarted stage, a pool) may come out of
    order: a number that falls in a gap is late, not a duplicate."""
    gaps = LateFilling()
    assert observe_all(gaps, [0, 3, 1, 2, 4, 10, 8, 7, 5]) == [0, 2, 0, 0, 0, 5, 0, 0, 0]
    assert gaps.ranges == [[6, 6], [9, 9]] and gaps.ranges_exact
    assert (gaps.seen, gaps.missing, gaps.late, gaps.duplicates) == (9, 2, 5, 0)
    assert observe_all(gaps, [8, 0, 9, 6]) == [-1, -1, 0, 0]  # 8 and 0 came before: twice
    assert (gaps.missing, gaps.duplicates, gaps.ranges) == (0, 2, [])


def test_late_filling_past_its_kept_ranges_counts_exactly_and_says_the_ranges_are_not():
    gaps = LateFilling(max_ranges=3)
    observe_all(gaps, [0, 10, 20])  # gaps 1-9 and 11-19
    observe_all(gaps, [3, 6])  # split 1-9 into three: one range too many
    assert gaps.missing == 16 and len(gaps.ranges) == 3 and not gaps.ranges_exact
    assert gaps.ranges == [[1, 2], [4, 5], [7, 9]]
    assert gaps.observe(15) == -1  # outside the kept ranges: taken for a duplicate
    assert gaps.observe(8) == 0 and gaps.missing == 15
