#!/usr/bin/env bash
# The main job, the way a QA engineer runs it: start the testbed service, create a token, and submit
# the same sensor twice through the REST API with `testbed submit` — once with good content (must
# pass), once with zero-filled content of the same length (must fail: the kernel module trusts the
# file and the guests panic, as in July 2024). Prints both verdicts and the status page's address,
# then stops the service (runs and evidence stay in the store for the next `testbed serve`).
set -uo pipefail
cd "$(dirname "$0")/.."
testbed=.venv/bin/testbed
mkdir -p build/demo

banner() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

matrix=${DEMO_MATRIX:-matrices/linux-kernels.yaml}          # what `make demo` runs; overridable to try
candidates=${DEMO_CANDIDATES:-build/candidates}           # the script quickly on a small matrix
port=${DEMO_PORT:-$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
server="http://127.0.0.1:$port"

banner "starting the service on $server (log: build/demo/serve.log)"
$testbed serve --host 127.0.0.1 --port "$port" >build/demo/serve.log 2>&1 &
service=$!
stop_service() {
  if kill -0 "$service" 2>/dev/null; then
    kill -TERM "$service" 2>/dev/null
    wait "$service" 2>/dev/null
  fi
}
trap stop_service EXIT
for _ in $(seq 1 240); do
  curl -fsS "$server/healthz" >/dev/null 2>&1 && break
  kill -0 "$service" 2>/dev/null || { cat build/demo/serve.log; echo "the service did not start" >&2; exit 1; }
  sleep 0.5
done

banner "tokens: one to submit with (CI), one to look with (the status page)"
stamp=$(date +%Y%m%d-%H%M%S)
submitter=$($testbed tokens create --name "demo-ci-$stamp" --role submitter) || exit 1
viewer=$($testbed tokens create --name "demo-qa-$stamp" --role viewer) || exit 1

banner "candidate 1: testbed-sensor with good content"
$testbed submit --server "$server" --token "$submitter" --candidate "$candidates/good" \
  --matrix "$matrix" --wait --junit build/demo/good.junit.xml
good=$?

banner "candidate 2: the same sensor with zero-filled content"
$testbed submit --server "$server" --token "$submitter" --candidate "$candidates/zero-filled" \
  --matrix "$matrix" --wait --junit build/demo/zero-filled.junit.xml
bad=$?

banner "demo summary"
printf 'good content:        exit %s (expected 0: passed)\n' "$good"
printf 'zero-filled content: exit %s (expected 1: failed)\n' "$bad"
printf 'JUnit reports:       build/demo/*.junit.xml\n'
printf 'status page:         %s/runs  (log in with the viewer token %s)\n' "$server" "$viewer"
printf '                     the service stops now; `%s serve --port %s` shows the same runs again\n' "$testbed" "$port"
if [ "$good" -eq 0 ] && [ "$bad" -eq 1 ]; then
  printf '\033[32mthe gate let the good candidate through and stopped the bad one\033[0m\n'
  exit 0
fi
printf '\033[31mthe gate did not behave as expected\033[0m\n'
exit 1
