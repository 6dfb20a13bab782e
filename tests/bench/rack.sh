#!/usr/bin/env bash
# Boot benchmark of a virtual rack: QEMU hosts PXE-boot from `virtman seed` into the boot
# image; reports time from power-on to `ready` per host, for 1 host and for 3 hosts booting
# at once, the base initramfs size, and the bytes each host pulled from the seed by HTTP
# (kernel, initramfs, script, API) and by iSCSI (image chunks from the root export).
# Runs as root, inside a network namespace it creates and removes. Knobs: IMAGE_MB (64),
# QEMU_ACCEL (tcg), TIMEOUT (600 s per phase).
set -euo pipefail

cd "$(dirname "$0")/../.."
echo "command: $0 $* (IMAGE_MB=${IMAGE_MB:-64} QEMU_ACCEL=${QEMU_ACCEL:-tcg})"
if [[ $EUID -ne 0 ]]; then
	echo "rack bench: skipped: needs root (network namespaces, taps)"
	exit 0
fi
for cmd in qemu-system-x86_64 curl python3 ip; do
	command -v "$cmd" >/dev/null || { echo "rack bench: skipped: $cmd not installed"; exit 0; }
done
KERNEL=build/boot/vmlinuz INITRD=build/boot/initrd.img VIRTMAN=build/virtman
[[ -s $KERNEL && -s $INITRD && -x $VIRTMAN ]] || { echo "rack bench: run make first"; exit 1; }

NS="vmbench$$"
SEED=10.214.1.1
URL="http://$SEED:8080"
TMP=$(mktemp -d)
IMAGE_MB=${IMAGE_MB:-64}
TIMEOUT=${TIMEOUT:-600}
ACCEL=${QEMU_ACCEL:-tcg}
pids=()

cleanup() {
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	ip netns pids "$NS" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
	ip netns del "$NS" 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

now_ms() { date +%s%3N; }
api() { ip netns exec "$NS" curl -sf "$URL$1"; }

ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add br0 type bridge
ip -n "$NS" link set br0 type bridge forward_delay 0 stp_state 0
ip -n "$NS" addr add "$SEED/24" dev br0
ip -n "$NS" link set br0 up
for i in 1 2 3 4; do
	ip -n "$NS" tuntap add "tap$i" mode tap
	ip -n "$NS" link set "tap$i" master br0
	ip -n "$NS" link set "tap$i" up
done
head -c "$((IMAGE_MB * 1024 * 1024))" /dev/urandom >"$TMP/image.raw"

# start_seed: a fresh seed and state directory for one phase.
start_seed() {
	rm -rf "$TMP/state"
	ip netns exec "$NS" "$VIRTMAN" seed --iface br0 --dhcp full --pool 10.214.1.100-10.214.1.150 \
		--image "$TMP/image.raw" --kernel "$KERNEL" --initrd "$INITRD" --append virtman.verify \
		--state-dir "$TMP/state" --heartbeat 2 2>"$TMP/seed.log" &
	SEED_PID=$!
	pids+=("$SEED_PID")
	local deadline=$((SECONDS + 60))
	until grep -q "serving " "$TMP/seed.log"; do
		((SECONDS < deadline)) || { cat "$TMP/seed.log"; exit 1; }
		sleep 0.1
	done
}

stop_all() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	pids=()
}

# power_on N: host N on tapN; records its power-on time.
power_on() {
	ip netns exec "$NS" qemu-system-x86_64 -accel "$ACCEL" -m 512 -smp 1 -display none \
		-monitor none -no-reboot -serial "file:$TMP/host$1.serial" -boot n \
		-netdev "tap,id=n0,ifname=tap$1,script=no,downscript=no" \
		-device "virtio-net-pci,netdev=n0,mac=52:54:00:88:00:0$1" &
	pids+=($!)
	eval "ON_$1=$(now_ms)"
}

# wait_ready COUNT HOSTS...: polls the seed until COUNT hosts are ready, noting when each
# host's console first shows the initramfs banner (0.2 s resolution).
wait_ready() {
	local deadline=$((SECONDS + TIMEOUT)) count=$1 i
	shift
	until for i in "$@"; do
		local var="BANNER_$i"
		[[ -n ${!var:-} ]] || ! grep -q "virtman: initramfs up" "$TMP/host$i.serial" 2>/dev/null ||
			eval "BANNER_$i=$(now_ms)"
	done; [[ $(api /api/v1/hosts | python3 -c 'import json,sys
print(sum(1 for h in json.load(sys.stdin)["hosts"] if h["stage"] == "ready"))') -ge $count ]]; do
		((SECONDS < deadline)) || { api /api/v1/status; echo "rack bench: hosts not ready"; exit 1; }
		sleep 0.2
	done
}

# report: one line per host: power-on to registered and to ready, bytes by iSCSI from the root.
report() {
	api /api/v1/hosts >"$TMP/hosts.json"
	for i in "$@"; do
		local on_var="ON_$i" banner_var="BANNER_$i"
		python3 - "$TMP/hosts.json" "52:54:00:88:00:0$i" "${!on_var}" "${!banner_var:-0}" <<-'EOF'
			import json, sys
			hosts = json.load(open(sys.argv[1]))["hosts"]
			h = next(h for h in hosts if h["mac"] == sys.argv[2])
			on, banner = int(sys.argv[3]), int(sys.argv[4])
			st = {s["name"]: s["at_ms"] for s in h["stages"]}
			b = f"{(banner - on) / 1000:.1f} s" if banner else "not seen"
			print(f"  host {h['id']} (depth {h['depth']}): power-on to initramfs banner {b}, "
			      f"to registered {(st['registered'] - on) / 1000:.1f} s, "
			      f"to ready {(st['ready'] - on) / 1000:.1f} s")
		EOF
	done
	local http iscsi
	http=$(api /metrics | awk '$1 == "virtman_http_sent_bytes_total" { print $2 }')
	iscsi=$(api /metrics | awk '$1 == "virtman_served_bytes_total" { print $2 }')
	echo "  seed sent by HTTP: $((http / 1024)) KiB in all, $((http / $# / 1024)) KiB per host"
	echo "  seed sent by iSCSI (root export): $((iscsi / 1024)) KiB in all for an image of" \
		"$((IMAGE_MB * 1024)) KiB read whole by every host ($(python3 -c "print(f'{$iscsi / ($IMAGE_MB * 1048576):.2f}')") image copies)"
}

echo "base initramfs: $(($(stat -c %s "$INITRD") / 1024)) KiB compressed; kernel $(($(stat -c %s "$KERNEL") / 1024)) KiB"

echo "1 host:"
start_seed
power_on 1
wait_ready 1 1
report 1
stop_all

echo "3 hosts powered on at once (fan-out 2):"
start_seed
power_on 2
power_on 3
power_on 4
wait_ready 3 2 3 4
report 2 3 4
stop_all
