"""The live view's parts without a server: what it keeps of each message
(arroyo_core.view.latest) and how it colours an image (arroyo_core.view.render)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from arroyo_core import Event, Start, Stop
from arroyo_core.errors import ConfigError

pytest.importorskip("matplotlib")
pytest.importorskip("PIL")

from arroyo_core.view.latest import Latest  # noqa: E402
from arroyo_core.view.render import colour_table, png, scaled  # noqa: E402


def test_it_keeps_a_small_copy_of_the_newest_frame_only():
    latest = Latest(max_side=100, max_points=50)
    latest.take(Start({"run": "r1"}))
    frame = np.arange(2 * 400 * 300, dtype=np.uint16).reshape(2, 400, 300)
    curve = np.linspace(0, 1, 1000)
    latest.take(Event({"run": "r1", "frame": 7, "note": "x" * 200},
                      {"stack": frame, "curve": curve, "total": np.asarray(5.0),
                       "raw": b"abc"}))
    snap = latest.snapshot()
    assert (snap.version, snap.run, snap.frame, snap.frames, snap.running) == (1, "r1", 7, 1,
                                                                                True)
    assert snap.image_name == "stack" and snap.image_shape == (2, 400, 300)
    assert snap.image.shape == (100, 75)  # every 4th pixel of the first plane
    assert np.array_equal(snap.image, frame[0, ::4, ::4])
    assert not np.shares_memory(snap.image, frame)  # the received frame is not held
    assert snap.plots["curve"].size == 50 and snap.values == {"total": 5.0}
    assert snap.bytes == frame.nbytes + curve.nbytes + 8 + 3
    assert "note" not in snap.meta  # long values are not shown
    latest.take(Event({"run": "r1", "frame": 8}, {"curve": curve}))
    snap = latest.snapshot()
    assert snap.frame == 8 and snap.image_shape == (2, 400, 300)  # the last image stays
    latest.take(Stop({"run": "r1"}))
    assert latest.snapshot().running is False


def test_what_cannot_be_drawn_is_left_out():
    latest = Latest()
    latest.take(Event({"frame": 0}, {"names": np.array(["a", "b"]), "z": np.ones((4, 4),
                                                                                complex)}))
    snap = latest.snapshot()
    assert snap.version == 1 and snap.image is None and snap.plots == {}


def test_the_image_named_is_shown():
    latest = Latest(image="b")
    latest.take(Event({"frame": 0}, {"a": np.zeros((4, 4)), "b": np.ones((3, 3))}))
    assert latest.snapshot().image_name == "b"


def test_scaling_spans_the_colour_table_and_log_compresses_bright_values():
    image = np.array([[1, 10], [100, 1000]], dtype=np.uint32)
    indices, low, high = scaled(image)
    assert indices.dtype == np.uint8 and indices.min() == 0 and indices.max() == 255
    log_indices, low, high = scaled(image, log=True)
    assert (low, high) == pytest.approx((0.015, 2.985))  # log10 of 1 and 1000, percentiles
    # on a log scale 10 and 100 are a third and two thirds of the way
    assert log_indices[0, 1] == pytest.approx(85, abs=2)
    assert log_indices[1, 0] == pytest.approx(170, abs=2)
    assert indices[0, 1] < 5  # linear: 10 is next to 1
    zeros, _, _ = scaled(np.zeros((3, 3)), log=True)  # nothing above 0: no colour, no error
    assert not zeros.any()


def test_png_is_the_colour_map_of_the_image():
    from PIL import Image

    image = np.array([[0.0, 1.0], [0.5, np.nan]])
    decoded = np.asarray(Image.open(io.BytesIO(png(image, "magma"))).convert("RGB"))
    table = colour_table("magma")
    assert decoded.shape == (2, 2, 3)
    assert (decoded[0, 0] == table[0]).all() and (decoded[0, 1] == table[255]).all()
    with pytest.raises(ConfigError, match="unknown colour map"):
        colour_table("no-such-map")
