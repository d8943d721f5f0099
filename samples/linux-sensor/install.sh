#!/bin/sh
# Install the testbed-sensor sample endpoint sensor (run as root in a guest).
#
#   install.sh --content FILE
#
# Installs the kernel module built for the running kernel, the content file
# (/lib/firmware/testbed-sensor/channel.bin), makes the module load at every
# boot (/etc/modules-load.d/testbed-sensor.conf), installs the health check
# (/var/lib/testbed-sensor/healthcheck.sh) and, when the package asks for
# it, crash-loop protection (start-guard.sh), starts the sensor now and
# verifies that it loaded rules -- or, for the validating build, that it
# rejected its content and keeps running.  Re-running it upgrades in place.
#
# Any content file is installed, an empty one included: judging content is
# the sensor's job.  The validating build rejects bad content and stays up
# (exit 0); the other builds refuse to start on content they cannot read
# (an empty file: exit 5) and crash on content they misread.
#
# !!! The module is deliberately defective: with bad content it crashes the
# kernel, at install time and again at every following boot.  Only run this
# inside a disposable test VM.
#
# Exit codes: 0 ok (rules loaded, or content rejected by the validating
#             build), 2 usage, 3 unsupported kernel, 4 install step failed,
#             5 sensor failed to start or reports no rules.
set -eu

PROG=testbed-sensor-install
MODNAME=testbed_sensor
FW_DIR=/lib/firmware/testbed-sensor
FW_FILE=$FW_DIR/channel.bin
LOAD_CONF=/etc/modules-load.d/testbed-sensor.conf
GUARD_CONF=/etc/modprobe.d/testbed-sensor.conf
STATE_DIR=/var/lib/testbed-sensor
PARAM_DIR=/sys/module/$MODNAME/parameters

msg() { printf '%s: %s\n' "$PROG" "$*"; }
die() { code=$1; shift; printf '%s: error: %s\n' "$PROG" "$*" >&2; exit "$code"; }
usage() {
	cat <<EOF
usage: install.sh --content FILE

Installs the testbed-sensor kernel module for the running kernel and the
content FILE, enables loading at boot, and starts the sensor.
EOF
}

PKG_DIR=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
CONTENT=

while [ $# -gt 0 ]; do
	case $1 in
	--content)
		[ $# -ge 2 ] || { usage >&2; die 2 "--content needs a FILE argument"; }
		CONTENT=$2; shift 2 ;;
	--content=*)
		CONTENT=${1#--content=}; shift ;;
	-h|--help)
		usage; exit 0 ;;
	*)
		usage >&2; die 2 "unknown argument: $1" ;;
	esac
done

[ -n "$CONTENT" ] || { usage >&2; die 2 "--content FILE is required"; }
[ -f "$CONTENT" ] || die 2 "content file not found: $CONTENT"
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
	die 3 "kernel $KREL is not supported by testbed-sensor $VERSION (supported kernel releases: ${supported:-none})"
fi

for tool in modprobe depmod install; do
	command -v "$tool" >/dev/null 2>&1 || die 4 "required tool not found: $tool"
done

msg "installing testbed-sensor $VERSION for kernel $KREL"

# Re-install / upgrade: stop the running sensor first so the new module and
# content are the ones that get loaded.
if [ -d "/sys/module/$MODNAME" ]; then
	msg "stopping running sensor"
	modprobe -r "$MODNAME" || die 4 "cannot unload the running $MODNAME module"
fi

MOD_DIR=/lib/modules/$KREL/extra
if cmp -s "$MODULE_SRC" "$MOD_DIR/$MODNAME.ko" &&
	grep -q "^extra/$MODNAME.ko:" "/lib/modules/$KREL/modules.dep" 2>/dev/null; then
	# Same module already installed and indexed: skip depmod, which takes
	# tens of seconds on a slow (emulated) machine.
	msg "module for $KREL already installed"
else
	install -d -m 0755 "$MOD_DIR" || die 4 "cannot create $MOD_DIR"
	install -m 0644 "$MODULE_SRC" "$MOD_DIR/$MODNAME.ko.tmp" &&
		mv -f "$MOD_DIR/$MODNAME.ko.tmp" "$MOD_DIR/$MODNAME.ko" ||
		die 4 "cannot install module to $MOD_DIR"
	msg "running depmod for $KREL"
	depmod -a "$KREL" || die 4 "depmod failed for $KREL"
