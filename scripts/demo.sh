#!/usr/bin/env bash
# The main job: the same sensor gated twice on Debian 12 kernels N and N-1 — once with good
# content (must pass), once with zero-filled content of the same length (must fail: the kernel
# module trusts the file and the guests panic, as in July 2024).
set -uo pipefail
cd "$(dirname "$0")/.."
testbed=.venv/bin/testbed
mkdir -p build/demo

banner() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

banner "candidate 1: testbed-sensor with good content"
$testbed gate --matrix matrices/linux-kernels.yaml --candidate build/candidates/good \
  --junit build/demo/good.junit.xml
good=$?

banner "candidate 2: the same sensor with zero-filled content"
$testbed gate --matrix matrices/linux-kernels.yaml --candidate build/candidates/zero-filled \
  --junit build/demo/zero-filled.junit.xml
bad=$?

banner "demo summary"
printf 'good content:        exit %s (expected 0: passed)\n' "$good"
printf 'zero-filled content: exit %s (expected 1: failed)\n' "$bad"
printf 'JUnit reports:       build/demo/*.junit.xml\n'
if [ "$good" -eq 0 ] && [ "$bad" -eq 1 ]; then
  printf '\033[32mthe gate let the good candidate through and stopped the bad one\033[0m\n'
  exit 0
fi
printf '\033[31mthe gate did not behave as expected\033[0m\n'
exit 1
