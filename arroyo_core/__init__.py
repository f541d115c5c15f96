"""Arroyo: move data from instruments through processing steps, zero-copy over ZeroMQ."""

from .components import FunctionOperator, Listener, Operator, Publisher
from .config import ServiceConfig
from .errors import ArroyoError, ConfigError, DecodeError, EncodeError
from .link import InputLink, OutputLink, ZmqListener, ZmqPublisher
from .message import Event, Message, Start, Stop
from .named_links import (
    RedisListener,
    RedisPublisher,
    ZMQListener,
    ZMQPublisher,
    ZMQPubSubListener,
    ZMQPubSubPublisher,
)
from .operators import Downsample, PassThrough, Reduce, Threshold
from .queues import MessageQueue
from .runtime import Runtime
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
    "RedisListener",
    "RedisPublisher",
    "Reduce",
    "Runtime",
    "ServiceConfig",
    "SimulatedDetector",
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
