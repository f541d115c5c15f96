"""Skipping a test whose requirement this machine lacks, except in CI, where every test
must run (``ARROYO_REQUIRE_ALL=1``) and a missing requirement fails it."""

from __future__ import annotations

import os

import pytest

REQUIRE_ALL = os.environ.get("ARROYO_REQUIRE_ALL") == "1"


def skip_unless(condition: bool, reason: str) -> None:
    """Skip with ``reason`` when ``condition`` is false, except in CI where it fails."""
    if not condition:
        if REQUIRE_ALL:
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)
