#!/usr/bin/env bats
# The seed's dashboard in a real browser: a seed with an image and three `virtman agent`
# hosts in network namespaces (no QEMU, as in seed_rack.bats), then Debian's chromium,
# headless inside the seed's namespace, loads http://SEED:8080/, runs the page's script and
# dumps the DOM it drew, plus a screenshot kept as build/test-artifacts/dashboard.png.

load seed_helpers

CHROMIUM_TIMEOUT="${CHROMIUM_TIMEOUT:-120}"	# seconds; chromium starts slowly on 2 cores
ARTIFACTS="$REPO_ROOT/build/test-artifacts"

setup() {
	require_seed_env
	command -v chromium >/dev/null 2>&1 || skip "chromium missing: make deps installs it"
	require_cmd curl
	require_cmd python3
	lan_create
	ns_create seed
	lan_join seed seed0 "$SEED_ADDR"
	IMG="$BATS_TEST_TMPDIR/rack.img"
	make_image "$IMG" 8M
	STATE="$BATS_TEST_TMPDIR/state"
	SEED_URL="http://$SEED_ADDR:$SEED_HTTP_PORT"
}

# chromium_headless NAME URL ARGS...: chromium --headless inside the seed's namespace with a
# new empty profile, ARGS added; stdout in $BATS_TEST_TMPDIR/NAME.out. Fails on a non-zero
# exit or after $CHROMIUM_TIMEOUT s. The page gets 5 s of virtual time for its fetch and
# script (virtual time stops while a fetch is pending, so a slow seed does not cut it short).
chromium_headless() {
	local name=$1 url=$2 rc=0
	shift 2
	local home="$BATS_TEST_TMPDIR/chromium-$name"
	mkdir "$home" || fail "cannot create $home"
	# The profile and anything chromium writes under $HOME stay in the test's directory.
	timeout -k 10 "$CHROMIUM_TIMEOUT" ip netns exec "$(ns seed)" env HOME="$home" \
		chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
		--disable-background-networking --disable-component-update --disable-sync \
		--no-proxy-server --user-data-dir="$home/profile" --virtual-time-budget=5000 \
		"$@" "$url" >"$BATS_TEST_TMPDIR/$name.out" 2>"$BATS_TEST_TMPDIR/$name.err" 3>&- ||
		rc=$?
	if ((rc != 0)); then
		tail -n 40 "$BATS_TEST_TMPDIR/$name.err" >&2
		((rc == 124)) && fail "chromium did not finish within $CHROMIUM_TIMEOUT s"
		fail "chromium exited $rc"
	fi
}

