"""Redis transport (being moved onto the link layer; see links.py)."""

from .links import (
    RedisPubSubListener,
    RedisPubSubPublisher,
    RedisStreamListener,
    RedisStreamPublisher,
)

__all__ = ["RedisPubSubListener", "RedisPubSubPublisher", "RedisStreamListener",
           "RedisStreamPublisher"]
