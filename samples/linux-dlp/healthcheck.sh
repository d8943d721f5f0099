#!/bin/sh
# Health check of the sample DLP agent, run as root in the guest after every boot:
#   sh /var/lib/dlp-agent/healthcheck.sh
# Exit 0 when testbed_dlp is loaded and watches the platform bus; 1 otherwise. Prints one line.
#
# TESTBED_DLP_ROOT (tests only) is put in front of every path this script reads.
set -u

ROOT=${TESTBED_DLP_ROOT:-}
PROG=dlp-agent-health
MODNAME=testbed_dlp
MOD_DIR=$ROOT/sys/module/$MODNAME

ok() { printf '%s: ok: %s\n' "$PROG" "$*"; exit 0; }
fail() { printf '%s: FAIL: %s\n' "$PROG" "$*"; exit 1; }

[ -d "$MOD_DIR" ] || fail "$MODNAME is not loaded"
version=$(cat "$MOD_DIR/version" 2>/dev/null || echo '?')
watching=$(cat "$MOD_DIR/parameters/watching" 2>/dev/null || echo '?')
[ "$watching" = 1 ] || fail "$MODNAME $version is loaded but not watching the platform bus (watching=$watching)"
ok "$MODNAME $version running: device control on the platform bus," \
	"$(cat "$MOD_DIR/parameters/devices_tagged" 2>/dev/null || echo '?') devices tagged"
