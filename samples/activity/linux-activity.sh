#!/bin/sh
# Activity workload for Linux guests: do, briefly, what users do, so that sensor rules that only
# match real events get their chance to run (in July 2024 a malformed content file crashed only
# when its rule matched an event). Run as root (or any user) after install and after each reboot:
#
#   sh linux-activity.sh
#
# 1. files: create, write, append, read back, rename, list, delete
# 2. processes: start shell pipelines and a program named testbed-trigger (15 bytes: a whole task
#    comm), the process name the sample sensor's activity rule matches
# 3. network: a TCP connection to the local sshd (127.0.0.1:22, or ACTIVITY_TCP_PORT), reading
#    its banner
# 4. named pipe: a writer and a reader through a FIFO
#
# Prints one line per action, then "activity: done". Exits 0 when every action worked, 1 when one
# failed (the line says which). POSIX sh plus coreutils; bash or python3 for the TCP connection.
set -u

PROG=activity
TRIGGER=testbed-trigger
PORT=${ACTIVITY_TCP_PORT:-22}
failures=0

say() { printf '%s: %s\n' "$PROG" "$*"; }
failed() { printf '%s: FAILED: %s\n' "$PROG" "$*"; failures=$((failures + 1)); }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/activity.XXXXXX") || { failed "cannot create a work directory"; exit 1; }
trap 'rm -rf "$WORK"' EXIT

# -- 1. files -----------------------------------------------------------------
if printf 'quarterly report\n' > "$WORK/report.txt" &&
	printf 'figures: 1 2 3\n' >> "$WORK/report.txt" &&
	[ "$(wc -l < "$WORK/report.txt")" -eq 2 ] &&
	mv "$WORK/report.txt" "$WORK/report-final.txt" &&
	ls "$WORK" > "$WORK/listing.txt" &&
	grep -q report-final "$WORK/listing.txt" &&
	rm "$WORK/report-final.txt" "$WORK/listing.txt"; then
	say "files: wrote, appended, read back, renamed, listed and deleted files in $WORK"
else
	failed "files in $WORK"
fi

# -- 2. processes ---------------------------------------------------------------
if count=$(sh -c 'seq 1 50 | sort -rn | head -n 5 | wc -l') && [ "$count" -eq 5 ]; then
	say "processes: ran a pipeline (sh, seq, sort, head, wc)"
else
	failed "processes: pipeline"
fi
printf '#!/bin/sh\necho "%s: pid $$ ran"\n' "$TRIGGER" > "$WORK/$TRIGGER" && chmod 755 "$WORK/$TRIGGER"
say "processes: starting $WORK/$TRIGGER"
if out=$("$WORK/$TRIGGER"); then
	say "processes: $out"
else
	failed "processes: $TRIGGER did not run"
fi

# -- 3. network -----------------------------------------------------------------
banner=
client=
if command -v bash >/dev/null 2>&1; then
	client=bash
	# read, not head: head's stdout is buffered, and sshd keeps the connection open after its banner
	banner=$(PORT=$PORT timeout 10 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$PORT" && IFS= read -r line <&3 && printf "%s\n" "$line"' 2>/dev/null)
elif command -v python3 >/dev/null 2>&1; then
	client=python3
	banner=$(timeout 10 python3 -c 'import socket, sys; s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5); print(s.recv(64).decode(errors="replace").splitlines()[0])' "$PORT" 2>/dev/null)
fi
case $banner in
SSH-*) say "network: connected to 127.0.0.1:$PORT, banner $(printf %s "$banner" | tr -d '\r')" ;;
*) failed "network: no SSH banner from 127.0.0.1:$PORT (client: ${client:-none, bash and python3 missing})" ;;
esac

# -- 4. named pipe --------------------------------------------------------------
if mkfifo "$WORK/pipe"; then
	(printf 'through the pipe\n' > "$WORK/pipe") &
	writer=$!
	got=$(timeout 10 cat "$WORK/pipe")
	wait "$writer" 2>/dev/null
	if [ "$got" = "through the pipe" ]; then
		say "named pipe: a writer and a reader exchanged a line through $WORK/pipe"
	else
		failed "named pipe: read '$got'"
	fi
else
	failed "named pipe: mkfifo"
fi

if [ "$failures" -gt 0 ]; then
	say "done with $failures failure(s)"
	exit 1
fi
say "done"
exit 0
