"""A user's plug-in package, as the integration tests' service processes import it.

Service fixtures put ``tests/integration`` on the child's PYTHONPATH, so these classes are
named the way a user names theirs: ``arroyo_testplugins.operators:Flaky``.
"""
