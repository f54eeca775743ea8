#!/usr/bin/env bash
# The same `vdisk create --script` in every output format gives the same
# disk: with --deterministic (and SOURCE_DATE_EPOCH) the MBR disk identifier
# is derived from the table and the partition contents only, not from the
# format or its options, so raw, VDI, VMDK and streamOptimized VMDK outputs
# converted back to raw (qemu-img convert -O raw) are byte-identical and
# sfdisk --json agrees on them.  The image UUIDs and the CID may differ per
# format but are the same twice.
. "$(dirname "$0")/../lib.sh"
need qemu-img sfdisk jq cmp openssl
cd "$T" || exit 1

rand_bytes p1 $((3 << 20)) >p1.bin
rand_bytes p2 $((1 << 20)) >p2.bin
printf ',4MiB,83,file=p1.bin\n,2MiB,c,file=p2.bin\n,,82\n' >script
outs="d.img d.vdi d.vmdk s.vmdk"
build() { # DIR
	mkdir -p "$1"
	"$VDISK" create -O raw --script script --deterministic "$1/d.img" 16M >/dev/null &&
	"$VDISK" create -O vdi --script script --deterministic "$1/d.vdi" 16M >/dev/null &&
	"$VDISK" create -O vmdk --script script --deterministic "$1/d.vmdk" 16M >/dev/null &&
	SOURCE_DATE_EPOCH=1700000000 "$VDISK" create -O vmdk -o subformat=streamOptimized \
		--script script "$1/s.vmdk" 16M >/dev/null
}
build a || fail "vdisk create in the four formats"
for f in $outs; do
	qemu-img convert -O raw "a/$f" "a/$f.raw" || fail "qemu-img convert $f"
	sfdisk --json "a/$f.raw" | jq -c '.partitiontable | del(.device) | .partitions |= map(del(.node))' >"a/$f.json"
done
id=$(jq -r .id a/d.img.json)
[ -n "$id" ] && [ "$id" != 0x00000000 ] && pass "raw: a disk identifier ($id)" || fail "raw: no disk identifier"
for f in d.vdi d.vmdk s.vmdk; do
	assert_eq "$f: sfdisk --json of the raw" "$(cat a/d.img.json)" "$(cat "a/$f.json")"
	cmp -s a/d.img.raw "a/$f.raw" && pass "$f: the same bytes as the raw output" ||
		fail "$f: differs from the raw output ($(cmp a/d.img.raw "a/$f.raw" 2>&1 | head -1))"
done
cmp -s a/d.img a/d.img.raw && pass "raw output: qemu-img reads it as written" || fail "raw output differs from its conversion"

# image identifiers: deterministic per format
build b || fail "second build"
for f in $outs; do
	cmp -s "a/$f" "b/$f" && pass "$f: identical twice" || fail "$f: differs between two deterministic builds"
done
u_vdi=$("$VDISK" info --output=json a/d.vdi | jq -r .uuid)
u_vmdk=$("$VDISK" info --output=json a/d.vmdk | jq -r .uuid)
[[ $u_vdi =~ ^[0-9a-f]{8}-[0-9a-f]{4}-8 ]] && pass "vdi: a derived UUID ($u_vdi)" || fail "vdi UUID '$u_vdi'"
[[ $u_vmdk =~ ^[0-9a-f]{8}-[0-9a-f]{4}-8 ]] && pass "vmdk: a derived UUID ($u_vmdk)" || fail "vmdk UUID '$u_vmdk'"
finish
