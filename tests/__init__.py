"""Arroyo's tests: unit (no sockets), integration (real sockets, processes and servers),
and the helpers they share (``tests.support``)."""
