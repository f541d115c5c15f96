"""What a service process needs on its PYTHONPATH to import the tests' plug-ins, as a
user's would be installed: ``user_packages/`` (``arroyo_testplugins``) and, for the test
of a transport from another distribution, ``third_party/``."""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
USER_PACKAGES = HERE / "user_packages"
THIRD_PARTY = HERE / "third_party"


def plugin_env(*directories: Path) -> dict[str, str]:
    """Environment in which a service process imports ``arroyo_testplugins`` (and whatever
    is in ``directories``), in front of the test process's own PYTHONPATH."""
    path = os.environ.get("PYTHONPATH")
    parts = [str(d) for d in (*directories, USER_PACKAGES)] + ([path] if path else [])
    return {"PYTHONPATH": os.pathsep.join(parts)}
