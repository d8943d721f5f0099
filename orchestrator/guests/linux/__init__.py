"""The Linux guest family."""

from orchestrator.guests.linux.family import LinuxFamily

__all__ = ["LinuxFamily"]