# dom_outline FILE: the dashboard as drawn in the DOM dumped to FILE, one line per item:
#   summary: TEXT                     the #summary line
#   seed: TEXT                        the seed's node, in the tree's top <li>
#   host ID ADDR STAGE gen G depth D nest N under PARENT
#                                     a host's node; N counts the <li> it sits in below the
#                                     seed's, PARENT is the node of the <li> around it ("seed"
#                                     or "host ID")
#   note host ID: TEXT                a line of text in its node (detail, stage timings)
#   vm host ID: TEXT                  one of its VMs (a span in its VM line, class vms)
#   error host ID: TEXT               a line styled as an error (class reason)
#   stray: TAG TEXT                   anything in the tree that is not an <li> with a node
dom_outline() {
	python3 - "$1" <<-'PY'
		import re, sys
		from html.parser import HTMLParser

		VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
		        "source", "track", "wbr"}

		class Element:
		    def __init__(self, tag, attrs):
		        self.tag, self.attrs, self.children = tag, dict(attrs), []
		    def classes(self):
		        return (self.attrs.get("class") or "").split()
		    def elements(self, tag=None, cls=None):
		        return [c for c in self.children if isinstance(c, Element)
		                and (tag is None or c.tag == tag) and (cls is None or cls in c.classes())]
		    def text(self):
		        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

		class Builder(HTMLParser):
		    def __init__(self):
		        super().__init__()
		        self.root = Element("#document", [])
		        self.stack = [self.root]
		    def handle_starttag(self, tag, attrs):
		        e = Element(tag, attrs)
		        self.stack[-1].children.append(e)
		        if tag not in VOID:
		            self.stack.append(e)
		    def handle_endtag(self, tag):
		        if tag in VOID:
		            return
		        if self.stack[-1].tag != tag:
		            sys.exit(f"malformed DOM dump: </{tag}> closes <{self.stack[-1].tag}>")
		        self.stack.pop()
		    def handle_data(self, data):
		        self.stack[-1].children.append(data)

		def find_id(e, ident):
		    if isinstance(e, Element):
		        if e.attrs.get("id") == ident:
		            return e
		        for c in e.children:
		            found = find_id(c, ident)
		            if found is not None:
		                return found
		    return None

		def squash(s):
		    return " ".join(s.split())

		def walk_list(ul, parent, nest):
		    for c in ul.children:
		        if isinstance(c, str):
		            if c.strip():
		                print("stray: text", squash(c))
		        elif c.tag != "li" or not c.elements("div", "node"):
		            print("stray:", c.tag, squash(c.text()))
		        else:
		            walk_item(c, parent, nest)

		def walk_item(li, parent, nest):
		    node = li.elements("div", "node")[0]
		    if "seed" in node.classes():
		        print("seed:", squash(node.text()))
		        label = "seed"
		    else:
		        label = squash(node.elements("b")[0].text())
		        metas = node.elements("span", "meta")
		        addr = metas[0].text().split()[0]
		        stage = squash(node.elements("span", "stage")[0].text())
		        m = re.fullmatch(r"gen (\S+), depth (\S+)", squash(metas[1].text()))
		        gen, depth = m.groups() if m else ("?", "?")
		        print(f"{label} {addr} {stage} gen {gen} depth {depth} nest {nest} under {parent}")
		        for line in node.elements("div"):
		            if "vms" in line.classes():
		                for vm in line.elements("span", "vm"):
		                    print(f"vm {label}:", squash(vm.text()))
		                continue
		            kind = "error" if "reason" in line.classes() else "note"
		            print(f"{kind} {label}:", squash(line.text()))
		    for sub in li.elements("ul"):
		        walk_list(sub, label, nest + 1)

		builder = Builder()
		with open(sys.argv[1], encoding="utf-8") as f:
		    builder.feed(f.read())
		builder.close()
		summary = find_id(builder.root, "summary")
		print("summary:", squash(summary.text()) if summary is not None else "(no #summary)")
		tree = find_id(builder.root, "tree")
		if tree is None:
		    sys.exit("no #tree in the DOM")
		walk_list(tree, "-", 0)
	PY
}

