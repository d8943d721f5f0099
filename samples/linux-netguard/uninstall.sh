#!/bin/sh
# Remove the sample netguard classifier (run as root). Safe to run repeatedly; removes the module
# for every kernel release.
set -eu

PROG=netguard-uninstall
MODNAME=testbed_netguard

msg() { printf '%s: %s\n' "$PROG" "$*"; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

case ${1:-} in
	-h|--help) echo "usage: uninstall.sh"; exit 0 ;;
	'') ;;
	*) die "unknown argument: $1" ;;
esac
[ "$(id -u)" -eq 0 ] || die "must be run as root"

rm -f /etc/modules-load.d/netguard.conf
if [ -d "/sys/module/$MODNAME" ]; then
	msg "stopping classifier"
	modprobe -r "$MODNAME" 2>/dev/null || rmmod "$MODNAME" || die "cannot unload $MODNAME"
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
rm -rf /var/lib/netguard
sync
msg "netguard removed"
exit 0
