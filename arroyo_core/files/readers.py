"""Reading a finished detector file, and telling whether it is finished.

A file is read once nothing has it open for writing and its size has stayed the same:

- :func:`open_for_writing` asks the kernel (Linux): a read lease (``F_SETLEASE``) is only
  granted on a file no process has open for writing. It needs the file's owner or
  CAP_LEASE and a local file system; elsewhere it answers None (unknown), and the size
  alone decides, after ``settle`` seconds without change.
- An HDF5 file that a writer still holds is locked by HDF5 itself: opening it fails, and
  :func:`open_images` says ``not yet`` (:class:`NotReady`) rather than reading it early.

Images come from fabio (TIFF, CBF, EDF and the other formats it knows; every frame of a
multi-frame file) or h5py (``.h5``, ``.hdf5``, ``.nxs``: one image per index of the first
axis of the dataset named by ``dataset``, or of the first dataset of 2 or more dimensions).
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

HDF5_SUFFIXES = (".h5", ".hdf5", ".nxs", ".nx5", ".hdf")
DEFAULT_DATASETS = ("entry/data/data", "entry/instrument/detector/data", "data")


class NotReady(Exception):
    """The file is still being written (a writer holds it); try again later."""


class Unreadable(Exception):
    """The file is finished but holds no image this reader can read."""


def open_for_writing(path: Path) -> bool | None:
    """Whether a process has ``path`` open for writing (None: cannot tell here)."""
    lease = getattr(fcntl, "F_SETLEASE", None)
    if lease is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        fcntl.fcntl(fd, lease, fcntl.F_RDLCK)
    except OSError as exc:
        return True if exc.errno in (errno.EAGAIN, errno.EBUSY) else None
    else:
        fcntl.fcntl(fd, lease, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)


def open_images(path: Path, dataset: str = "") -> tuple[int, Iterator[np.ndarray]]:
    """How many images ``path`` holds, and an iterator that reads them one at a time (so
    a large HDF5 file is never in memory whole). NotReady or Unreadable as the module says;
    the iterator raises Unreadable if the file fails further in."""
    if path.suffix.lower() in HDF5_SUFFIXES:
        return _hdf5_images(path, dataset)
    return _fabio_images(path)


def _fabio_images(path: Path) -> tuple[int, Iterator[np.ndarray]]:
    import fabio

    try:
        image = fabio.open(str(path))
    except Exception as exc:  # fabio raises many kinds for a file it cannot parse
        raise Unreadable(f"fabio cannot read it: {type(exc).__name__}: {exc}") from None
    frames = max(1, int(getattr(image, "nframes", 1) or 1))

    def images() -> Iterator[np.ndarray]:
        with image:
            for index in range(frames):
                try:
                    frame = image if index == 0 else image.getframe(index)
                except Exception as exc:
                    raise Unreadable(f"frame {index}: {type(exc).__name__}: {exc}") from None
                if frame.data is None:
                    raise Unreadable(f"frame {index} has no data")
                yield np.asarray(frame.data)

    return frames, images()


def _hdf5_images(path: Path, dataset: str) -> tuple[int, Iterator[np.ndarray]]:
    import h5py

    try:
        f = h5py.File(path, "r", locking=True)
    except (BlockingIOError, OSError) as exc:
        if "lock" in str(exc).lower() or isinstance(exc, BlockingIOError):
            raise NotReady(f"an HDF5 writer holds it ({exc})") from None
        raise Unreadable(f"h5py cannot open it: {exc}") from None
    data = _find_dataset(f, dataset)
    if data is None:
        f.close()
        raise Unreadable(f"no dataset {dataset!r}" if dataset else
                         "no dataset of 2 or more dimensions")

    def images() -> Iterator[np.ndarray]:
        with f:
            try:
                if data.ndim == 2:
                    yield data[()]
                    return
                for index in range(data.shape[0]):
                    yield data[index]
            except OSError as exc:  # a chunk that does not decompress, a truncated file
                raise Unreadable(f"h5py cannot read it: {exc}") from None

    return (1 if data.ndim == 2 else data.shape[0]), images()


def _find_dataset(f, name: str):  # type: ignore[no-untyped-def]
    import h5py

    if name:
        found = f.get(name)
        return found if isinstance(found, h5py.Dataset) and found.ndim >= 2 else None
    for candidate in DEFAULT_DATASETS:
        found = f.get(candidate)
        if isinstance(found, h5py.Dataset) and found.ndim >= 2:
            return found
    images: list = []
    f.visititems(lambda _, item: images.append(item) if isinstance(item, h5py.Dataset)
                 and item.ndim >= 2 and not images else None)
    return images[0] if images else None
