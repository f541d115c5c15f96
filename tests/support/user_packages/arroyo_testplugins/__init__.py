"""A user's plug-in package, as the integration tests' service processes import it.

``tests.support.plugins.plugin_env()`` puts ``tests/support/user_packages`` on the child's
PYTHONPATH, so these classes are named the way a user names theirs:
``arroyo_testplugins.operators:Flaky``.
"""
