#!/bin/sh
# Remove the testbed-faults sample (run as root). Safe to run repeatedly; removes the module for
# every kernel release and gives the panic sysctls back to the image's configuration.
set -eu

PROG=testbed-faults-uninstall
MODNAME=testbed_faults
SYSCTL_CONF=/etc/sysctl.d/99-testbed-faults.conf

msg() { printf '%s: %s\n' "$PROG" "$*"; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

case ${1:-} in
	-h|--help) echo "usage: uninstall.sh"; exit 0 ;;
	'') ;;
	*) die "unknown argument: $1" ;;
esac
[ "$(id -u)" -eq 0 ] || die "must be run as root"

# Stop boot-time loading first, then the running module (unloading removes net-drop's hooks).
rm -f /etc/modules-load.d/testbed-faults.conf

if [ -d "/sys/module/$MODNAME" ]; then
	msg "unloading $MODNAME"
	modprobe -r "$MODNAME" 2>/dev/null || rmmod "$MODNAME" || die "cannot unload $MODNAME"
fi

if [ -e "$SYSCTL_CONF" ]; then
	rm -f "$SYSCTL_CONF"
	# Re-apply what is left (the image's 90-testbed-crash.conf turns the panics back on).
	for tool in /lib/systemd/systemd-sysctl /usr/lib/systemd/systemd-sysctl; do
		if [ -x "$tool" ]; then "$tool" || msg "warning: $tool failed"; break; fi
	done
	msg "removed $SYSCTL_CONF"
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

rm -rf /lib/firmware/testbed-faults /var/lib/testbed-faults
sync
msg "testbed-faults removed"
exit 0
