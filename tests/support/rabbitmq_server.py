"""A rabbitmq-server child process for the AMQP tests, private to them: its own node name,
ports, Erlang port mapper (epmd), cookie, data and logs, all in one directory.

The broker's default user has a password with characters that need quoting in a URL, the
links use the vhost ``arroyo``, and ``max_message_size`` is 8 MiB, so the tests of the size
limit need no large messages. It listens for TLS (``amqps://``) too, with a certificate for
127.0.0.1 from a test CA (trustme) whose certificate is :attr:`RabbitMQServer.ca_file`.
It takes several seconds to boot: the tests share one per session, and each test uses
queues of its own.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pika
import trustme

from services.processes import free_port
from tests.support.waiting import wait_for, wait_or_kill

USER = "arroyo"
PASSWORD = "s3cret:with@odd/chars"
VHOST = "arroyo"
MAX_MESSAGE_SIZE = 8 * 2**20
SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # Debian's; /usr/sbin's wrapper su's to rabbitmq
BOOT_TIMEOUT = 60.0


def installed() -> bool:
    return os.access(SERVER, os.X_OK) and shutil.which("epmd") is not None


class RabbitMQServer:
    """rabbitmq-server and its own epmd, as child processes with their files in
    ``directory``. Stopped gracefully (SIGTERM), durable queues and their persistent
    messages survive :meth:`restart`; :meth:`close` stops both processes."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.tls_port = free_port()
        self.epmd_port = free_port()
        self.dist_port = free_port()
        self.node = f"arroyo-test-{self.port}@localhost"
        self.epmd: subprocess.Popen[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None
        ca = trustme.CA()
        self.ca_file = directory / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        server = ca.issue_cert("127.0.0.1")
        server.private_key_pem.write_to_path(str(directory / "server.key"))
        server.cert_chain_pems[0].write_to_path(str(directory / "server.pem"))
        (directory / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            f"listeners.ssl.default = 127.0.0.1:{self.tls_port}\n"
            f"ssl_options.cacertfile = {self.ca_file}\n"
            f"ssl_options.certfile = {directory / 'server.pem'}\n"
            f"ssl_options.keyfile = {directory / 'server.key'}\n"
            "ssl_options.verify = verify_none\nssl_options.fail_if_no_peer_cert = false\n"
            f"default_user = {USER}\ndefault_pass = {PASSWORD}\ndefault_vhost = {VHOST}\n"
            f"loopback_users = none\nmax_message_size = {MAX_MESSAGE_SIZE}\n"
            "disk_free_limit.absolute = 10MB\n")
        (directory / "enabled_plugins").write_text("[].\n")

    def url(self, password: str | None = PASSWORD, vhost: str = VHOST, tls: bool = False) -> str:
        auth = f"{USER}:{quote(password, safe='')}@" if password is not None else ""
        scheme, port = ("amqps", self.tls_port) if tls else ("amqp", self.port)
        return f"{scheme}://{auth}127.0.0.1:{port}/{quote(vhost, safe='')}"

    def environment(self) -> dict[str, str]:
        d = self.directory
        return {**os.environ, "HOME": str(d), "RABBITMQ_NODENAME": self.node,
                "RABBITMQ_NODE_PORT": str(self.port), "RABBITMQ_DIST_PORT": str(self.dist_port),
                "ERL_EPMD_PORT": str(self.epmd_port), "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
                "RABBITMQ_LOG_BASE": str(d / "log"),
                "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
                "RABBITMQ_PID_FILE": str(d / "rabbitmq.pid"), "RABBITMQ_LOGS": "-"}

    def start(self) -> None:
        env = self.environment()
        if self.epmd is None:
            self.epmd = subprocess.Popen(["epmd", "-port", str(self.epmd_port)], env=env,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        log = open(self.directory / "server.log", "ab")  # noqa: SIM115 (the child holds it)
        # its own session: the start script, beam and its helpers are stopped as a group
        self.process = subprocess.Popen([SERVER], env=env, stdout=log, stderr=subprocess.STDOUT,
                                        cwd=self.directory, start_new_session=True)
        log.close()
        wait_for(self._answers, BOOT_TIMEOUT, "rabbitmq-server to accept a connection",
                 interval=0.2)

    def _answers(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.log()
        try:  # (a plain socket first: pika logs each refused connection with a traceback)
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            self.connection().close()
        except OSError:
            return False
        except pika.exceptions.AMQPError:
            return False
        return True

    def connection(self) -> pika.BlockingConnection:
        """A pika connection of the test's own (to look at queues), not through Arroyo."""
        params = pika.URLParameters(self.url())
        params.connection_attempts = 1
        params.socket_timeout = 2
        return pika.BlockingConnection(params)

    def queue(self, name: str, durable: bool = False) -> Any:
        """``queue.declare-ok`` of ``name`` (messages ready, consumers), declared if needed."""
        connection = self.connection()
        try:
            return connection.channel().queue_declare(name, durable=durable).method
        finally:
            connection.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        if self.process is not None:
            try:  # beam's helpers (erl_child_setup, inet_gethost) go with it
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self.epmd is not None:
            self.epmd.terminate()
            wait_or_kill(self.epmd, 10)
            self.epmd = None

    def log(self) -> str:
        path = self.directory / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""
