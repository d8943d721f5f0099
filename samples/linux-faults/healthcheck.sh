#!/bin/sh
# Health check of the testbed-faults sample, run as root in the guest after every boot:
#   sh /var/lib/testbed-faults/healthcheck.sh
# Exit 0 when testbed_faults is loaded with the fault and delay of the installed content and that
# fault is armed (or fired and the kernel runs on); for sysctl-off, when every panic sysctl the
# installer turned off reads back 0. Exit 1 otherwise. Prints one line saying what it checked.
#
# Like a real sensor's self-check it vouches for the sensor doing what it was configured to do,
# faults included: catching those is the testbed's job, not this script's.
#
# TESTBED_FAULTS_ROOT (tests only) is put in front of every path this script reads.
set -u

ROOT=${TESTBED_FAULTS_ROOT:-}
PROG=testbed-faults-health
MODNAME=testbed_faults
PARAM_DIR=$ROOT/sys/module/$MODNAME/parameters
CONTENT=$ROOT/lib/firmware/testbed-faults/faults.conf
SYSCTL_CONF=$ROOT/etc/sysctl.d/99-testbed-faults.conf

ok() { printf '%s: ok: %s\n' "$PROG" "$*"; exit 0; }
fail() { printf '%s: FAIL: %s\n' "$PROG" "$*"; exit 1; }
content_value() {
	sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\\([^[:space:]]*\\)[[:space:]]*\$/\\1/p" "$2" |
		tail -n 1
}
param() { cat "$PARAM_DIR/$1" 2>/dev/null || echo '?'; }

[ -f "$CONTENT" ] || fail "no installed content ($CONTENT is missing)"
want_fault=$(content_value fault "$CONTENT")
want_delay=$(content_value delay_s "$CONTENT")
[ -d "$ROOT/sys/module/$MODNAME" ] || fail "$MODNAME is not loaded (content fault $want_fault)"
fault=$(param fault)
delay=$(param delay_s)
state=$(param state)
[ "$fault" = "$want_fault" ] || fail "$MODNAME runs fault '$fault', the installed content says '$want_fault'"

case $fault in
none)
	[ "$state" = idle ] || fail "$MODNAME fault none is in state '$state', expected idle"
	ok "$MODNAME loaded, fault none (idle)"
	;;
sysctl-off)
	[ "$state" = idle ] || fail "$MODNAME fault sysctl-off is in state '$state', expected idle"
	[ -f "$SYSCTL_CONF" ] || fail "fault sysctl-off but $SYSCTL_CONF is missing"
	keys=$(sed -n 's/^kernel\.\([a-z_]*\) = 0$/\1/p' "$SYSCTL_CONF")
	[ -n "$keys" ] || fail "fault sysctl-off but $SYSCTL_CONF turns nothing off"
	for key in $keys; do
		value=$(cat "$ROOT/proc/sys/kernel/$key" 2>/dev/null || echo '?')
		[ "$value" = 0 ] || fail "fault sysctl-off but kernel.$key reads back '$value', expected 0"
	done
	ok "$MODNAME loaded, fault sysctl-off: $(printf 'kernel.%s=0 ' $keys | sed 's/ $//') read back"
	;;
*)
	[ "$delay" = "$want_delay" ] || fail "$MODNAME delay_s is '$delay', the installed content says '$want_delay'"
	case $state in
		armed|fired) ;;
		*) fail "$MODNAME fault $fault is in state '$state', expected armed or fired" ;;
	esac
	extra=
	if [ "$fault" = net-drop ]; then extra=", $(param dropped) IPv4 packets dropped"; fi
	ok "$MODNAME loaded, fault $fault $state (delay_s $delay$extra)"
	;;
esac
