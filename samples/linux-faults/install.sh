#!/bin/sh
# Install the testbed-faults sample (run as root in a guest).
#
#   install.sh --content FILE
#
# FILE (faults.conf) chooses the fault the testbed_faults module injects:
#   fault=<none|delayed-panic|irq-spin|net-drop|warn|reset-loop|sysctl-off>
#   delay_s=<seconds after load>          (timed faults only)
# Installs the module built for the running kernel and the content
# (/lib/firmware/testbed-faults/faults.conf), makes the module load at every
# boot (/etc/modules-load.d/testbed-faults.conf), for sysctl-off turns the
# panic sysctls off now and at every boot (/etc/sysctl.d/99-testbed-faults.conf),
# then loads the module and checks it armed the configured fault.
#
# !!! Built to crash, hang, reset or cut off the machine, now and at every
# following boot.  Only run this inside a disposable test VM.
#
# Exit codes: 0 ok, 2 usage or bad content, 3 unsupported kernel,
#             4 install step failed, 5 module failed to load or arm.
set -eu

PROG=testbed-faults-install
MODNAME=testbed_faults
FW_DIR=/lib/firmware/testbed-faults
FW_FILE=$FW_DIR/faults.conf
LOAD_CONF=/etc/modules-load.d/testbed-faults.conf
SYSCTL_CONF=/etc/sysctl.d/99-testbed-faults.conf
STATE_DIR=/var/lib/testbed-faults
PARAM_DIR=/sys/module/$MODNAME/parameters
# Every sysctl that turns a kernel failure into a panic the hypervisor can see.
PANIC_SYSCTLS="panic_on_oops softlockup_panic hardlockup_panic hung_task_panic panic_on_rcu_stall
unknown_nmi_panic panic_on_warn"

msg() { printf '%s: %s\n' "$PROG" "$*"; }
die() { code=$1; shift; printf '%s: error: %s\n' "$PROG" "$*" >&2; exit "$code"; }
usage() {
	cat <<USAGE
usage: install.sh --content FILE

Installs the testbed_faults kernel module for the running kernel and the
content FILE (fault=..., delay_s=...), enables loading at boot, and loads it.
USAGE
}
# Last value of KEY in FILE, blanks trimmed (the module also takes the last one).
content_value() {
	sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\\([^[:space:]]*\\)[[:space:]]*\$/\\1/p" "$2" |
		tail -n 1
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
[ -s "$CONTENT" ] || die 2 "content file is empty: $CONTENT"

FAULT=$(content_value fault "$CONTENT")
DELAY=$(content_value delay_s "$CONTENT")
case $FAULT in
	none|sysctl-off|delayed-panic|irq-spin|net-drop|warn|reset-loop) ;;
	'') die 2 "content file $CONTENT has no fault= line" ;;
	*) die 2 "content file $CONTENT names an unknown fault: $FAULT" ;;
esac

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
	die 3 "kernel $KREL is not supported by testbed-faults $VERSION (supported kernel releases: ${supported:-none})"
fi

for tool in modprobe depmod install; do
	command -v "$tool" >/dev/null 2>&1 || die 4 "required tool not found: $tool"
done

msg "installing testbed-faults $VERSION for kernel $KREL (fault $FAULT)"

# Re-install: unload first so the new module and content are the ones loaded.
if [ -d "/sys/module/$MODNAME" ]; then
	msg "unloading running $MODNAME"
	modprobe -r "$MODNAME" || die 4 "cannot unload the running $MODNAME module"
fi

MOD_DIR=/lib/modules/$KREL/extra
if cmp -s "$MODULE_SRC" "$MOD_DIR/$MODNAME.ko" &&
	grep -q "^extra/$MODNAME.ko:" "/lib/modules/$KREL/modules.dep" 2>/dev/null; then
	# Same module already installed and indexed: depmod takes tens of seconds under TCG.
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

if [ "$FAULT" = sysctl-off ]; then
	# Persisted (99- sorts after the image's 90-testbed-crash.conf) and applied now. Only keys
	# this kernel has: systemd-sysctl complains about the others at every boot.
	install -d -m 0755 "$(dirname "$SYSCTL_CONF")" || die 4 "cannot create $(dirname "$SYSCTL_CONF")"
	{
		printf '# testbed-faults sysctl-off: no kernel failure becomes a panic any more\n'
		for key in $PANIC_SYSCTLS; do
			if [ -f "/proc/sys/kernel/$key" ]; then printf 'kernel.%s = 0\n' "$key"; fi
		done
	} > "$SYSCTL_CONF.tmp" && mv -f "$SYSCTL_CONF.tmp" "$SYSCTL_CONF" || die 4 "cannot write $SYSCTL_CONF"
	for key in $PANIC_SYSCTLS; do
		[ -f "/proc/sys/kernel/$key" ] || continue
		echo 0 > "/proc/sys/kernel/$key" || die 4 "cannot set kernel.$key=0"
	done
	msg "panic sysctls turned off: $(sed -n 's/^kernel\.\([a-z_]*\) = 0$/\1/p' "$SYSCTL_CONF" | tr '\n' ' ')"
else
	rm -f "$SYSCTL_CONF"
fi

install -d -m 0755 "$(dirname "$LOAD_CONF")" || die 4 "cannot create $(dirname "$LOAD_CONF")"
printf '# testbed-faults: load at every boot\n%s\n' "$MODNAME" > "$LOAD_CONF.tmp" &&
	mv -f "$LOAD_CONF.tmp" "$LOAD_CONF" ||
	die 4 "cannot write $LOAD_CONF"

install -d -m 0755 "$STATE_DIR" || die 4 "cannot create $STATE_DIR"
printf '%s\n' "$VERSION" > "$STATE_DIR/VERSION" || die 4 "cannot write $STATE_DIR/VERSION"
install -m 0755 "$PKG_DIR/uninstall.sh" "$STATE_DIR/uninstall.sh" || die 4 "cannot install uninstall.sh"
install -m 0755 "$PKG_DIR/healthcheck.sh" "$STATE_DIR/healthcheck.sh" || die 4 "cannot install healthcheck.sh"

# Durable before loading: if the fault takes the machine down, the next boot loads it again.
sync

msg "loading $MODNAME"
modprobe "$MODNAME" || die 5 "modprobe $MODNAME failed (see dmesg)"
[ -d "/sys/module/$MODNAME" ] || die 5 "$MODNAME is not loaded after modprobe"
loaded=$(cat "$PARAM_DIR/fault" 2>/dev/null || echo '?')
state=$(cat "$PARAM_DIR/state" 2>/dev/null || echo '?')
[ "$loaded" = "$FAULT" ] || die 5 "$MODNAME loaded fault '$loaded', the content says '$FAULT'"
case $state in
	armed) msg "$MODNAME running: fault $FAULT armed, fires ${DELAY:-?} s after load" ;;
	idle) msg "$MODNAME running: fault $FAULT (nothing fires)" ;;
	fired) msg "$MODNAME running: fault $FAULT already fired" ;;
	*) die 5 "$MODNAME reports state '$state'" ;;
esac
exit 0
