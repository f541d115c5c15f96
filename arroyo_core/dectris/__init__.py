"""DECTRIS stream v2 (SIMPLON 1.8+): CBOR messages over ZeroMQ PUSH/PULL.

::

    cbor          messages: RFC 8746 typed arrays, tag 56500 compression, metadata
    compression   bslz4 (bitshuffle + LZ4) and lz4 in their HDF5 filters' framing
    listener      the ``dectris`` source: series -> runs, counted in a ledger
    simulator     a stand-in detector that sends the same messages (``arroyo dectris-sim``)

Needs ``pip install 'arroyo-stream[dectris]'`` (cbor2, bitshuffle, lz4).
"""

from .listener import DectrisListener
from .simulator import DectrisSimulator, malformed_messages, simulated_image

__all__ = ["DectrisListener", "DectrisSimulator", "malformed_messages", "simulated_image"]
