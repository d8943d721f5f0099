"""The front doors of Endpoint Testbed: the ``testbed`` CLI (and, next, the REST service).

Arrows point from here into ``orchestrator``, never back.
"""
