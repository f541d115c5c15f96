"""What the tests share, imported as ``tests.support.MODULE``.

=================  ======================================================================
``requirements``   skip a test whose requirement is missing (fail instead, in CI)
``waiting``        wait for a condition, or a process, with a deadline
``addresses``      ipc:// addresses in a short per-test directory, tcp ports that
                   the binding side picks
``open_sockets``   the check (a pytest plug-in) that fails a test leaving ZeroMQ sockets open
``messages``       bit-for-bit comparison of messages
``receiver``       a real listener in a thread, collecting what it delivers
``ledgers``        a service's ledger: from its status socket, or its last log line
``plugins``        the environment that lets a service import the test plug-ins
``chains``         chain files for `arroyo run` and supervisord
``supervisord``    a real supervisord running a generated chain
``kills``          a supervised chain whose middle stage is killed again and again, and a
                   receiver that shares no code with Arroyo (test_every_loss, a benchmark)
``netns``          network namespaces standing for other hosts (root only)
``redis_server``   a redis-server child process, and readers of its streams
``chain_ends``     a chain's first and last hop in the test process (Feeder, FrameSink)
``containers``     podman containers from a stock Debian base image (root only)
=================  ======================================================================

Two directories are not modules but what a service process gets on its PYTHONPATH, the
way a user installs packages: ``user_packages/`` (``arroyo_testplugins``, plug-ins named
``arroyo_testplugins.sinks:OrderSink``) and ``third_party/`` (a transport distribution,
found by its own entry point).
"""
