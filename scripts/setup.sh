#!/usr/bin/env bash
# Sets up everything Endpoint Testbed needs on a Debian/Ubuntu machine, idempotently:
# system packages (only the missing ones), the libvirt daemons (only when not running), and the
# project's virtualenv (only when pyproject.toml changed). Silent when there is nothing to do.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root for: $* (run as root, or install sudo)"; fi
}

# --- system packages -------------------------------------------------------------------------
packages=(
  qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients libvirt-dev pkg-config ovmf
  dnsmasq-base debootstrap busybox-static cpio e2fsprogs openssh-client
  gcc make python3-venv python3-dev
  postgresql
  chromium
  # Windows guests, on KVM hosts: swtpm's TPM 2.0 for Windows 11 domains and image builds, xorriso
  # for the build's answer-file CD and the virtio-win drivers.
  swtpm swtpm-tools xorriso
)
# The sample sensor is built against the kernel headers of every Linux image's kernel.
for definition in images/linux/*.yaml; do
  kernel=$(sed -n 's/^kernel: *//p' "$definition")
  [ -n "$kernel" ] && packages+=("linux-headers-$kernel")
done

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- libvirt daemons -------------------------------------------------------------------------
libvirt_answers() { timeout 10 virsh -c qemu:///system version >/dev/null 2>&1; }
if ! libvirt_answers; then
  if [ -d /run/systemd/system ]; then
    say "starting virtlogd and libvirtd (systemd)"
    as_root systemctl start virtlogd.socket libvirtd.socket libvirtd.service
  else
    # No systemd here (containers, CI): start the daemons ourselves.
    pgrep -x virtlogd >/dev/null || { say "starting virtlogd"; as_root virtlogd -d; }
    pgrep -x libvirtd >/dev/null || { say "starting libvirtd"; as_root libvirtd -d; }
  fi
  for _ in $(seq 1 50); do libvirt_answers && break; sleep 0.2; done
  libvirt_answers || die "libvirtd does not answer on qemu:///system"
fi

# --- the project's virtualenv ----------------------------------------------------------------
python=${PYTHON:-python3}
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $($python --version 2>&1)"
  "$python" -m venv .venv
fi
if [ ! -f "$stamp" ]; then
  say "installing the project and its dev tools into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v '^WARNING: Location' >&2 || true
  .venv/bin/python -c 'import libvirt, ansible_runner, orchestrator, api' || die "the project did not install into .venv"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
