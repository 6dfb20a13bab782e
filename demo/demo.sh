#!/usr/bin/env bash
# `make demo`: a virtual rack on this machine. A private network namespace holds a bridge,
# `virtman seed` and one tap per QEMU host; the hosts PXE-boot, join the tree and start
# their VMs of images/tiny. A veth pair links the namespace to this machine so the
# dashboard opens in a local browser. The rack keeps running; `make demo-down` removes it.
#   usage: demo/demo.sh up|down      (HOSTS=3 VMS=2 by default; root)
set -euo pipefail

cd "$(dirname "$0")/.."
NS=virtman-demo
RUN=/run/virtman-demo
SEED=10.215.0.1			# the seed on the rack's bridge, inside the namespace
OUTER=10.215.255.1		# this machine's end of the veth to the namespace
INNER=10.215.255.2		# the namespace's end: where the dashboard is reached
HOSTS=${HOSTS:-3}
VMS=${VMS:-2}
ACCEL=${QEMU_ACCEL:-tcg}
TIMEOUT=${DEMO_TIMEOUT:-1800}

die() { echo "demo: $*" >&2; exit 1; }

down() {
	if [[ -d $RUN ]]; then
		for pidfile in "$RUN"/*.pid; do
			[[ -f $pidfile ]] && kill "$(cat "$pidfile")" 2>/dev/null || true
		done
	fi
	if ip netns list 2>/dev/null | grep -q "^$NS\b"; then
		ip netns pids "$NS" | xargs -r kill -KILL 2>/dev/null || true
		ip netns del "$NS"
	fi
	ip link del vm-demo0 2>/dev/null || true
	rm -rf "$RUN"
	echo "demo: removed"
}

up() {
	[[ $EUID -eq 0 ]] || die "needs root (network namespaces, taps)"
	[[ $HOSTS =~ ^[1-9]$ ]] || die "HOSTS must be 1..9"
	[[ $VMS =~ ^[0-9]+$ && $VMS -le 32 ]] || die "VMS must be 0..32"
	for f in build/virtman build/boot/vmlinuz build/boot/initrd.img build/boot/userland.squashfs \
		build/images/tiny.img; do
		[[ -s $f ]] || die "$f missing (make, make userland, make images-tiny)"
	done
	down >/dev/null
	mkdir -p "$RUN"
	cp build/images/tiny.img "$RUN/tiny.img"
	ip netns add "$NS"
	ip -n "$NS" link set lo up
	ip -n "$NS" link add br0 type bridge
	ip -n "$NS" link set br0 type bridge forward_delay 0 stp_state 0
	ip -n "$NS" addr add "$SEED/16" dev br0
	ip -n "$NS" link set br0 up
	# The way in from this machine's browser: a routed veth, nothing bridged to a real LAN.
	ip link add vm-demo0 type veth peer name uplink netns "$NS"
	ip addr add "$OUTER/30" dev vm-demo0
	ip link set vm-demo0 up
	ip -n "$NS" addr add "$INNER/30" dev uplink
	ip -n "$NS" link set uplink up
	for ((i = 1; i <= HOSTS; i++)); do
		ip -n "$NS" tuntap add "tap$i" mode tap
		ip -n "$NS" link set "tap$i" master br0
		ip -n "$NS" link set "tap$i" up
	done
	ip netns exec "$NS" build/virtman seed --iface br0 --dhcp full \
		--pool 10.215.1.1-10.215.1.250 --http 0.0.0.0:8080 --iscsi "$SEED:3260" \
		--image "$RUN/tiny.img" --userland build/boot/userland.squashfs \
		--kernel build/boot/vmlinuz --initrd build/boot/initrd.img \
		--vms-per-host "$VMS" --memory 192 --vm-timeout 900 --state-dir "$RUN/state" \
		>"$RUN/seed.log" 2>&1 &
	echo $! >"$RUN/seed.pid"
	local deadline=$((SECONDS + 60))
	until grep -q "serving " "$RUN/seed.log"; do
		((SECONDS < deadline)) || { cat "$RUN/seed.log"; die "the seed did not start"; }
		sleep 0.2
	done
	for ((i = 1; i <= HOSTS; i++)); do
		ip netns exec "$NS" qemu-system-x86_64 -accel "$ACCEL" -m $((768 + VMS * 256)) -smp 2 \
			-display none -monitor none -serial "file:$RUN/host$i.console" -boot n \
			-netdev "tap,id=n0,ifname=tap$i,script=no,downscript=no" \
			-device "virtio-net-pci,netdev=n0,mac=52:54:00:de:00:0$i" >/dev/null 2>&1 &
		echo $! >"$RUN/host$i.pid"
	done
	echo "demo: $HOSTS hosts booting, $VMS VMs each; dashboard: http://$INNER:8080/"
	local want=$((HOSTS * VMS)) up=0
	deadline=$((SECONDS + TIMEOUT))
	while :; do
		up=$(ip netns exec "$NS" curl -sf "http://$SEED:8080/api/v1/hosts" | python3 -c 'import json,sys
print(sum(1 for h in json.load(sys.stdin)["hosts"] for v in h["vms"] if v["stage"] == "vm-up"))' ||
			echo 0)
		((up >= want)) && break
		((SECONDS < deadline)) || { echo "demo: only $up of $want VMs up after $TIMEOUT s"; break; }
		sleep 2
	done
	ip netns exec "$NS" build/virtman status --seed "http://$SEED:8080"
	echo
	echo "demo: $up of $want VMs up. Dashboard: http://$INNER:8080/  (make demo-down removes it)"
}

case ${1:-} in
up) up ;;
down) down ;;
*) die "usage: demo/demo.sh up|down" ;;
esac
