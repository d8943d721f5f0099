"""The ``testbed`` command line."""
