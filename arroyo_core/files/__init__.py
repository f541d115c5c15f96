"""New files in a directory as a source: watched with watchfiles, read once finished with
fabio (TIFF, CBF, EDF) or h5py (HDF5), one Event per image, never twice.

::

    listener   the ``files`` source: watch, scan, runs, Events, acknowledgements
    readers    when a file is finished, and its images
    state      the files read, kept across restarts

Needs ``pip install 'arroyo-stream[files]'`` (watchfiles, fabio, h5py).
"""

from .listener import NewFiles

__all__ = ["NewFiles"]
