"""Azimuthal integration with pyFAI: each frame becomes its I(q) (or I(2θ), I(r)) curve.

pyFAI does the work; this module only builds its integrator once per run and hands it
each frame. The integrator is built at the run's Start (from the operator's options, or
the Start's ``geometry``), and warmed up there on an empty frame when the Start says the
frame ``shape``, so that the first frame does not pay for pyFAI's look-up tables. Every
process that runs the operator sees the Start and builds its own, which is what a pool of
workers needs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .components import Operator, Results
from .compression import expand
from .errors import ConfigError
from .message import Event, Payload, Start

log = logging.getLogger(__name__)

INSTALL = "arroyo-stream[pyfai]"
# pyFAI's unit name -> (the axis' name in the payload's metadata, its units as NeXus writes them)
UNITS = {"q_nm^-1": ("q", "1/nm"), "q_A^-1": ("q", "1/angstrom"), "2th_deg": ("2theta", "deg"),
         "2th_rad": ("2theta", "rad"), "r_mm": ("r", "mm"), "r_m": ("r", "m")}


def require_pyfai() -> Any:
    """pyFAI, or a one-line ConfigError naming the extra that installs it."""
    # silx warns at every import that pyopencl is missing: GPU methods only, not used here
    logging.getLogger("silx.opencl.common").setLevel(logging.ERROR)
    try:
        import pyFAI
        import pyFAI.integrator.azimuthal  # noqa: F401  (the integrator lives there)
    except ImportError:
        raise ConfigError(f"needs pyFAI, which is not installed: pip install '{INSTALL}'") from None
    return pyFAI


def load_mask(path: str) -> np.ndarray:
    """A mask file as pyFAI reads one: nonzero pixels are left out. ``.npy`` or any image
    format fabio reads (EDF, TIFF, ...)."""
    if path.endswith(".npy"):
        return np.load(path, allow_pickle=False)
    import fabio  # installed with pyFAI

    return np.asarray(fabio.open(path).data)


class Integrate(Operator):
    """Azimuthally integrates each frame with pyFAI (``integrate1d``, or ``integrate2d``
    for a cake): the Event's payload becomes ``radial`` and ``intensity`` (and ``sigma``,
    ``azimuthal`` and ``cake`` when asked), its metadata is kept.

    The geometry comes from ``poni`` or ``geometry`` if given, else from the Start's
    ``geometry`` (a dict as a PONI file holds it); the Start passed on gains ``integrate``
    (the settings, and the radial axis when the Start gave the frame ``shape``) and
    ``nxdata`` (which entry is the signal, its errors and its axes, with units: what the
    NeXus sink needs for its ``NXdata``).

    Parameters
    ----------
    poni
        A PONI file (pyFAI-calib2 writes them).
    geometry
        The PONI keys instead of a file: ``dist``, ``poni1``, ``poni2``, ``rot1``-``rot3``
        (m, rad), ``wavelength`` (m), ``detector`` and ``detector_config``.
    mask
        A mask file (``.npy``, or an image fabio reads): nonzero pixels are left out.
    bins
        Points of the radial axis.
    unit
        Of the radial axis: ``q_nm^-1``, ``q_A^-1``, ``2th_deg``, ``2th_rad``, ``r_mm``, ``r_m``.
    method
        pyFAI's integration method, e.g. ``csr`` or ``[bbox, csr, cython]``.
    error_model
        ``poisson`` or ``azimuthal`` adds ``sigma``, the error of each point.
    azimuthal_bins
        More than 0: a 2-D cake of that many azimuthal sectors (``cake``, ``azimuthal``)
        instead of the 1-D curve.
    correct_solid_angle
        Correct for each pixel's solid angle, as pyFAI does by default.
    polarization_factor
        Between -1 and 1 to correct for polarisation; none if omitted.
    entry
        The payload entry holding the frame.
    keep_frame
        Pass the frame on beside the results (zero-copy), e.g. for a writer of both.
    """

    requires = {"pyFAI": INSTALL}

    def __init__(self, poni: str | None = None, geometry: dict[str, Any] | None = None,
                 mask: str | None = None, bins: int = 1000, unit: str = "q_nm^-1",
                 method: str | list[str] = "csr",
                 error_model: Literal["poisson", "azimuthal"] | None = None,
                 azimuthal_bins: int = 0, correct_solid_angle: bool = True,
                 polarization_factor: float | None = None, entry: str = "image",
                 keep_frame: bool = False) -> None:
        super().__init__()
        if unit not in UNITS:
            raise ConfigError(f"option unit: expected one of {', '.join(UNITS)}, got {unit!r}")
        if bins < 1 or azimuthal_bins < 0:
            raise ConfigError(f"options bins, azimuthal_bins: expected 1 or more and 0 or more, "
                              f"got {bins!r}, {azimuthal_bins!r}")
        if poni is not None and geometry is not None:
            raise ConfigError("give one of the options poni and geometry, not both")
        if poni is not None and not Path(poni).is_file():
            raise ConfigError(f"option poni: no file {poni!r}")
        self.poni, self.geometry = poni, geometry
        self.mask = load_mask(mask) if mask is not None else None
        self.bins, self.unit = int(bins), unit
        self.method = method if isinstance(method, str) else tuple(method)
        self.error_model = error_model
        self.azimuthal_bins = int(azimuthal_bins)
        self.correct_solid_angle = correct_solid_angle
        self.polarization_factor = polarization_factor
        self.entry, self.keep_frame = entry, keep_frame
        self.integrator: Any = None
        self._problem = "no run has started: the integrator is built at a Start"
        require_pyfai()  # a missing pyFAI fails at start, not at the first frame

    def build(self, meta: dict[str, Any]) -> Any:
        """The pyFAI integrator for a run whose Start metadata is ``meta``."""
        pyfai = require_pyfai()
        source = self.poni if self.poni is not None else self.geometry
        if source is None:
            source = meta.get("geometry")
            if not isinstance(source, dict):
                raise ValueError("no geometry: give the option poni or geometry, or a Start "
                                 "whose metadata holds 'geometry' (the PONI keys)")
        return pyfai.load(source)

    def integrate(self, frame: np.ndarray) -> dict[str, Payload]:
        """The payload of results for one frame, from the run's integrator."""
        options = dict(unit=self.unit, method=self.method, mask=self.mask,
                       error_model=self.error_model,
                       correctSolidAngle=self.correct_solid_angle,
                       polarization_factor=self.polarization_factor)
        if self.azimuthal_bins:
            cake = self.integrator.integrate2d(frame, self.bins, self.azimuthal_bins, **options)
            payload: dict[str, Payload] = {
                "radial": cake.radial, "azimuthal": cake.azimuthal, "cake": cake.intensity}
        else:
            curve = self.integrator.integrate1d(frame, self.bins, **options)
            payload = {"radial": curve.radial, "intensity": curve.intensity}
        if self.error_model is not None:
            payload["sigma"] = (cake if self.azimuthal_bins else curve).sigma
        return payload

    def on_start(self, start: Start) -> Results:
        self.integrator = None
        try:
            self.integrator = self.build(start.meta)
        except Exception as exc:
            self._problem = f"the run's integrator could not be built: {exc}"
            raise
        settings: dict[str, Any] = {
            "unit": self.unit, "bins": self.bins, "azimuthal_bins": self.azimuthal_bins,
            "method": list(self.method) if isinstance(self.method, tuple) else self.method,
            "error_model": self.error_model, "pyfai": require_pyfai().version}
        shape = start.meta.get("shape")
        if isinstance(shape, list) and len(shape) == 2 and all(type(n) is int for n in shape):
            warm = self.integrate(np.zeros(shape, np.float32))  # builds pyFAI's tables now
            settings["radial"] = [float(x) for x in warm["radial"]]
        return Start({**start.meta, "integrate": settings, "nxdata": self.nxdata()})

    def nxdata(self) -> dict[str, Any]:
        """How the results read as NeXus ``NXdata``: signal, errors and axes with units."""
        name, units = UNITS[self.unit]
        signal = "cake" if self.azimuthal_bins else "intensity"
        axes = {"radial": {"units": units, "long_name": f"{name} ({units})"}}
        if self.azimuthal_bins:
            axes = {"azimuthal": {"units": "deg", "long_name": "chi (deg)"}, **axes}
        hints: dict[str, Any] = {"signal": signal, "axes": axes}
        if self.error_model is not None:
            hints["errors"] = "sigma"
        return hints

    def on_event(self, event: Event) -> Results:
        if self.integrator is None:
            raise ValueError(f"integrate: {self._problem}")
        event = expand(event)  # frames sent compressed (arroyo_core.compression)
        frame = event.payload.get(self.entry)
        if not isinstance(frame, np.ndarray) or frame.ndim != 2:
            raise ValueError(f"integrate: the Event has no 2-D entry {self.entry!r} "
                             f"(entries: {sorted(event.payload)})")
        payload = self.integrate(frame)
        if self.keep_frame:
            payload = {self.entry: frame, **payload}
        return Event(dict(event.meta), payload)
