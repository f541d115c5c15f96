"""Network namespaces for tests that need "other hosts": created, wired and removed by the
test itself (root only). Nothing is added to the host's own namespace except the
namespaces' names and, when asked, files under /etc/netns/NAME (which `ip netns exec`
mounts over /etc inside the namespace)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

from tests.support.requirements import skip_unless

ETC_NETNS = Path("/etc/netns")


def require_root() -> None:
    """Skip (fail in CI) unless namespaces can be made here."""
    skip_unless(os.geteuid() == 0, "network namespaces need root (CI runs as root)")
    skip_unless(shutil.which("ip") is not None, "needs iproute2's `ip` (apt install iproute2)")


def ip(*args: str) -> str:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if result.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


class Namespaces:
    """Namespaces named ``arroyo-TAG-NAME``; :meth:`remove` deletes all of them."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.made: list[str] = []
        self.etc: list[Path] = []
        self.made_etc_netns = False

    def add(self, name: str, hosts: str | None = None) -> str:
        """Create namespace ``name`` with loopback up; ``hosts`` becomes its /etc/hosts."""
        full = f"arroyo-{self.tag}-{name}"
        if hosts is not None:
            if not ETC_NETNS.exists():
                ETC_NETNS.mkdir()
                self.made_etc_netns = True
            (ETC_NETNS / full).mkdir()
            self.etc.append(ETC_NETNS / full)
            (ETC_NETNS / full / "hosts").write_text(hosts)
        ip("netns", "add", full)
        self.made.append(full)
        ip("-n", full, "link", "set", "lo", "up")
        return full

    def veth(self, ns: str, name: str, peer_ns: str, peer: str) -> None:
        """A veth pair created directly inside the two namespaces."""
        ip("link", "add", name, "netns", ns, "type", "veth", "peer", "name", peer,
           "netns", peer_ns)

    @staticmethod
    def exec_prefix(ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]

    def run(self, ns: str, *command: str, timeout: float = 20) -> subprocess.CompletedProcess:
        return subprocess.run([*self.exec_prefix(ns), *command], capture_output=True,
                              text=True, timeout=timeout)

    def remove(self) -> None:
        for full in reversed(self.made):
            subprocess.run(["ip", "netns", "del", full], capture_output=True, timeout=20)
        for directory in self.etc:
            shutil.rmtree(directory, ignore_errors=True)
        if self.made_etc_netns:
            try:
                ETC_NETNS.rmdir()
            except OSError:
                pass
