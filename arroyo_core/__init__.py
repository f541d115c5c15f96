"""Arroyo: move data from instruments through processing steps, zero-copy over ZeroMQ."""

from typing import Any as _Any

from .components import FunctionOperator, Listener, Operator, Publisher
from .config import ServiceConfig
from .errors import ArroyoError, ConfigError, DecodeError, EncodeError
from .event_builder import EventBuilder
from .link import InputLink, OutputLink, ZmqListener, ZmqPublisher
from .message import Event, Message, Start, Stop
from .named_links import REDIS_NAMES as _REDIS_NAMES
from .named_links import (
    ZMQListener,
    ZMQPublisher,
    ZMQPubSubListener,
    ZMQPubSubPublisher,
)
from .operators import Downsample, PassThrough, Reduce, Threshold
from .queues import MessageQueue
from .reducer import Reducer
from .runtime import Runtime
from .scan_sources import SimulatedStream
from .sinks import CollectingSink, HDF5Sink, StatsSink
from .sources import MemoryListener, SimulatedDetector
from .wire import Limits, decode, encode

__all__ = [
    "ArroyoError",
    "CollectingSink",
    "ConfigError",
    "DecodeError",
    "Downsample",
    "EncodeError",
    "Event",
    "EventBuilder",
    "FunctionOperator",
    "HDF5Sink",
    "InputLink",
    "Limits",
    "Listener",
    "MemoryListener",
    "Message",
    "MessageQueue",
    "Operator",
    "OutputLink",
    "PassThrough",
    "Publisher",
    "Reduce",
    "Reducer",
    "Runtime",
    "ServiceConfig",
    "SimulatedDetector",
    "SimulatedStream",
    "Start",
    "StatsSink",
    "Stop",
    "Threshold",
    "ZMQListener",
    "ZMQPubSubListener",
    "ZMQPubSubPublisher",
    "ZMQPublisher",
    "ZmqListener",
    "ZmqPublisher",
    "decode",
    "encode",
]


def __getattr__(name: str) -> _Any:
    """``RedisListener`` and ``RedisPublisher`` (the design's names of the Redis stream
    links): imported when asked for, as they need redis-py; so they are not in ``__all__``
    and ``from arroyo_core import *`` works without it."""
    if name in _REDIS_NAMES:
        from .transports import redis

        return getattr(redis, _REDIS_NAMES[name])
    raise AttributeError(f"module 'arroyo_core' has no attribute {name!r}")
