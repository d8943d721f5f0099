#!/usr/bin/env bash
# The floor for `make bench`: the same journey as one gate cell — boot, install, reboots, every
# boot checked after its stability window (agent facts, ssh, the sensor's health check), the last
# one soaked and checked again — driven by a bare script with virsh, ssh and qemu-img on the same
# image. Usage: floor.sh DOMAIN_XML OVERLAY BACKING CANDIDATE_DIR REBOOTS STABILITY_S SOAK_S
set -euo pipefail
xml=$1 overlay=$2 backing=$3 candidate=$4 reboots=$5 stability=$6 soak=$7
name=$(sed -n 's:.*<name>\(.*\)</name>.*:\1:p' "$xml" | head -1)
virsh="virsh -q -c qemu:///system"
key=$(mktemp -d)/id_ed25519
ssh-keygen -q -t ed25519 -N '' -f "$key"
ssh_opts=(-i "$key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=5)

cleanup() { $virsh destroy "$name" >/dev/null 2>&1 || true; $virsh undefine "$name" >/dev/null 2>&1 || true; rm -f "$overlay"; }
trap cleanup EXIT

boot_id() {
  local pid
  pid=$($virsh qemu-agent-command "$name" '{"execute":"guest-exec","arguments":{"path":"/bin/cat","arg":["/proc/sys/kernel/random/boot_id"],"capture-output":true}}' 2>/dev/null | sed -n 's/.*"pid":\([0-9]*\).*/\1/p') || return 1
  [ -n "$pid" ] || return 1
  sleep 0.3
  $virsh qemu-agent-command "$name" "{\"execute\":\"guest-exec-status\",\"arguments\":{\"pid\":$pid}}" 2>/dev/null \
    | sed -n 's/.*"out-data":"\([^"]*\)".*/\1/p' | base64 -d
}

wait_ready() {  # $1: the boot id that must change; sets mark and ip
  local id=""
  until id=$(boot_id) && [ -n "$id" ] && [ "$id" != "$1" ]; do sleep 1; done
  until ip=$($virsh domifaddr "$name" --source agent 2>/dev/null | awk '/ipv4/ && $4 !~ /^127/ {split($4,a,"/"); print a[1]}') && [ -n "$ip" ]; do sleep 1; done
  $virsh set-user-sshkeys "$name" root --file "$key.pub"
  until ssh "${ssh_opts[@]}" "root@$ip" true 2>/dev/null; do sleep 1; done
  sleep "$stability"
  check
  mark=$id
}

check() {  # what the testbed's probe asks: facts through the agent, then ssh, then the health check
  boot_id >/dev/null
  ssh "${ssh_opts[@]}" "root@$ip" true
  ssh "${ssh_opts[@]}" "root@$ip" "[ ! -f /var/lib/testbed-sensor/healthcheck.sh ] || sh /var/lib/testbed-sensor/healthcheck.sh" >/dev/null
}

qemu-img create -q -f qcow2 -F qcow2 -b "$backing" "$overlay"
$virsh define "$xml" >/dev/null
$virsh start "$name" >/dev/null
wait_ready none

package=$(cd "$candidate" && ls ./*.tar.gz)
content=$(cd "$candidate" && ls content/*)
scp -q "${ssh_opts[@]}" "$candidate/$package" "$candidate/$content" "root@$ip:/var/tmp/"
ssh "${ssh_opts[@]}" "root@$ip" "cd /var/tmp && sha256sum $(basename "$package") $(basename "$content") >/dev/null \
  && tar -xzf $(basename "$package") --no-same-owner && cd \$(tar -tzf $(basename "$package") | head -n1 | cut -d/ -f1) \
  && sh ./install.sh --content /var/tmp/$(basename "$content") >/dev/null"
sleep "$stability"
check

for _ in $(seq 1 "$reboots"); do
  $virsh reboot "$name" --mode agent >/dev/null
  wait_ready "$mark"
done
sleep "$soak"
check
