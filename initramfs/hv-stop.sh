#!/bin/sh
# hv-stop: undoes hv-start: stops libvirtd and unmounts /hv-root (with everything bound into
# it), /hv-rw and /hv. Stop the VMs first: a running QEMU keeps the overlay busy.
# Exits 0 when nothing is left mounted (also when nothing was), 1 with the reason otherwise.
# env: HV_STOP_TIMEOUT: seconds libvirtd gets to exit after SIGTERM (default 30)
# Installed as /bin/hv-stop in the host boot image.

root=/hv-root
timeout=${HV_STOP_TIMEOUT:-30}
status=0

pid=$(cat /run/libvirtd.pid 2>/dev/null)
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
	kill -TERM "$pid"
	deadline=$(($(date +%s) + timeout))
	while kill -0 "$pid" 2>/dev/null; do
		if [ "$(date +%s)" -ge "$deadline" ]; then
			echo "hv-stop: libvirtd ($pid) ignored SIGTERM for $timeout s: killed" >&2
			kill -KILL "$pid"
			break
		fi
		sleep 0.1
	done
fi
rm -f /run/libvirtd.pid

# Deepest first: in reverse order a path sorts before every path it is a prefix of.
for dir in $(awk -v root="$root" '$2 == root || index($2, root "/") == 1 { print $2 }' /proc/mounts |
	sort -r -u) /hv-rw /hv; do
	awk -v dir="$dir" '$2 == dir { found = 1 } END { exit !found }' /proc/mounts || continue
	if ! out=$(umount "$dir" 2>&1); then
		echo "hv-stop: cannot unmount $dir: $out" >&2
		status=1
	fi
done
exit $status
