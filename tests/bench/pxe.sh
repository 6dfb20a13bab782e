#!/usr/bin/env bash
# Network-boot benchmarks, side by side in one run, reported as ratios:
#   1. TFTP: curl fetching undionly.kpxe (and a larger file) from `virtman seed` vs dnsmasq's
#      TFTP server, at blksize 512 and 1468, one client after another and many at once;
#   2. HTTP: 50 concurrent curl clients fetching an initramfs-sized file (20 MiB) from
#      `virtman seed` vs nginx serving the same file with sendfile.
#
# Runs as root. Servers and clients live in two network namespaces this script creates,
# joined by a veth pair (10.213.1.1 <-> 10.213.1.2); nothing is sent anywhere else. The
# servers take turns on the same address and ports; the order alternates between rounds.
# Everything it starts or creates is removed on exit, Ctrl-C included.
#
# Knobs (environment):
#   ROUNDS=3              rounds per measurement (the median is reported)
#   TFTP_SEQ=20           sequential fetches per TFTP run
#   TFTP_PAR=16           concurrent TFTP clients (each fetching TFTP_EACH times)
#   TFTP_EACH=5
#   TFTP_BIG_MB=8         the larger TFTP file
#   HTTP_MB=20            the HTTP file
#   HTTP_CLIENTS=50       concurrent HTTP clients, each fetching HTTP_EACH times
#   HTTP_EACH=4
#   NGINX_WORKERS=1       nginx worker processes (the seed is one process, one thread)
#   VIRTMAN=build/virtman the binary under test (static musl release build)
set -uo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VIRTMAN="${VIRTMAN:-$REPO_ROOT/build/virtman}"
ROUNDS="${ROUNDS:-3}"
TFTP_SEQ="${TFTP_SEQ:-20}"
TFTP_PAR="${TFTP_PAR:-16}"
TFTP_EACH="${TFTP_EACH:-5}"
TFTP_BIG_MB="${TFTP_BIG_MB:-8}"
HTTP_MB="${HTTP_MB:-20}"
HTTP_CLIENTS="${HTTP_CLIENTS:-50}"
HTTP_EACH="${HTTP_EACH:-4}"
NGINX_WORKERS="${NGINX_WORKERS:-1}"
IPXE_FILE=/usr/lib/ipxe/undionly.kpxe
SRV=10.213.1.1
CLI=10.213.1.2
HTTP_PORT=8080
READY_TIMEOUT=30

printf '# command: ROUNDS=%s TFTP_SEQ=%s TFTP_PAR=%s TFTP_EACH=%s TFTP_BIG_MB=%s HTTP_MB=%s HTTP_CLIENTS=%s HTTP_EACH=%s NGINX_WORKERS=%s VIRTMAN=%q %q\n' \
	"$ROUNDS" "$TFTP_SEQ" "$TFTP_PAR" "$TFTP_EACH" "$TFTP_BIG_MB" "$HTTP_MB" "$HTTP_CLIENTS" \
	"$HTTP_EACH" "$NGINX_WORKERS" "$VIRTMAN" "$0"

die() {
	echo "pxe.sh: $*" >&2
	exit 1
}

[[ $EUID -eq 0 ]] || die "needs root (network namespaces, ports 69 and 80xx)"
for cmd in ip curl dnsmasq nginx sha256sum timeout awk; do
	command -v "$cmd" >/dev/null || die "$cmd not installed (apt packages: iproute2 curl dnsmasq-base nginx-light)"
done
[[ -x $VIRTMAN ]] || die "$VIRTMAN is not built (run 'make')"
[[ -r $IPXE_FILE ]] || die "$IPXE_FILE missing (apt package ipxe)"

# ---------------------------------------------------------------- setup and cleanup
WORK=$(mktemp -d /dev/shm/vmbench-pxe.XXXXXX) || die "mktemp failed"
NS_SRV="vmbench$$-srv"
NS_CLI="vmbench$$-cli"
SERVER_PID=

