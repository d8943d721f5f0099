#!/usr/bin/env bash
# The incidents of the record in one run: the incidents matrix (examples/incidents.yaml) against the
# sample release (sensor 1.1.0 + the fleet's 1.0.0, content "incidents", tested on kernel N only),
# with the sample DLP agent and netguard as co-installed products. Then, per incident, the cells
# that caught it and why (testbed expect), and the failures grouped across cells.
# Exit 0 when every incident of examples/incidents-catalog.yaml was caught.
set -uo pipefail
cd "$(dirname "$0")/.."
testbed=.venv/bin/testbed
out=build/incidents
mkdir -p "$out"

export TESTBED_PRODUCTS_DIR=$PWD/build/products   # the products the matrix co-installs
printf '\033[1m== the incidents matrix against the sample release (progress below, result: %s)\033[0m\n' "$out/result.json"
$testbed gate --matrix examples/incidents.yaml --candidate build/candidates/incidents \
  --json --junit "$out/incidents.junit.xml" >"$out/result.json"
verdict=$?
case $verdict in
  1) ;;  # failed: what a release carrying every past incident must get
  0) echo "the gate passed a release that carries every past incident: that is wrong" >&2; exit 1 ;;
  *) echo "the gate could not answer (exit $verdict): see above; nothing was checked" >&2; exit "$verdict" ;;
esac

printf '\n\033[1m== per incident: the cells that caught it\033[0m\n'
$testbed expect "$out/result.json" --catalog examples/incidents-catalog.yaml
