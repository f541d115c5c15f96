"""The origins a reliable receiver has had (arroyo_core.origins): runs that come in order
are kept as spans, the rest key by key, and the answers are those of a plain set of every
key had (the oracle here), except that keys older than the newest half of a full memory
count as had."""

from __future__ import annotations

import random

import pytest

from arroyo_core import origins
from arroyo_core.origins import SeenOrigins


def add_run(seen: SeenOrigins, oracle: set, oseq: int, k: int, n: int) -> None:
    seen.add_run(oseq, k, n)
    oracle.update((seq, k) for seq in range(oseq, oseq + n))


def test_runs_in_order_are_one_span_and_a_repeat_is_had():
    seen = SeenOrigins()
    for oseq in range(0, 6400, 64):
        seen.add_run(oseq, 0, 64)
    assert seen.spans == [[0, 6399, 0]] and not seen.keys and seen.count == 6400
    assert seen.had((0, 0)) and seen.had((3000, 0)) and seen.had((6399, 0))
    assert not seen.had((6400, 0))
    assert not seen.had((3000, 1))  # a second result of the same input: not had
    assert not seen.add((3000, 0)) and seen.add((3000, 1)) and not seen.add((3000, 1))


def test_a_gap_between_runs_is_not_had_and_is_taken_when_it_comes_late():
    seen = SeenOrigins()
    seen.add_run(0, 0, 10)
    seen.add_run(20, 0, 10)  # 10..19 filtered upstream, or still on another worker
    assert len(seen.spans) == 2
    assert not seen.had((15, 0))
    assert seen.add((15, 0))  # came late (a pool): new once
    assert not seen.add((15, 0))
    assert seen.had((15, 0)) and not seen.had((16, 0)) and seen.high == (29, 0)


@pytest.mark.parametrize("seed", range(6))
def test_answers_are_those_of_a_set_of_every_key_had(seed: int):
    rng = random.Random(seed)
    seen, oracle = SeenOrigins(), set()
    oseq = 0
    for step in range(300):
        k = rng.choice([0, 0, 0, 1, 65536])
        if rng.random() < 0.6:  # a run in order, after a gap or not
            oseq += rng.choice([0, 0, 1, 5])
            n = rng.randint(1, 8)
            if (oseq, k) > seen.high:
                add_run(seen, oracle, oseq, k, n)
                oseq += n
        else:  # one key, anywhere (out of order, or a repeat)
            key = (rng.randint(0, oseq + 3), k)
            assert seen.add(key) == (key not in oracle)
            oracle.add(key)
        for probe in range(oseq + 3) if step % 5 == 0 else ():
            for k in (0, 1, 65536):
                assert seen.had((probe, k)) == ((probe, k) in oracle)
    assert seen.count == len(oracle) <= origins.MAX_SEEN


@pytest.mark.parametrize("seed", range(6))
def test_memory_stays_bounded_and_only_older_keys_are_forgotten(seed: int,
                                                                 monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(origins, "MAX_SEEN", 64)
    rng = random.Random(seed)
    seen, oracle, added = SeenOrigins(), set(), []
    oseq = 0
    for step in range(1500):
        if rng.random() < 0.5:  # two workers' runs, interleaved: some come late
            n = rng.randint(1, 6)
            late = rng.random() < 0.4 and oseq > 60
            start = oseq - rng.randint(8, 60) if late else oseq
            keys = [(seq, 0) for seq in range(start, start + n)]
            if late:
                for key in keys:
                    fresh = seen.add(key)
                    assert fresh == (key not in oracle and key > seen.low) or \
                        (not fresh and key <= seen.low)
            else:
                seen.add_run(start, 0, n)
                oseq += n
            oracle.update(keys)
            added.extend(keys)
        assert seen.count <= 64
        # never a key had taken for new: forgotten ones are <= low
        assert all(seen.had(key) for key in (oracle if step % 100 == 0 else added[-80:]))
        low = seen.low
        for key in {*added[-40:], *((seq, 0) for seq in range(max(0, oseq - 40), oseq + 2))}:
            assert seen.had(key) == (key <= low or key in oracle)
    assert seen.low > (0, 0)  # it did forget


def test_a_long_span_forgets_exactly_its_older_half(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(origins, "MAX_SEEN", 64)
    seen = SeenOrigins()
    for oseq in range(0, 65, 5):
        seen.add_run(oseq, 0, 5)  # the 65th key goes past the bound
    assert seen.low == (32, 0) and seen.spans == [[33, 64, 0]] and seen.count == 32
    assert seen.had((32, 0)) and seen.had((64, 0)) and not seen.had((65, 0))


def test_keys_that_came_late_are_forgotten_oldest_first(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(origins, "MAX_SEEN", 64)
    seen = SeenOrigins()
    seen.add_run(100, 0, 30)
    for oseq in range(35):  # late, and older than every span: the first to go
        assert seen.add((oseq, 0))
    assert seen.low == (32, 0) and seen.keys == {(33, 0), (34, 0)} and seen.count == 32
    assert all(seen.had((oseq, 0)) for oseq in [*range(35), *range(100, 130)])
    assert not seen.had((35, 0)) and seen.add((35, 0))