cleanup() {
	if [[ -n $SERVER_PID ]]; then
		kill -TERM "$SERVER_PID" 2>/dev/null
		wait "$SERVER_PID" 2>/dev/null
	fi
	[[ -f $WORK/nginx.pid ]] && kill -TERM "$(cat "$WORK/nginx.pid")" 2>/dev/null
	local n pid
	for n in "$NS_SRV" "$NS_CLI"; do
		for pid in $(ip netns pids "$n" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
		ip netns del "$n" 2>/dev/null
	done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$NS_SRV" || die "ip netns add"
ip netns add "$NS_CLI" || die "ip netns add"
ip -n "$NS_SRV" link set lo up
ip -n "$NS_CLI" link set lo up
ip link add srv0 netns "$NS_SRV" type veth peer name cli0 netns "$NS_CLI" || die "veth"
ip -n "$NS_SRV" addr add "$SRV/24" dev srv0
ip -n "$NS_CLI" addr add "$CLI/24" dev cli0
ip -n "$NS_SRV" link set srv0 up
ip -n "$NS_CLI" link set cli0 up

mkdir -p "$WORK/root" "$WORK/www" "$WORK/state"
chmod 755 "$WORK" "$WORK/www"	# nginx's workers run as www-data
cp "$IPXE_FILE" "$WORK/root/undionly.kpxe"
head -c $((TFTP_BIG_MB * 1048576)) /dev/urandom >"$WORK/root/big.bin"
head -c $((HTTP_MB * 1048576)) /dev/urandom >"$WORK/www/initrd.img"
chmod 644 "$WORK/www/initrd.img"
WANT_HTTP=$(sha256sum "$WORK/www/initrd.img" | cut -d' ' -f1)

now_ns() { date +%s%N; }

wait_log() {
	local file=$1 regex=$2 deadline=$((SECONDS + READY_TIMEOUT))
	until grep -Eq "$regex" "$file" 2>/dev/null; do
		((SECONDS < deadline)) || die "not ready: $file: $(tail -n 5 "$file")"
		sleep 0.05
	done
}

start_seed() {
	ip netns exec "$NS_SRV" "$VIRTMAN" seed --iface srv0 --dhcp off --tftp-root "$WORK/root" \
		--kernel "$WORK/www/initrd.img" --initrd "$WORK/www/initrd.img" \
		--http "$SRV:$HTTP_PORT" --state-dir "$WORK/state" >"$WORK/seed.log" 2>&1 &
	SERVER_PID=$!
	wait_log "$WORK/seed.log" 'serving '
	HTTP_URL="http://$SRV:$HTTP_PORT/boot/initrd.img"
}

start_dnsmasq() {
	ip netns exec "$NS_SRV" dnsmasq --keep-in-foreground --no-daemon --conf-file=/dev/null \
		--port=0 --enable-tftp --tftp-root="$WORK/root" --interface=srv0 --bind-interfaces \
		--pid-file="$WORK/dnsmasq.pid" --log-facility=- >"$WORK/dnsmasq.log" 2>&1 &
	SERVER_PID=$!
	wait_log "$WORK/dnsmasq.log" 'TFTP root is'
}

start_nginx() {
	cat >"$WORK/nginx.conf" <<-EOF
		worker_processes $NGINX_WORKERS;
		daemon off;
		pid $WORK/nginx.pid;
		error_log $WORK/nginx.err warn;
		events { worker_connections 4096; }
		http {
			access_log off;
			sendfile on;
			tcp_nopush on;
			keepalive_timeout 0;
			types { application/octet-stream img; }
			server { listen $SRV:$HTTP_PORT; root $WORK/www; }
		}
	EOF
	ip netns exec "$NS_SRV" nginx -c "$WORK/nginx.conf" -p "$WORK" >"$WORK/nginx.log" 2>&1 &
	SERVER_PID=$!
	local deadline=$((SECONDS + READY_TIMEOUT))
	until ip netns exec "$NS_CLI" curl -sf -o /dev/null "http://$SRV:$HTTP_PORT/initrd.img"; do
		((SECONDS < deadline)) || die "nginx not ready: $(cat "$WORK/nginx.err" 2>/dev/null)"
		sleep 0.05
	done
	HTTP_URL="http://$SRV:$HTTP_PORT/initrd.img"
}

stop_server() {
	kill -TERM "$SERVER_PID" 2>/dev/null
	wait "$SERVER_PID" 2>/dev/null
	SERVER_PID=
	rm -f "$WORK/nginx.pid"
}

# tftp_seq FILE BLKSIZE: MB/s of TFTP_SEQ fetches one after another.
tftp_seq() {
	local file=$1 bs=$2 size t0 t1
	size=$(stat -c %s "$WORK/root/$file")
	t0=$(now_ns)
	for ((i = 0; i < TFTP_SEQ; i++)); do
		ip netns exec "$NS_CLI" curl -sS --max-time 120 --tftp-blksize "$bs" -o "$WORK/got" \
			"tftp://$SRV/$file" || die "tftp fetch of $file failed"
	done
	t1=$(now_ns)
	cmp -s "$WORK/got" "$WORK/root/$file" || die "tftp: $file differs"
	awk -v b=$((size * TFTP_SEQ)) -v ns=$((t1 - t0)) 'BEGIN { printf "%.2f", b / 1048576 / (ns / 1e9) }'
}

# tftp_par FILE BLKSIZE: MB/s of TFTP_PAR clients fetching TFTP_EACH times each at once.
tftp_par() {
	local file=$1 bs=$2 size t0 t1 pids=() c
	size=$(stat -c %s "$WORK/root/$file")
	t0=$(now_ns)
	for ((c = 0; c < TFTP_PAR; c++)); do
		ip netns exec "$NS_CLI" bash -c "for ((i = 0; i < $TFTP_EACH; i++)); do
			curl -sS --max-time 120 --tftp-blksize $bs -o '$WORK/par-$c' 'tftp://$SRV/$file' || exit 1
		done" &
		pids+=($!)
	done
	for c in "${pids[@]}"; do wait "$c" || die "a parallel tftp client failed"; done
	t1=$(now_ns)
	cmp -s "$WORK/par-0" "$WORK/root/$file" || die "tftp: $file differs"
	awk -v b=$((size * TFTP_PAR * TFTP_EACH)) -v ns=$((t1 - t0)) 'BEGIN { printf "%.2f", b / 1048576 / (ns / 1e9) }'
}

# http_par: MB/s of HTTP_CLIENTS clients fetching $HTTP_URL HTTP_EACH times each at once.
http_par() {
	local size t0 t1 pids=() c
	size=$(stat -c %s "$WORK/www/initrd.img")
	t0=$(now_ns)
	for ((c = 0; c < HTTP_CLIENTS; c++)); do
		ip netns exec "$NS_CLI" bash -c "for ((i = 0; i < $HTTP_EACH; i++)); do
			curl -sSf --max-time 300 '$HTTP_URL' | sha256sum | cut -d' ' -f1 >'$WORK/sum-$c' || exit 1
			[[ \$(cat '$WORK/sum-$c') == $WANT_HTTP ]] || exit 1
		done" &
		pids+=($!)
	done
	for c in "${pids[@]}"; do wait "$c" || die "an http client failed or got other bytes"; done
	t1=$(now_ns)
	awk -v b=$((size * HTTP_CLIENTS * HTTP_EACH)) -v ns=$((t1 - t0)) 'BEGIN { printf "%.2f", b / 1048576 / (ns / 1e9) }'
}

median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

declare -A RES
TFTP_CASES=("undionly.kpxe 512 seq" "undionly.kpxe 1468 seq" "undionly.kpxe 1468 par"
	"big.bin 1468 seq" "big.bin 1468 par")

run_tftp() {
	local who=$1 case file bs mode v
	for case in "${TFTP_CASES[@]}"; do
		read -r file bs mode <<<"$case"
		if [[ $mode == seq ]]; then v=$(tftp_seq "$file" "$bs"); else v=$(tftp_par "$file" "$bs"); fi
		RES["$who|tftp $case"]+="$v "
	done
}

for ((r = 1; r <= ROUNDS; r++)); do
	if ((r % 2)); then order="seed other"; else order="other seed"; fi
	for who in $order; do
		if [[ $who == seed ]]; then start_seed; else start_dnsmasq; fi
		run_tftp "$who"
		stop_server
		if [[ $who == seed ]]; then start_seed; else start_nginx; fi
		RES["$who|http"]+="$(http_par) "
		stop_server
	done
	echo "# round $r done" >&2
done

printf '\n%-34s %12s %12s %8s\n' "measurement (MB/s, median of $ROUNDS)" "virtman" "reference" "ratio"
for case in "${TFTP_CASES[@]}"; do
	read -r file bs mode <<<"$case"
	s=$(median ${RES["seed|tftp $case"]})
	o=$(median ${RES["other|tftp $case"]})
	label="TFTP $file bs=$bs $([[ $mode == seq ]] && echo "x$TFTP_SEQ seq" || echo "${TFTP_PAR}x$TFTP_EACH par")"
	printf '%-34s %12s %12s %8s   (reference: dnsmasq)\n' "$label" "$s" "$o" \
		"$(awk -v a="$s" -v b="$o" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')"
done
s=$(median ${RES["seed|http"]})
o=$(median ${RES["other|http"]})
printf '%-34s %12s %12s %8s   (reference: nginx, %s worker)\n' \
	"HTTP ${HTTP_MB}MiB ${HTTP_CLIENTS}x$HTTP_EACH clients" "$s" "$o" \
	"$(awk -v a="$s" -v b="$o" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')" "$NGINX_WORKERS"
