#!/bin/sh
# Crash-loop protection of the testbed-sensor sample (packages built with --safe-mode-after N).
#
# modprobe runs this instead of loading testbed_sensor (install.sh writes the "install" line of
# /etc/modprobe.d/testbed-sensor.conf), at install time and at every boot. Each start is counted
# before the module is loaded, durably (sync): a start-up that takes the kernel down never gets
# to clear its count. After N such starts in a row the sensor stays off -- "safe mode" -- until it
# is installed again, and says so on the kernel log. Some real sensors do this; it turns a boot
# loop into a machine that comes back, unprotected.
#
# Exit status: modprobe's, or 1 in safe mode (the sensor was not started).
# (The "install" line runs it as: /bin/sh /var/lib/testbed-sensor/start-guard.sh [module options])
#
# TESTBED_SENSOR_ROOT (tests only) is put in front of every path this script reads or writes.
set -u

ROOT=${TESTBED_SENSOR_ROOT:-}
MODNAME=testbed_sensor
STATE_DIR=$ROOT/var/lib/testbed-sensor

kmsg() { printf 'testbed-sensor: %s\n' "$*" > "$ROOT/dev/kmsg" 2>/dev/null || printf 'testbed-sensor: %s\n' "$*" >&2; }
number() { value=$(cat "$1" 2>/dev/null) || value=0; case $value in ''|*[!0-9]*) value=0 ;; esac; echo "$value"; }

limit=$(number "$STATE_DIR/safe-mode-after")
starts=$(number "$STATE_DIR/unfinished-starts")

if [ "$limit" -gt 0 ] && [ "$starts" -ge "$limit" ]; then
	echo "$starts" > "$STATE_DIR/safe-mode"
	kmsg "safe mode: the last $starts starts never finished (the machine went down each time); not starting until reinstalled"
	exit 1
fi

echo $((starts + 1)) > "$STATE_DIR/unfinished-starts"
sync
# A start that returns, loaded or refused, finished: only one the machine died in stays counted.
status=0
modprobe --ignore-install "$MODNAME" "$@" || status=$?
rm -f "$STATE_DIR/unfinished-starts"
sync
exit "$status"
