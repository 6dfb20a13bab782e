#!/bin/sh
# Test hook of tests/bats/bootimage.bats: appended to the boot image as /test.sh, run once by
# busybox init instead of the agent when the kernel command line says virtman.test (see
# initramfs/init). Prints "virtman-test-..." markers on the console and powers off.
#   virtman.test.mode=iscsi virtman.test.portal=IP:PORT virtman.test.iqn=IQN
#       DHCP through /etc/udhcpc.script, then open-iscsi attaches the LUN: prints the lease
#       file and the disk's sha256
#   virtman.test.mode=userland
#       hv-start on a bad device, then on the userland squashfs attached as /dev/vda; virsh,
#       a VM, hv-stop

mode='' portal='' iqn=''
set -f
for word in $(cat /proc/cmdline); do
	case $word in
	virtman.test.mode=*) mode=${word#*=} ;;
	virtman.test.portal=*) portal=${word#*=} ;;
	virtman.test.iqn=*) iqn=${word#*=} ;;
	esac
done
set +f

# wait_for TEST SECONDS: polls the shell condition TEST until true or the deadline.
wait_for() {
	deadline=$(($(date +%s) + $2))
	until eval "$1"; do
		[ "$(date +%s)" -lt "$deadline" ] || return 1
		sleep 0.1
	done
}

test_iscsi() {
	udhcpc -i eth0 -f -q -n -t 5 -T 2 -s /etc/udhcpc.script || return 1
	echo "virtman-test-lease-begin"
	cat /run/virtman/lease.eth0
	echo "virtman-test-lease-end"
	# iscsiadm starts iscsid by itself (iscsid.startup in /etc/iscsi/iscsid.conf).
	iscsiadm -m discovery -t st -p "$portal" || return 1
	# The target names the address it was reached on, the host's 127.0.0.1 behind QEMU's user
	# networking: record the node at the address the guest can reach instead.
	iscsiadm -m node -o new -T "$iqn" -p "$portal" >/dev/null || return 1
	iscsiadm -m node -T "$iqn" -p "$portal" --login || return 1
	wait_for '[ -b /dev/sda ]' 60 || return 1
	echo "virtman-test-sha256 $(sha256sum </dev/sda | cut -d' ' -f1)"
	iscsiadm -m node -T "$iqn" -p "$portal" --logout
}

# A diskless VM is enough to prove libvirt can run QEMU here (cgroups, no namespaces, root).
test_vm_xml='<domain type="qemu"><name>probe</name><memory unit="MiB">32</memory>
<os><type arch="x86_64" machine="pc">hvm</type></os><devices/>
</domain>'

test_userland() {
	# A device that holds no squashfs is refused with the reason, and leaves nothing mounted.
	if hv-start /etc/hosts 2>/tmp/hv-start.err; then return 1; fi
	cat /tmp/hv-start.err
	grep -q 'cannot mount as squashfs' /tmp/hv-start.err || return 1
	grep -q ' /hv' /proc/mounts && return 1
	echo "virtman-test-hv-bad-device-refused"
	started=$(cut -d' ' -f1 /proc/uptime)
	hv-start /dev/vda || return 1
	echo "virtman-test-hv-ready in $(awk -v t="$started" '{ print $1 - t }' /proc/uptime) s"
	# Starting again while libvirtd answers changes nothing.
	hv-start /dev/vda || return 1
	chroot /hv-root virsh -c qemu:///system version || return 1
	echo "$test_vm_xml" >/hv-root/tmp/probe.xml
	if chroot /hv-root virsh -c qemu:///system create /tmp/probe.xml; then
		echo "virtman-test-vm-started"
		chroot /hv-root virsh -c qemu:///system destroy probe
	fi
	hv-stop || return 1
	grep -q ' /hv' /proc/mounts && return 1
	echo "virtman-test-hv-stopped"
}

case $mode in
iscsi) test_iscsi ;;
userland) test_userland ;;
*) false ;;
esac
echo "virtman-test-done status=$?"
poweroff -f