# png_check FILE: "WIDTHxHEIGHT BYTES" of a PNG file, after checking its signature and IHDR,
# then one line per colour of the page's stylesheet found in its pixels ("ready-badge",
# "seed-node"), so a screenshot of an empty or unstyled page does not pass.
png_check() {
	python3 - "$1" <<-'PY'
		import struct, sys, zlib

		data = open(sys.argv[1], "rb").read()
		if data[:8] != b"\x89PNG\r\n\x1a\n":
		    sys.exit(f"not a PNG: starts with {data[:8]!r}")
		length, kind = struct.unpack(">I4s", data[8:16])
		if kind != b"IHDR" or length != 13:
		    sys.exit("no IHDR chunk first")
		width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
		print(f"{width}x{height} {len(data)}")
		# Decode the pixels: 8-bit RGB or RGBA, not interlaced, as chromium writes them.
		if depth != 8 or colour not in (2, 6) or interlace:
		    sys.exit(f"unexpected PNG format: depth {depth}, colour type {colour}")
		idat, pos = b"", 8
		while pos + 8 <= len(data):
		    length, kind = struct.unpack(">I4s", data[pos:pos + 8])
		    if kind == b"IDAT":
		        idat += data[pos + 8:pos + 8 + length]
		    pos += 12 + length
		raw, bpp = zlib.decompress(idat), 3 if colour == 2 else 4
		stride, prev, colours = width * bpp, bytearray(width * bpp), set()
		for y in range(height):
		    filt, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
		    for i in range(stride):
		        a = line[i - bpp] if i >= bpp else 0
		        b, c = prev[i], prev[i - bpp] if i >= bpp else 0
		        if filt == 1:
		            line[i] = (line[i] + a) & 255
		        elif filt == 2:
		            line[i] = (line[i] + b) & 255
		        elif filt == 3:
		            line[i] = (line[i] + (a + b) // 2) & 255
		        elif filt == 4:
		            p = a + b - c
		            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
		            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
		    colours.update(bytes(line[i:i + 3]) for i in range(0, stride, bpp))
		    prev = line
		for name, rgb in (("ready-badge", "c8f0c8"), ("failed-badge", "f6c4c4"), ("seed-node", "eef3ff")):
		    if bytes.fromhex(rgb) in colours:
		        print(name)
	PY
}

@test "dashboard: chromium draws the rack's tree, stages, generation, VMs and summary; screenshot kept" {
	start_seed seed seed --iface seed0 --dhcp off --image "$IMG" --state-dir "$STATE" \
		--heartbeat 1 --fanout 2
	local n
	for n in 1 2 3; do
		start_host "$n"
		# One at a time, so placement follows the registration order: root -> {1, 2}, 1 -> 3.
		wait_hosts_ready "$n"
	done
	assert_equal "$(host_field 3 parent)" 1
	assert_equal "$(host_field 3 depth)" 2
	# Host 3's VMs, as its agent reports them (these agents run no VMs): one up, one failed.
	local beat
	for beat in "vm=host3-vm1\nvm-stage=vm-booting" "vm=host3-vm2\nvm-stage=vm-booting" \
		"vm=host3-vm1\nvm-stage=vm-up" \
		"vm=host3-vm2\nvm-stage=failed\nreason=the BIOS found no bootable disk; console ends: No bootable device."; do
		printf "token=%s\n$beat\n" "$(cat "$STATE/boot-token")" |
			in_ns seed curl -sf --data-binary @- "$SEED_URL/api/v1/hosts/3/heartbeat" \
			>/dev/null || fail "the seed refused the heartbeat '$beat'"
	done

	local png="$ARTIFACTS/dashboard.png"
	mkdir -p "$ARTIFACTS"
	rm -f "$png"
	chromium_headless dashboard "$SEED_URL/" --dump-dom --window-size=1280,900 \
		--screenshot="$png"

	run dom_outline "$BATS_TEST_TMPDIR/dashboard.out"
	assert_success
	# The script ran and fetched the tree: not the "loading…" the page is served with.
	assert_line --regexp '^summary: 3 hosts \(3 ready\), 1 of 2 VMs up, '
	assert_line --regexp "^seed: seed .*, fan-out 2, generation 1$"
	# Each host once, ready, in the <ul> of its parent's <li>.
	assert_equal "$(grep -c '^host ' <<<"$output")" 3
	assert_line "host 1 10.213.1.11 ready gen 1 depth 1 nest 1 under seed"
	assert_line "host 2 10.213.1.12 ready gen 1 depth 1 nest 1 under seed"
	assert_line "host 3 10.213.1.13 ready gen 1 depth 2 nest 2 under host 1"
	for n in 1 2 3; do
		assert_line --regexp "^note host $n: registered \+0\.0 s, .*ready \+[0-9]+\.[0-9] s$"
	done
	# Host 3's VMs with their stages, the failed one's reason in full; healthy hosts show no
	# error.
	assert_line --regexp '^vm host 3: host3-vm1: vm-up \([0-9]+\.[0-9] s\)$'
	assert_line "vm host 3: host3-vm2: failed"
	assert_line "error host 3: host3-vm2: the BIOS found no bootable disk; console ends: No bootable device."
	refute_line --regexp '^(vm|error) host [12]:'
	refute_line --regexp '^stray: '

	[[ -f $png ]] || fail "chromium wrote no screenshot at $png"
	run png_check "$png"
	assert_success
	assert_line --regexp '^1280x900 [0-9]+$'
	local bytes=${lines[0]#* }
	((bytes > 20000)) || fail "the screenshot has only $bytes bytes"
	assert_line ready-badge
	assert_line failed-badge
	assert_line seed-node
	stop_seed
}
