"""The pure parts of ``arroyo bench``: which rates it tries, what counts as keeping up,
and how the arrival rate is read from samples."""

from __future__ import annotations

import random

import pytest

from services.bench_search import Search
from services.bench_step import Step, arrival_rate, judge


def chain_that_keeps_up_to(limit: float, flaky: dict[float, int] | None = None):
    """A trial that passes up to ``limit``, but fails the n-th trial of a rate in
    ``flaky`` (rate: n)."""
    calls: dict[float, int] = {}

    def trial(rate: float) -> bool:
        calls[rate] = calls.get(rate, 0) + 1
        if (flaky or {}).get(rate) == calls[rate]:
            return False
        return rate <= limit

    return trial


@pytest.mark.parametrize("limit", [7.0, 123.0, 999.0, 4321.0])
def test_search_ends_within_its_precision_below_the_limit(limit):
    search = Search(chain_that_keeps_up_to(limit), start=100, precision=0.05, repeats=2)
    found = search.run()
    assert found is not None and found <= limit
    assert search.lowest_fail is not None and search.lowest_fail > limit
    assert search.lowest_fail <= found * 1.05 + 1e-9
    assert search.passes[found] == 3  # the deciding rate ran 1 + repeats times
    assert len(search.trials) < 25


def test_search_rises_by_doubling_then_bisects():
    search = Search(chain_that_keeps_up_to(500), start=100, precision=0.2, repeats=0)
    assert search.run() == 500
    assert search.trials == [100, 200, 400, 800, 600, 500]


def test_a_repeat_that_fails_moves_the_answer_down():
    search = Search(chain_that_keeps_up_to(500, flaky={500.0: 2}), start=100, precision=0.2,
                    repeats=1)
    assert search.run() == 450  # 500 failed once in two: not sustained
    assert search.trials == [100, 200, 400, 800, 600, 500, 500, 450, 450]


def test_nothing_sustained_when_even_the_lowest_rate_fails():
    search = Search(lambda rate: False, start=8, min_rate=1)
    assert search.run() is None
    assert search.trials == [8, 4, 2, 1]


def test_a_failing_start_rate_is_halved_until_one_passes():
    search = Search(chain_that_keeps_up_to(30), start=100, precision=0.1, repeats=0)
    found = search.run()
    assert found is not None and 27 <= found <= 30
    assert search.trials[:3] == [100, 50, 25]


def test_max_rate_ends_the_rise():
    search = Search(chain_that_keeps_up_to(1e9), start=100, repeats=1, max_rate=300)
    assert search.run() == 300
    assert search.trials == [100, 200, 300, 300]


def test_search_always_ends_even_on_a_random_chain():
    rng = random.Random(1)
    search = Search(lambda rate: rng.random() < 0.5, start=100)
    search.run()
    assert len(search.trials) <= 60


def step(**changes) -> Step:
    values = dict(target=100.0, frames=300, sent=300, arrived=300, counted=300, lost=0,
                  dropped=0, accounted=0, achieved=99.0, gb_per_s=0.1, cpu={}, seconds=3.0,
                  passed=False, why="")
    return Step(**{**values, **changes})


@pytest.mark.parametrize(("changes", "complete", "reason"), [
    ({}, True, ""),
    ({"arrived": 290}, False, "did not end in time"),
    ({"lost": 3, "arrived": 297}, True, "lost 3 frames"),
    ({"dropped": 5, "arrived": 295}, True, "5 frames dropped by overflow policy"),
    ({"sent": 250, "arrived": 250}, True, "the source sent only 250 of 300"),
    ({"arrived": 299}, True, "299 of 300 frames arrived"),
    ({"counted": 298}, True, "the sink counted 298 of 300"),
    ({"achieved": 94.0}, True, "fell behind: frames arrived at 94 frames/s, 94%"),
    ({"accounted": 10, "arrived": 290, "counted": 290}, True, ""),  # filtered: not lost
    ({"sent": None}, True, ""),  # a source that logged no ledger: the frames asked for
])
def test_judge_says_why_a_step_did_not_keep_up(changes, complete, reason):
    why = judge(step(**changes), complete=complete, tolerance=0.05)
    assert (why == "") if not reason else reason in why


def test_arrival_rate_is_the_slope_between_first_and_last_frame():
    # 500 frames/s, after 0.3 s of start-up before the first frame
    samples = [(t / 10, max(0, round((t / 10 - 0.3) * 500))) for t in range(1, 30)]
    assert arrival_rate(samples, 2000, (3.1, 1000)) == pytest.approx(500, rel=0.01)


def test_arrival_rate_of_a_run_too_short_to_sample():
    assert arrival_rate([(0.1, 0)], 10, (0.2, 10), began=0.0) == pytest.approx(50)
    assert arrival_rate([(0.1, 0), (0.2, 5)], 10, (0.3, 10)) == pytest.approx(50)
    assert arrival_rate([(0.1, 0)], 10, None) == 0.0
    # two samples inside the run: their exact counts, not the late-seen end
    assert arrival_rate([(0.1, 2), (0.2, 7)], 20, (0.5, 20)) == pytest.approx(50)
