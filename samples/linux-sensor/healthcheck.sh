#!/bin/sh
# Health check of the testbed-sensor sample, run as root in the guest after every boot:
#   sh /var/lib/testbed-sensor/healthcheck.sh
# Exit 0 when testbed_sensor is loaded and has rules, or -- the validating build -- has cleanly
# rejected its content and runs on without it. Exit 1 otherwise. Prints one line saying what it
# found.
#
# TESTBED_SENSOR_ROOT (tests only) is put in front of every path this script reads.
set -u

ROOT=${TESTBED_SENSOR_ROOT:-}
PROG=testbed-sensor-health
MODNAME=testbed_sensor
MOD_DIR=$ROOT/sys/module/$MODNAME
PARAM_DIR=$MOD_DIR/parameters

ok() { printf '%s: ok: %s\n' "$PROG" "$*"; exit 0; }
fail() { printf '%s: FAIL: %s\n' "$PROG" "$*"; exit 1; }
param() { cat "$PARAM_DIR/$1" 2>/dev/null || echo '?'; }

if [ ! -d "$MOD_DIR" ] && [ -f "$ROOT/var/lib/testbed-sensor/safe-mode" ]; then
	fail "$MODNAME is in safe mode: its last $(cat "$ROOT/var/lib/testbed-sensor/safe-mode") starts never" \
		"finished (the machine went down each time); it stays off until reinstalled"
fi
[ -d "$MOD_DIR" ] || fail "$MODNAME is not loaded"
version=$(cat "$MOD_DIR/version" 2>/dev/null || echo '?')
state=$(param content_state)
case $state in
active)
	rules=$(param rules_loaded)
	case $rules in ''|*[!0-9]*) rules=0 ;; esac
	[ "$rules" -gt 0 ] || fail "$MODNAME $version is active but reports rules_loaded=$rules"
	ok "$MODNAME $version running: $rules rules from content version $(param content_version)," \
		"$(param execs_seen) execs seen, $(param exec_matched) exec rule matches"
	;;
rejected)
	ok "$MODNAME $version running with its content rejected: $(param content_error)"
	;;
*)
	fail "$MODNAME $version is loaded but its content state is '$state'"
	;;
esac
