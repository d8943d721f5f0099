#!/bin/sh
# Health check of the sample netguard classifier, run as root in the guest after every boot:
#   sh /var/lib/netguard/healthcheck.sh
# Exit 0 when testbed_netguard is loaded and classifies inbound traffic; 1 otherwise. Prints one line.
#
# TESTBED_NETGUARD_ROOT (tests only) is put in front of every path this script reads.
set -u

ROOT=${TESTBED_NETGUARD_ROOT:-}
PROG=netguard-health
MODNAME=testbed_netguard
MOD_DIR=$ROOT/sys/module/$MODNAME

ok() { printf '%s: ok: %s\n' "$PROG" "$*"; exit 0; }
fail() { printf '%s: FAIL: %s\n' "$PROG" "$*"; exit 1; }
param() { cat "$MOD_DIR/parameters/$1" 2>/dev/null || echo '?'; }

[ -d "$MOD_DIR" ] || fail "$MODNAME is not loaded"
version=$(cat "$MOD_DIR/version" 2>/dev/null || echo '?')
classifying=$(param classifying)
[ "$classifying" = 1 ] || fail "$MODNAME $version is loaded but not classifying (classifying=$classifying)"
ok "$MODNAME $version running: $(param packets_classified) inbound packets classified" \
	"(interactive $(param interactive), web $(param web), infra $(param infra), icmp $(param icmp)," \
	"other $(param other))"
