#!/bin/sh
# Remove the testbed-sensor sample endpoint sensor (run as root).
# Safe to run repeatedly; removes the module for every kernel release.
set -eu

PROG=testbed-sensor-uninstall
MODNAME=testbed_sensor

msg() { printf '%s: %s\n' "$PROG" "$*"; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

case ${1:-} in
	-h|--help) echo "usage: uninstall.sh"; exit 0 ;;
	'') ;;
	*) die "unknown argument: $1" ;;
esac
[ "$(id -u)" -eq 0 ] || die "must be run as root"

# Stop boot-time loading first, then the running sensor.
rm -f /etc/modules-load.d/testbed-sensor.conf /etc/modprobe.d/testbed-sensor.conf

if [ -d "/sys/module/$MODNAME" ]; then
	msg "stopping sensor"
	modprobe -r "$MODNAME" 2>/dev/null || rmmod "$MODNAME" ||
		die "cannot unload $MODNAME"
fi

for ko in /lib/modules/*/extra/$MODNAME.ko; do
	[ -e "$ko" ] || continue
	rel=${ko#/lib/modules/}; rel=${rel%%/*}
	rm -f "$ko"
	if [ -d "/lib/modules/$rel/kernel" ] || [ -f "/lib/modules/$rel/modules.order" ]; then
		depmod -a "$rel" 2>/dev/null || msg "warning: depmod failed for $rel"
	fi
	msg "removed module for $rel"
done

rm -rf /lib/firmware/testbed-sensor /var/lib/testbed-sensor
sync
msg "testbed-sensor removed"
exit 0
