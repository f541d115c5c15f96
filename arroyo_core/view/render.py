"""An image array as a PNG: scaled (linear or log), coloured with a matplotlib colour
map, encoded by Pillow."""

from __future__ import annotations

import io
from functools import cache

import numpy as np

from ..errors import ConfigError

DEFAULT_CMAP = "viridis"
CMAPS = ("viridis", "magma", "inferno", "gray", "jet", "turbo")  # offered on the page


@cache
def colour_table(name: str) -> np.ndarray:
    """The 256 RGB colours of matplotlib's colour map ``name`` (uint8, 256x3)."""
    from matplotlib import colormaps

    if name not in colormaps:
        raise ConfigError(f"unknown colour map {name!r}; e.g. {', '.join(CMAPS)}")
    return (colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)


def scaled(image: np.ndarray, log: bool = False) -> tuple[np.ndarray, float, float]:
    """``image`` as indices 0..255 into a colour table, with the (low, high) values that
    map to the ends: the 0.5th and 99.5th percentiles of the finite values (after log10 of
    the values above 0, with ``log``), so a few hot pixels do not wash the rest out."""
    data = np.asarray(image, dtype=np.float64)
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            data = np.where(data > 0, np.log10(data), np.nan)
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return np.zeros(data.shape, dtype=np.uint8), 0.0, 0.0
    low, high = (float(v) for v in np.percentile(finite, [0.5, 99.5]))
    if high <= low:
        high = low + 1.0
    data = np.nan_to_num(data, nan=low, posinf=high, neginf=low)
    indices = np.clip((data - low) * (255.0 / (high - low)), 0, 255).astype(np.uint8)
    return indices, low, high


def png(image: np.ndarray, cmap: str = DEFAULT_CMAP, log: bool = False) -> bytes:
    """``image`` (2-D) coloured with ``cmap`` as PNG bytes (fast compression: a live view
    redraws often)."""
    from PIL import Image

    indices, _, _ = scaled(image, log)
    rgb = colour_table(cmap)[indices]
    out = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(out, format="PNG", compress_level=1)
    return out.getvalue()
