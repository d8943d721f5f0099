"""Wiring: feeds adapter events into the pure cell machine and carries out its commands."""
