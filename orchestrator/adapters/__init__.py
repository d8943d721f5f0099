"""Thin adapters: libvirt, the guest agent, ansible-runner, processes, files. They translate the
outside world into core events and carry out core commands; decisions stay in ``core``."""
