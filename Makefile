# virtman: one flat Makefile. `make` builds the static musl binary build/virtman;
# `make test` builds sanitized host binaries and runs unit + integration tests.

MUSL_CC  ?= musl-gcc
HOST_CC  ?= gcc
FUZZ_CC  ?= clang
BUILD    ?= build

WARN     := -Wall -Wextra -Werror -Wimplicit-fallthrough -Wshadow -Wno-unused-parameter \
            -Wstrict-prototypes -Wmissing-prototypes -Wvla
CPPFLAGS := -D_GNU_SOURCE -I. -MMD -MP
CFLAGS   := -std=c11 -O2 -g $(WARN)
HOSTFLAGS := -std=c11 -O1 -g $(WARN) -fno-omit-frame-pointer -fsanitize=address,undefined \
             -fno-sanitize-recover=undefined
FUZZFLAGS := -std=c11 -O1 -g $(WARN) -fsanitize=fuzzer,address,undefined

# Every source of the product, by role. virtman.c holds main().
LIB_SRCS := $(wildcard lib/*.c) $(wildcard iscsi/*.c) $(wildcard pxe/*.c) \
            $(wildcard appliance/*.c) $(wildcard hostagent/*.c)
MAIN_SRC := virtman.c

MUSL_OBJS := $(patsubst %.c,$(BUILD)/musl/%.o,$(LIB_SRCS) $(MAIN_SRC))
HOST_OBJS := $(patsubst %.c,$(BUILD)/host/%.o,$(LIB_SRCS))
FUZZ_OBJS := $(patsubst %.c,$(BUILD)/fuzzobj/%.o,$(LIB_SRCS))

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/host/unit/%,$(UNIT_SRCS))
TOOL_SRCS := $(wildcard tests/tools/*.c)
TOOL_BINS := $(patsubst tests/tools/%.c,$(BUILD)/host/tools/%,$(TOOL_SRCS))
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRCS))

FUZZ_SECONDS ?= 60

# Debian packages the build, the tests and the demo need (installed by `make deps`).
DEB_PKGS := build-essential musl-tools clang libclang-rt-14-dev libcmocka-dev pkg-config \
            bats bats-assert bats-support curl iproute2 procps python3 \
            libiscsi-bin tgt qemu-utils qemu-block-extra qemu-system-x86 ipxe ovmf busybox-static \
            open-iscsi libvirt-daemon-system libvirt-clients linux-image-amd64 \
            dnsmasq-base nginx-light kmod cpio zstd squashfs-tools debootstrap \
            syslinux syslinux-common mtools dosfstools fdisk e2fsprogs chromium

.PHONY: all host tools test unit fuzz fuzz-build deps demo demo-down bench clean boot userland
.PHONY: images images-tiny images-debian
all: $(BUILD)/virtman boot

$(BUILD)/virtman: $(MUSL_OBJS)
	$(MUSL_CC) -static -o $@ $(MUSL_OBJS)

$(BUILD)/musl/%.o: %.c
	@mkdir -p $(dir $@)
	$(MUSL_CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

# The host boot image: the distribution kernel and a small initramfs around build/virtman.
BOOT_INPUTS := $(filter-out initramfs/userland.sh initramfs/README.md,$(wildcard initramfs/*))
boot: $(BUILD)/boot/vmlinuz $(BUILD)/boot/initrd.img

$(BUILD)/boot/vmlinuz $(BUILD)/boot/initrd.img &: $(BUILD)/virtman $(BOOT_INPUTS) $(wildcard /boot/vmlinuz-*)
	initramfs/build.sh $(BUILD)/boot $(BUILD)/virtman

# The hypervisor userland (libvirt + QEMU) as a squashfs: takes a minute or two and root
# (debootstrap), so plain `make` leaves it out; rebuilt only when its script changes.
userland: $(BUILD)/boot/userland.squashfs

$(BUILD)/boot/userland.squashfs: initramfs/userland.sh
	initramfs/userland.sh $@

# VM images (images/README.md): the tiny ones boot in seconds under TCG and are built by the
# tests that need them; the Debian one takes a minute or more and root (debootstrap), so it is
# built only on demand. Each is rebuilt when its scripts change.
IMAGES_DIR := $(BUILD)/images
TINY_DEPS  := images/tiny/build.sh images/common.sh
images: images-tiny images-debian
images-tiny: $(IMAGES_DIR)/tiny.img $(IMAGES_DIR)/tiny-v2.img $(IMAGES_DIR)/tiny-broken.img
images-debian: $(IMAGES_DIR)/debian.img

$(IMAGES_DIR)/tiny.img: $(TINY_DEPS)
	images/tiny/build.sh $@

# The same image with another marker: reimaging tests tell the two apart by it.
$(IMAGES_DIR)/tiny-v2.img: $(TINY_DEPS)
	images/tiny/build.sh $@ virtman-vm-up-v2

# A partition table without a bootloader: the VM that cannot boot.
$(IMAGES_DIR)/tiny-broken.img: $(TINY_DEPS)
	images/tiny/build.sh --no-bootloader $@

$(IMAGES_DIR)/debian.img: images/debian/build.sh images/common.sh
	images/debian/build.sh $@

# Host build with AddressSanitizer + UndefinedBehaviorSanitizer: tests run against it.
host: $(BUILD)/host/virtman $(UNIT_BINS) $(TOOL_BINS)

$(BUILD)/host/virtman: $(HOST_OBJS) $(BUILD)/host/virtman.o
	$(HOST_CC) $(HOSTFLAGS) -o $@ $(HOST_OBJS) $(BUILD)/host/virtman.o

$(BUILD)/host/%.o: %.c
	@mkdir -p $(dir $@)
	$(HOST_CC) $(CPPFLAGS) $(HOSTFLAGS) -c -o $@ $<

$(BUILD)/host/unit/%: tests/unit/%.c $(HOST_OBJS)
	@mkdir -p $(dir $@)
	$(HOST_CC) $(CPPFLAGS) $(HOSTFLAGS) -o $@ $< $(HOST_OBJS) -lcmocka

$(BUILD)/host/tools/%: tests/tools/%.c $(HOST_OBJS)
	@mkdir -p $(dir $@)
	$(HOST_CC) $(CPPFLAGS) $(HOSTFLAGS) -o $@ $< $(HOST_OBJS)

$(BUILD)/fuzzobj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZFLAGS) -c -o $@ $<

# A harness that #includes a source file to reach its statics links without its object.
FUZZ_LINK_fuzz_target := $(filter-out $(BUILD)/fuzzobj/iscsi/target.o,$(FUZZ_OBJS))
FUZZ_LINK_fuzz_initiator := $(filter-out $(BUILD)/fuzzobj/iscsi/initiator.o,$(FUZZ_OBJS))
FUZZ_LINK_fuzz_console := $(filter-out $(BUILD)/fuzzobj/hostagent/vms.o,$(FUZZ_OBJS))

$(BUILD)/fuzz/%: tests/fuzz/%.c $(FUZZ_OBJS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZFLAGS) -o $@ $< $(or $(FUZZ_LINK_$*),$(FUZZ_OBJS))

fuzz-build: $(FUZZ_BINS)

# Runs every fuzz harness for FUZZ_SECONDS each, starting from its seed corpus.
fuzz: $(FUZZ_BINS)
	@for f in $(FUZZ_BINS); do n=$$(basename $$f); mkdir -p $(BUILD)/corpus/$$n; \
	  echo "fuzz: $$n for $(FUZZ_SECONDS)s"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $(BUILD)/corpus/$$n \
	      tests/fuzz/corpus/$$n || exit 1; done

# Installs only what is missing, so a second run does nothing.
deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	  | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "deps: installing $$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; apt-get update -q && \
	  apt-get install -y -q --no-install-recommends $$missing; \
	else echo "deps: all installed"; fi

test: deps
	$(MAKE) all host fuzz-build images-tiny
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) userland; \
	else echo "test: not root, so no $(BUILD)/boot/userland.squashfs: its test will skip"; fi
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) images-debian || \
	  echo "test: images-debian failed (debootstrap needs the Debian mirror): its boot test will skip"; \
	else echo "test: not root, so no $(BUILD)/images/debian.img: its boot test will skip"; fi
	@tests/run.sh

unit: host
	@tests/run.sh unit

# Every benchmark of BENCHMARKS.md, each side by side with the peer a user would pick.
bench: deps all images-debian
	tests/bench/target.sh
	tests/bench/relay.sh
	tests/bench/pxe.sh
	tests/bench/rack.sh
	tests/bench/vmboot.sh

# A virtual rack (HOSTS=3 VMS=2) in a private network namespace; left running.
demo: deps all userland images-tiny
	demo/demo.sh up

demo-down:
	demo/demo.sh down

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
