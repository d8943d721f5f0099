"""Endpoint Testbed orchestrator: the engine that turns a candidate and a matrix into a verdict.

Layers: ``core`` holds the decisions as pure functions and data (matrix expansion, the cell
state machine, crash classification, verdict rules, scheduling). ``adapters`` translate libvirt,
the guest agent, ansible-runner and the filesystem into core events and carry out core commands.
``engine`` wires the two together. Nothing in ``core`` imports an adapter.
"""
