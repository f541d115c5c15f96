"""Transports carry encoded messages between processes; the codec lives in ``wire``."""
