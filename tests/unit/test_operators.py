"""Built-in operators: Reduce, Downsample, Threshold (and Start/Stop passing through)."""

from __future__ import annotations

import numpy as np
import pytest

from arroyo_core import ConfigError, Downsample, Event, PassThrough, Reduce, Start, Stop, Threshold

IMAGE = np.arange(24, dtype="<u2").reshape(4, 6)


@pytest.mark.parametrize("operator", [PassThrough(), Reduce(), Downsample(), Threshold(5)])
def test_start_and_stop_pass_through_unchanged(operator):
    start, stop = Start({"run": 1}), Stop({"frames_sent": 0})
    assert operator.process(start) is start
    assert operator.process(stop) is stop


def test_passthrough_forwards_the_same_event():
    event = Event({"frame": 1}, {"image": IMAGE})
    assert PassThrough().process(event) is event


def test_reduce_computes_each_stat_of_each_array_as_0d():
    event = Event({"frame": 3}, {"image": IMAGE, "raw": b"skip me", "vec": np.array([1.0, 3.0])})
    out = Reduce(stats=("sum", "mean", "min", "max", "std")).process(event)
    assert out.meta == {"frame": 3} and out.meta is not event.meta
    assert set(out.payload) == {f"{n}_{s}" for n in ("image", "vec")
                                for s in ("sum", "mean", "min", "max", "std")}
    assert out.payload["image_sum"] == IMAGE.sum() and out.payload["image_sum"].ndim == 0
    assert out.payload["image_max"] == 23 and out.payload["image_min"] == 0
    assert out.payload["vec_mean"] == 2.0 and out.payload["vec_std"] == 1.0


def test_reduce_region_of_interest_on_the_last_two_axes():
    stack = np.stack([IMAGE, IMAGE * 2])
    out = Reduce(roi=[1, 3, 2, 4], stats=["sum"]).process(Event({}, {"stack": stack}))
    assert out.payload["stack_sum"] == stack[:, 1:3, 2:4].sum()


@pytest.mark.parametrize("kwargs", [dict(stats=["median"]), dict(roi=[0, 1, 2])])
def test_reduce_bad_configuration(kwargs):
    with pytest.raises(ConfigError):
        Reduce(**kwargs)


def test_downsample_mean_and_sum_bin_the_last_two_axes():
    mean = Downsample(2, "mean").process(Event({}, {"image": IMAGE}))
    total = Downsample(2, "sum").process(Event({}, {"image": IMAGE}))
    expected = IMAGE.reshape(2, 2, 3, 2).sum(axis=(1, 3))
    assert np.array_equal(total.payload["image"], expected)
    assert np.allclose(mean.payload["image"], expected / 4)
    assert mean.payload["image"].shape == (2, 3)


def test_downsample_trims_a_remainder_and_keeps_leading_axes():
    stack = np.ones((3, 5, 7), dtype="<f4")
    out = Downsample(2, "sum").process(Event({}, {"stack": stack}))
    assert out.payload["stack"].shape == (3, 2, 3)
    assert np.all(out.payload["stack"] == 4)


def test_downsample_leaves_1d_arrays_bytes_and_factor_1_alone():
    vec = np.arange(5)
    out = Downsample(3).process(Event({"k": 1}, {"vec": vec, "raw": b"xy"}))
    assert out.payload["vec"] is vec and out.payload["raw"] == b"xy"
    same = Downsample(1).process(Event({}, {"image": IMAGE}))
    assert same.payload["image"] is IMAGE


@pytest.mark.parametrize("kwargs", [dict(factor=0), dict(method="median")])
def test_downsample_bad_configuration(kwargs):
    with pytest.raises(ConfigError):
        Downsample(**kwargs)


def test_threshold_zeroes_below_level_and_counts_the_rest():
    out = Threshold(level=20).process(Event({"frame": 1}, {"image": IMAGE, "raw": b"r"}))
    image = out.payload["image"]
    assert image.dtype == IMAGE.dtype and image.shape == IMAGE.shape
    assert image.sum() == 20 + 21 + 22 + 23
    assert out.payload["image_count"] == 4
    assert out.payload["raw"] == b"r"
    assert IMAGE.sum() == 276  # the input is not modified in place


def test_threshold_drop_empty_publishes_nothing_for_an_empty_event():
    quiet = Event({}, {"image": np.zeros((2, 2), "<u2")})
    assert Threshold(level=1, drop_empty=True).process(quiet) is None
    kept = Threshold(level=1, drop_empty=False).process(quiet)
    assert kept.payload["image_count"] == 0
