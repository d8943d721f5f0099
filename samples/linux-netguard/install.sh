#!/bin/sh
# Install the sample netguard traffic classifier (run as root in a guest).
#
#   install.sh
#
# Installs the testbed_netguard kernel module built for the running kernel,
# makes it load at every boot (/etc/modules-load.d/netguard.conf: files load in
# name order, so netguard comes up before the sample sensor's
# testbed-sensor.conf), installs the health check
# (/var/lib/netguard/healthcheck.sh), starts the classifier now and verifies
# that it classifies.  Re-running it upgrades in place.
#
# !!! Only run this inside a disposable test VM: together with the sample
# sensor 1.1.0 the classifier cuts the machine off the network (see
# module/testbed_netguard.c).
#
# Exit codes: 0 ok, 2 usage, 3 unsupported kernel, 4 install step failed,
#             5 classifier failed to start.
set -eu

PROG=netguard-install
MODNAME=testbed_netguard
LOAD_CONF=/etc/modules-load.d/netguard.conf
STATE_DIR=/var/lib/netguard
PARAM_DIR=/sys/module/$MODNAME/parameters

msg() { printf '%s: %s\n' "$PROG" "$*"; }
die() { code=$1; shift; printf '%s: error: %s\n' "$PROG" "$*" >&2; exit "$code"; }
usage() {
	cat <<USAGE
usage: install.sh

Installs the netguard traffic classifier's kernel module for the running
kernel, enables loading at boot, and starts the classifier.
USAGE
}

PKG_DIR=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)

while [ $# -gt 0 ]; do
	case $1 in
	-h|--help) usage; exit 0 ;;
	*) usage >&2; die 2 "unknown argument: $1" ;;
	esac
done
[ "$(id -u)" -eq 0 ] || die 4 "must be run as root"

VERSION=unknown
[ -f "$PKG_DIR/VERSION" ] && VERSION=$(cat "$PKG_DIR/VERSION")

KREL=$(uname -r)
MODULE_SRC=$PKG_DIR/modules/$KREL/$MODNAME.ko
if [ ! -f "$MODULE_SRC" ]; then
	supported=
	for d in "$PKG_DIR"/modules/*/; do
		[ -f "$d$MODNAME.ko" ] || continue
		r=${d%/}; r=${r##*/}
		supported="$supported${supported:+, }$r"
	done
	die 3 "kernel $KREL is not supported by netguard $VERSION (supported kernel releases: ${supported:-none})"
fi

for tool in modprobe depmod install; do
	command -v "$tool" >/dev/null 2>&1 || die 4 "required tool not found: $tool"
done

msg "installing netguard $VERSION for kernel $KREL"
if [ -d "/sys/module/$MODNAME" ]; then
	msg "stopping running classifier"
	modprobe -r "$MODNAME" || die 4 "cannot unload the running $MODNAME module"
fi

MOD_DIR=/lib/modules/$KREL/extra
if cmp -s "$MODULE_SRC" "$MOD_DIR/$MODNAME.ko" &&
	grep -q "^extra/$MODNAME.ko:" "/lib/modules/$KREL/modules.dep" 2>/dev/null; then
	msg "module for $KREL already installed"
else
	install -d -m 0755 "$MOD_DIR" || die 4 "cannot create $MOD_DIR"
	install -m 0644 "$MODULE_SRC" "$MOD_DIR/$MODNAME.ko.tmp" &&
		mv -f "$MOD_DIR/$MODNAME.ko.tmp" "$MOD_DIR/$MODNAME.ko" ||
		die 4 "cannot install module to $MOD_DIR"
	msg "running depmod for $KREL"
	depmod -a "$KREL" || die 4 "depmod failed for $KREL"
fi

install -d -m 0755 "$(dirname "$LOAD_CONF")" || die 4 "cannot create $(dirname "$LOAD_CONF")"
printf '# netguard: classify inbound traffic from every boot on\n%s\n' "$MODNAME" > "$LOAD_CONF.tmp" &&
	mv -f "$LOAD_CONF.tmp" "$LOAD_CONF" ||
	die 4 "cannot write $LOAD_CONF"

install -d -m 0755 "$STATE_DIR" || die 4 "cannot create $STATE_DIR"
printf '%s\n' "$VERSION" > "$STATE_DIR/VERSION" || die 4 "cannot write $STATE_DIR/VERSION"
install -m 0755 "$PKG_DIR/uninstall.sh" "$STATE_DIR/uninstall.sh" || die 4 "cannot install uninstall.sh"
install -m 0755 "$PKG_DIR/healthcheck.sh" "$STATE_DIR/healthcheck.sh" || die 4 "cannot install healthcheck.sh"
sync

msg "starting classifier (modprobe $MODNAME)"
modprobe "$MODNAME" || die 5 "modprobe $MODNAME failed (see dmesg)"
[ "$(cat "$PARAM_DIR/classifying" 2>/dev/null || echo 0)" = 1 ] || die 5 "$MODNAME is not classifying"
msg "classifier running: $(cat "$PARAM_DIR/packets_classified") inbound packets classified so far"
exit 0