fi

install -d -m 0755 "$FW_DIR" || die 4 "cannot create $FW_DIR"
install -m 0644 "$CONTENT" "$FW_FILE.tmp" &&
	mv -f "$FW_FILE.tmp" "$FW_FILE" ||
	die 4 "cannot install content to $FW_FILE"

install -d -m 0755 "$(dirname "$LOAD_CONF")" || die 4 "cannot create $(dirname "$LOAD_CONF")"
printf '# testbed-sensor: start the sensor at every boot\n%s\n' "$MODNAME" > "$LOAD_CONF.tmp" &&
	mv -f "$LOAD_CONF.tmp" "$LOAD_CONF" ||
	die 4 "cannot write $LOAD_CONF"

install -d -m 0755 "$STATE_DIR" || die 4 "cannot create $STATE_DIR"
printf '%s\n' "$VERSION" > "$STATE_DIR/VERSION" || die 4 "cannot write $STATE_DIR/VERSION"
install -m 0755 "$PKG_DIR/uninstall.sh" "$STATE_DIR/uninstall.sh" 2>/dev/null || :
install -m 0755 "$PKG_DIR/healthcheck.sh" "$STATE_DIR/healthcheck.sh" ||
	die 4 "cannot install the health check to $STATE_DIR"

# Crash-loop protection (packages built with --safe-mode-after N): every start goes through
# start-guard.sh, which stays off after N starts in a row the machine died in. Installing again
# ends safe mode.
rm -f "$STATE_DIR/unfinished-starts" "$STATE_DIR/safe-mode"
if [ -f "$PKG_DIR/SAFE_MODE_AFTER" ]; then
	install -m 0755 "$PKG_DIR/start-guard.sh" "$STATE_DIR/start-guard.sh" &&
		install -m 0644 "$PKG_DIR/SAFE_MODE_AFTER" "$STATE_DIR/safe-mode-after" ||
		die 4 "cannot install the start guard to $STATE_DIR"
	install -d -m 0755 "$(dirname "$GUARD_CONF")" || die 4 "cannot create $(dirname "$GUARD_CONF")"
	printf '# testbed-sensor: every start counted (safe mode after repeated crashes at start-up)\ninstall %s /bin/sh %s/start-guard.sh $CMDLINE_OPTS\n' \
		"$MODNAME" "$STATE_DIR" > "$GUARD_CONF.tmp" &&
		mv -f "$GUARD_CONF.tmp" "$GUARD_CONF" ||
		die 4 "cannot write $GUARD_CONF"
	msg "crash-loop protection: safe mode after $(cat "$STATE_DIR/safe-mode-after") unfinished starts"
else
	rm -f "$GUARD_CONF" "$STATE_DIR/start-guard.sh" "$STATE_DIR/safe-mode-after"
fi

# Make the installation durable before starting the sensor: if the sensor
# takes the kernel down, the next boot still finds it installed (and loads
# it again) -- exactly like a real sensor would.
sync

msg "starting sensor (modprobe $MODNAME)"
modprobe "$MODNAME" || die 5 "modprobe $MODNAME failed (see dmesg)"

[ -d "/sys/module/$MODNAME" ] || die 5 "$MODNAME is not loaded after modprobe"
state=$(cat "$PARAM_DIR/content_state" 2>/dev/null || echo unknown)
if [ "$state" = rejected ]; then
	# The validating build: bad content is refused, the sensor keeps running.
	msg "sensor running with its content rejected: $(cat "$PARAM_DIR/content_error" 2>/dev/null)"
	exit 0
fi
rules=$(cat "$PARAM_DIR/rules_loaded" 2>/dev/null || echo 0)
cver=$(cat "$PARAM_DIR/content_version" 2>/dev/null || echo '?')
case $rules in
	''|*[!0-9]*) rules=0 ;;
esac
[ "$rules" -gt 0 ] || die 5 "sensor is loaded but reports rules_loaded=$rules (content_state $state)"

msg "sensor running: $rules rules loaded from content version $cver"
exit 0
