"""A simulated powder-diffraction detector: calibrant rings as sparse photon counts.

The frames are what an integrating operator and a compressing writer meet at a beamline:
Debye-Scherrer rings of a calibrant (pyFAI draws them for the geometry), turned into
photon counts (Poisson) over a weak background, so most pixels are 0 and a few hold tens
of counts. Each Start carries the ``geometry`` (PONI keys), so ``integrate`` needs no
options of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .errors import ConfigError
from .integrate import require_pyfai
from .sources import SimulatedDetector


def powder_geometry(shape: tuple[int, int], pixel: float = 75e-6, distance: float = 0.05,
                    wavelength: float = 1e-10) -> dict[str, Any]:
    """PONI keys of a flat detector of ``shape`` square pixels, the beam at its centre."""
    return {"poni_version": 2, "detector": "Detector",
            "detector_config": {"pixel1": pixel, "pixel2": pixel, "max_shape": list(shape)},
            "dist": distance, "poni1": shape[0] / 2 * pixel, "poni2": shape[1] / 2 * pixel,
            "rot1": 0.0, "rot2": 0.0, "rot3": 0.0, "wavelength": wavelength}


def powder_frames(shape: tuple[int, int], count: int, calibrant: str = "LaB6",
                  photons: float = 20.0, background: float = 0.02, seed: int = 0,
                  geometry: dict[str, Any] | None = None) -> list[np.ndarray]:
    """``count`` uint16 frames: Poisson counts of ``calibrant``'s rings (peak mean
    ``photons``) over ``background`` mean counts per pixel."""
    pyfai = require_pyfai()
    from pyFAI.calibrant import get_calibrant

    geometry = geometry or powder_geometry(shape)
    integrator = pyfai.load(geometry)
    rings = get_calibrant(calibrant)
    rings.wavelength = geometry["wavelength"]
    mean = rings.fake_calibration_image(integrator, Imax=photons) + background
    rng = np.random.default_rng(seed)
    return [rng.poisson(mean).astype(np.uint16) for _ in range(count)]


class SimulatedPowder(SimulatedDetector):
    """Emits runs of calibrant powder rings as sparse uint16 photon counts, with the
    geometry in each Start (``geometry``, ``calibrant``).

    Parameters
    ----------
    shape
        Of each frame, ``[height, width]``.
    frames
        How many frames in each run.
    rate
        Frames per second; 0 sends as fast as the chain takes them.
    runs
        How many runs to emit one after the other.
    ring
        How many distinct frames to cycle through.
    calibrant
        A calibrant pyFAI knows (``LaB6``, ``CeO2``, ``Si`` ...).
    photons
        Mean counts at the top of the strongest ring.
    background
        Mean counts per pixel everywhere.
    distance
        Sample to detector, m.
    seed
        Of the Poisson draws.
    checksum
        Put ``crc32`` of each frame in its metadata (as :class:`SimulatedDetector`).
    """

    requires = {"pyFAI": "arroyo-stream[pyfai]"}

    def __init__(self, shape: Iterable[int] = (512, 512), frames: int = 100,
                 rate: float = 10.0, runs: int = 1, ring: int = 4, calibrant: str = "LaB6",
                 photons: float = 20.0, background: float = 0.02, distance: float = 0.05,
                 seed: int = 0, checksum: bool = False) -> None:
        dims = tuple(int(n) for n in shape)
        if len(dims) != 2:
            raise ConfigError(f"option shape: expected [height, width], got {shape!r}")
        super().__init__(shape=dims, dtype="uint16", frames=frames, rate=rate, runs=runs,
                         ring=1, seed=seed)
        self.geometry = powder_geometry((dims[0], dims[1]), distance=distance)
        self.calibrant = calibrant
        try:
            self.ring = powder_frames((dims[0], dims[1]), max(1, ring), calibrant, photons,
                                      background, seed, self.geometry)
        except KeyError:
            raise ConfigError(f"option calibrant: pyFAI knows no calibrant {calibrant!r}") from None
        if checksum:
            import zlib

            self.crcs = [zlib.crc32(frame) for frame in self.ring]  # type: ignore[arg-type]

    def start_meta(self) -> dict[str, Any]:
        return {"source": "powder", "geometry": self.geometry, "calibrant": self.calibrant}
