"""Arroyo's exceptions.

::

    ArroyoError
    ├── ConfigError     a service or plug-in was described wrongly (names the section)
    ├── DecodeError     bytes from the network are not a valid Arroyo message (has a .reason)
    ├── EncodeError     a message cannot be put on the wire (e.g. object dtype, bad metadata)
    ├── ResultError     an operator returned or published what is not a Message the wire
    │                   can carry (says what it was, and what it should be)
    └── FallenBehindError  a receiving link fell further behind its sender than allowed
"""


class ArroyoError(Exception):
    """Base of every error Arroyo raises on purpose."""


class ConfigError(ArroyoError):
    """A configuration names something that does not exist or does not fit."""


class EncodeError(ArroyoError):
    """A message cannot be encoded to the wire format."""


class ResultError(ArroyoError):
    """An operator returned or published something other than Messages the wire can carry.

    The runtime checks every result the same way in one process and in a service, counts
    this error like any other the operator raises, and logs the first.
    """


class DecodeError(ArroyoError):
    """Received frames are not a valid Arroyo message.

    ``reason`` is a short stable word (``"msgpack"``, ``"version"``, ``"size"`` ...) that
    services count by, so a user can see *why* messages were rejected.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class FallenBehindError(ArroyoError):
    """A receiving link is further behind its sender than its ``max_lag`` allows, and was
    told to disconnect rather than hold the sender back or let memory grow."""
