"""Arroyo's runnable services: the ``arroyo`` command and process wiring."""
