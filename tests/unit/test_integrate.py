"""The integrate operator in one process: its curves are pyFAI's own for the same frames
(a calibrant image pyFAI draws), built once per run from the options or the Start."""

from __future__ import annotations

import numpy as np
import pytest

from arroyo_core import CollectingSink, Event, MemoryListener, Runtime, Start, Stop
from arroyo_core.errors import ConfigError

pyFAI = pytest.importorskip("pyFAI")

from arroyo_core.integrate import Integrate  # noqa: E402  (needs pyFAI)
from arroyo_core.powder_source import powder_frames, powder_geometry  # noqa: E402

SHAPE = (96, 128)
DISTANCE = 0.012  # m: LaB6's first rings fall on this small detector


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return powder_frames(SHAPE, 3, seed=5, geometry=powder_geometry(SHAPE, distance=DISTANCE))


def run(operator, frames, start_meta=None) -> list:
    meta = {"run": "r", "shape": list(SHAPE), **(start_meta or {})}
    messages = [Start(meta), *[Event({"frame": i}, {"image": f}) for i, f in enumerate(frames)],
                Stop({"frames_sent": len(frames)})]
    sink = CollectingSink()
    Runtime(MemoryListener(messages), operator, [sink]).run()
    return sink.messages


def test_curves_equal_pyfai_integrate1d_with_the_geometry_from_the_start(frames):
    geometry = powder_geometry(SHAPE, distance=DISTANCE)
    out = run(Integrate(bins=64, unit="2th_deg", error_model="poisson"), frames,
              {"geometry": geometry})
    reference = pyFAI.load(geometry)
    for index, (frame, event) in enumerate(zip(frames, out[1:-1], strict=True)):
        expected = reference.integrate1d(frame, 64, unit="2th_deg", method="csr",
                                         error_model="poisson")
        np.testing.assert_allclose(event.payload["intensity"], expected.intensity, rtol=1e-6)
        np.testing.assert_allclose(event.payload["sigma"], expected.sigma, rtol=1e-6)
        np.testing.assert_allclose(event.payload["radial"], expected.radial, rtol=1e-12)
        assert event.meta == {"frame": index}  # the Event's metadata, kept
    assert max(float(e.payload["intensity"].max()) for e in out[1:-1]) > 1  # rings, not zeros
    start = out[0]
    assert start.meta["integrate"]["unit"] == "2th_deg"
    np.testing.assert_allclose(start.meta["integrate"]["radial"], out[1].payload["radial"])
    assert start.meta["nxdata"] == {"signal": "intensity", "errors": "sigma", "axes": {
        "radial": {"units": "deg", "long_name": "2theta (deg)"}}}


def test_cake_equals_pyfai_integrate2d_and_options_beat_the_start(frames, tmp_path):
    mask = np.zeros(SHAPE, np.int8)
    mask[:, :10] = 1
    np.save(tmp_path / "mask.npy", mask)
    geometry = powder_geometry(SHAPE, distance=DISTANCE)
    out = run(Integrate(geometry=geometry, mask=str(tmp_path / "mask.npy"), bins=40,
                        azimuthal_bins=12), frames[:1],
              {"geometry": powder_geometry(SHAPE, distance=0.5)})  # not this one
    expected = pyFAI.load(geometry).integrate2d(frames[0], 40, 12, method="csr", mask=mask)
    np.testing.assert_allclose(out[1].payload["cake"], expected.intensity, rtol=1e-6)
    np.testing.assert_allclose(out[1].payload["azimuthal"], expected.azimuthal)


def test_without_a_geometry_each_event_fails_and_says_why(frames):
    operator = Integrate(bins=16)
    runtime_out = run(operator, frames[:2])
    assert [m.kind for m in runtime_out] == ["stop"]  # the Start and both Events failed
    with pytest.raises(ValueError, match="no geometry"):
        operator.build({})


def test_bad_options_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unit"):
        Integrate(unit="furlongs")
    with pytest.raises(ConfigError, match="poni"):
        Integrate(poni=str(tmp_path / "missing.poni"))
