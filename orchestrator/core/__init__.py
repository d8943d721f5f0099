"""Pure decisions: no libvirt, ansible, SSH, HTTP or database imports below this package."""
