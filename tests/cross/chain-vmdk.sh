#!/usr/bin/env bash
# vdisk reads VMware delta chains byte for byte like qemu-img:
#  - qemu-img chains (`qemu-img create -f vmdk -b PARENT -F vmdk`, then
#    qemu-io writes, some of part of a grain): monolithicSparse children
#    (embedded descriptor) 3 deep and a twoGbMaxExtentSparse child (text
#    descriptor); convert -O raw == qemu-img convert; the flattened VMDK
#    compares equal and has no parent; info --backing-chain --output=json
#    lists what qemu-img info --backing-chain lists (filename, format,
#    virtual-size, backing-filename);
#  - ESXi vmfsSparse (COWD) deltas built by tests/helpers/mkcowd (qemu reads
#    them but cannot write them): over a sparse base, two deep, over a
#    qemu child, and the real ESXi snapshot descriptor of
#    ../shared/testimages (whose delta is missing upstream: vdisk names it;
#    then rebuilt with mkcowd over the real flat extent);
#  - parentCID mismatch refused, read with --force and a warning;
#  - hostile chains refused in bounded time: a loop, a child naming itself,
#    a parent outside the folder, a device as parent; 1000 levels and a
#    parent of another size do not crash or hang.
# Until vdisk has chain support (info --backing-chain) the test skips.
. "$(dirname "$0")/../lib.sh"
need qemu-img qemu-io jq cmp timeout
"$VDISK" info --help 2>&1 | grep -q backing-chain || skip "vdisk has no chain support yet"
H=${BUILD:-$TOP/build}/tests/helpers
[ -x "$H/mkcowd" ] || skip "mkcowd not built in $H (make unit-tests)"
MKCOWD=$H/mkcowd
K=1024 MiB=$((1 << 20))

same() { if cmp -s "$2" "$3"; then pass "$1"; else fail "$1: $(cmp "$2" "$3" 2>&1 | head -1)"; fi; }
flat() { # WHAT EXPECTED_RAW [vdisk convert options and SRC]
	local what=$1 exp=$2; shift 2
	rm -f "$T/flat.raw"
	if "$VDISK" convert -q -O raw "$@" "$T/flat.raw" 2>"$T/flat.err"; then same "$what" "$exp" "$T/flat.raw"
	else fail "$what: vdisk convert failed: $(head -c 300 "$T/flat.err")"; fi
}
qraw() { qemu-img convert -O raw "$1" "$2"; }
# the parts of an info --backing-chain JSON array both tools must agree on
CHAIN_JQ='[.[] | [(.filename | split("/") | last), .format, .["virtual-size"],
	((.["backing-filename"] // "") | split("/") | last)]]'
# refused WHAT CMD...: exits 1..127 (not a crash, not the timeout) within 20 s
refused() {
	local what=$1 rc=0; shift
	timeout 20 "$@" >"$T/.out" 2>"$T/.err" || rc=$?
	if [ "$rc" -ge 1 ] && [ "$rc" -lt 124 ]; then pass "$what"; else
		fail "$what: exit $rc ($(head -c 300 "$T/.err"))"; fi
}
# bounded WHAT CMD...: exit 0 or a clean refusal within 30 s
bounded() {
	local what=$1 rc=0; shift
	timeout 30 "$@" >"$T/.out" 2>"$T/.err" || rc=$?
	if [ "$rc" -lt 124 ]; then pass "$what (exit $rc)"; else fail "$what: exit $rc ($(head -c 300 "$T/.err"))"; fi
}

cd "$T" || exit 1
# ------------------------------------------------------- qemu-img chains
qemu-img create -q -f vmdk base.vmdk 8M
qemu-io -f vmdk -c 'write -q -P 0x11 0 3M' -c 'write -q -P 0x12 5M 1M' base.vmdk
qemu-img create -q -f vmdk -b base.vmdk -F vmdk mid.vmdk
qemu-io -f vmdk -c 'write -q -P 0x21 1M 1M' -c 'write -q -z 2M 64K' -c "write -q -P 0x22 $((5 * MiB + 4 * K)) 4K" mid.vmdk
qemu-img create -q -f vmdk -b mid.vmdk -F vmdk top.vmdk
qemu-io -f vmdk -c 'write -q -P 0x31 0 64K' -c "write -q -P 0x32 $((5 * MiB + 8 * K)) 512" -c 'write -q -P 0x33 7M 1M' top.vmdk
qraw mid.vmdk mid.q
qraw top.vmdk top.q
flat "2-deep qemu chain" mid.q mid.vmdk
flat "3-deep qemu chain" top.q top.vmdk
assert_rc "compare the chain with qemu's flattening" 0 "$VDISK" compare top.vmdk top.q
rm -f flat.vmdk
if "$VDISK" convert -q -O vmdk top.vmdk flat.vmdk 2>"$T/err"; then
	assert_rc "flattened VMDK: qemu-img compare" 0 qemu-img compare -q -f vmdk -F raw flat.vmdk top.q
	assert_eq "flattened VMDK has no parent" null "$(qemu-img info --output=json flat.vmdk | jq -r '.["backing-filename"] // "null"')"
else fail "convert -O vmdk of the chain: $(head -c 300 "$T/err")"; fi
if "$VDISK" info --backing-chain --output=json top.vmdk >v.json 2>"$T/err"; then
	qemu-img info --backing-chain --output=json top.vmdk >q.json
	assert_eq "info --backing-chain lists what qemu-img lists" "$(jq -c "$CHAIN_JQ" q.json)" "$(jq -c "$CHAIN_JQ" v.json)"
else fail "info --backing-chain --output=json: $(head -c 300 "$T/err")"; fi

# a child with a text descriptor (qemu writes its CID without leading zeros)
qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse -b base.vmdk -F vmdk split.vmdk
qemu-io -f vmdk -c 'write -q -P 0x41 3M 512K' split.vmdk
qraw split.vmdk split.q
flat "twoGbMaxExtentSparse child" split.q split.vmdk

# parentCID mismatch: the parent changed after the child was made
mkdir -p stale && cp base.vmdk stale/
qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse -b base.vmdk -F vmdk stale/child.vmdk
qemu-io -f vmdk -c 'write -q -P 0x51 0 64K' stale/child.vmdk
qraw stale/child.vmdk stale.q
sed -i 's/^parentCID=.*/parentCID=deadbee1/' stale/child.vmdk
assert_rc "parentCID mismatch: refused" 1 "$VDISK" convert -q -O raw stale/child.vmdk "$T/x.raw"
assert_contains "parentCID mismatch: named" "CID" "$T/.err"
rm -f "$T/x.raw"
assert_rc "parentCID mismatch: --force reads" 0 "$VDISK" convert -q --force -O raw stale/child.vmdk "$T/x.raw"
assert_contains "parentCID mismatch: --force warns" "warning" "$T/.err"
[ -f "$T/x.raw" ] && same "parentCID mismatch: --force gives the chain" stale.q "$T/x.raw"

# ------------------------------------------------------- ESXi COWD deltas
qraw base.vmdk base.q
rand_bytes chain-vmdk-c1 $((16 * K)) >c1
"$MKCOWD" create base-000001-delta.vmdk base-000001.vmdk --parent base.vmdk \
	--grain 0=0xa1 --grain 1M:64K=0xb1 --grain 3M=c1 --grain 7M:1M=0xc1
"$MKCOWD" read base-000001.vmdk --parent-raw base.q >d1.ref
qraw base-000001.vmdk d1.q
same "COWD: mkcowd and qemu-img agree" d1.ref d1.q
flat "COWD delta over a sparse base" d1.ref base-000001.vmdk
"$MKCOWD" create base-000002-delta.vmdk base-000002.vmdk --parent base-000001.vmdk --grain-size 8 \
	--grain 4K=0xd2 --grain 1M:8K=0xd3
"$MKCOWD" read base-000002.vmdk --parent-raw d1.ref >d2.ref
flat "two COWD deltas" d2.ref base-000002.vmdk
"$MKCOWD" create mid-000001-delta.vmdk mid-000001.vmdk --parent mid.vmdk --grain 5M:4K=0xe1
"$MKCOWD" read mid-000001.vmdk --parent-raw mid.q >d3.ref
flat "COWD delta over a qemu child (3 deep)" d3.ref mid-000001.vmdk
if "$VDISK" info --backing-chain --output=json base-000002.vmdk >v2.json 2>"$T/err"; then
	qemu-img info --backing-chain --output=json base-000002.vmdk >q2.json
	assert_eq "COWD chain: info --backing-chain like qemu-img" "$(jq -c "$CHAIN_JQ" q2.json)" "$(jq -c "$CHAIN_JQ" v2.json)"
else fail "COWD chain: info --backing-chain: $(head -c 300 "$T/err")"; fi

# the real ESXi snapshot descriptor; its delta file is missing upstream
ESX=$TESTIMAGES/strozfriedberg_vmdk-rs
if [ -f "$ESX/vmfs_thick-000001.vmdk" ] && [ -f "$ESX/vmfs_thick-flat.vmdk" ]; then
	mkdir -p esx && cp "$ESX/vmfs_thick-000001.vmdk" "$ESX/vmfs_thick-flat.vmdk" esx/
	chmod u+w esx/*
	refused "real ESXi descriptor without its delta: refused" "$VDISK" info esx/vmfs_thick-000001.vmdk
	assert_contains "real ESXi descriptor: names the missing delta" "vmfs_thick-000001-delta.vmdk" "$T/.err"
	# rebuild the snapshot: the ESXi base descriptor (CID = the child's parentCID) and a delta
	pcid=$(sed -n 's/^parentCID=//p' esx/vmfs_thick-000001.vmdk)
	printf '# Disk DescriptorFile\nversion=1\nencoding="UTF-8"\nCID=%s\nparentCID=ffffffff\ncreateType="vmfs"\n\n# Extent description\nRW 4096 VMFS "vmfs_thick-flat.vmdk"\n\n# The Disk Data Base\n#DDB\n\nddb.adapterType = "lsilogic"\nddb.virtualHWVersion = "13"\n' \
		"$pcid" >esx/vmfs_thick.vmdk
	"$MKCOWD" create esx/vmfs_thick-000001-delta.vmdk esx/unused.vmdk --parent esx/vmfs_thick.vmdk \
		--grain 0=0x5a --grain 1M:4K=0x5b
	"$MKCOWD" read esx/vmfs_thick-000001.vmdk --parent-raw esx/vmfs_thick-flat.vmdk >esx.ref
	if qraw esx/vmfs_thick-000001.vmdk esx.q 2>/dev/null; then same "real ESXi descriptor: qemu-img agrees with mkcowd" esx.ref esx.q; fi
	flat "real ESXi descriptor with a rebuilt delta" esx.ref esx/vmfs_thick-000001.vmdk
else echo "note: $ESX not available, real ESXi descriptor not tested"; fi

# ------------------------------------------------------- hostile chains
mkdir -p loop && cp base.vmdk loop/
(cd loop && qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse -b base.vmdk -F vmdk a.vmdk &&
	qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse -b a.vmdk -F vmdk b.vmdk)
bcid=$(sed -n 's/^CID=//p' loop/b.vmdk)
sed -i "s/^parentFileNameHint=.*/parentFileNameHint=\"b.vmdk\"/; s/^parentCID=.*/parentCID=$bcid/" loop/a.vmdk
refused "a chain that loops (a -> b -> a)" "$VDISK" info --backing-chain loop/b.vmdk
refused "a loop: convert" "$VDISK" convert -q -O raw loop/b.vmdk "$T/x.raw"
mkdir -p self && cp split.vmdk split-s001.vmdk self/
scid=$(sed -n 's/^CID=//p' self/split.vmdk)
sed -i "s/^parentFileNameHint=.*/parentFileNameHint=\"split.vmdk\"/; s/^parentCID=.*/parentCID=$scid/" self/split.vmdk
refused "a child naming itself as parent" "$VDISK" info --backing-chain self/split.vmdk
mkdir -p out/sub && cp split.vmdk split-s001.vmdk out/sub/ && cp base.vmdk out/
sed -i 's|^parentFileNameHint=.*|parentFileNameHint="../base.vmdk"|' out/sub/split.vmdk
refused "a parent outside the child's folder" "$VDISK" convert -q -O raw out/sub/split.vmdk "$T/x.raw"
mkdir -p dev && cp split.vmdk split-s001.vmdk dev/
sed -i 's|^parentFileNameHint=.*|parentFileNameHint="/dev/zero"|' dev/split.vmdk
refused "a device as parent" "$VDISK" convert -q -O raw dev/split.vmdk "$T/x.raw"

# a parent of another size (the same CID): qemu reads zeros past its end
mkdir -p size && qemu-img create -q -f vmdk size/base.vmdk 4M && qemu-io -f vmdk -c 'write -q -P 0x61 0 4M' size/base.vmdk
cp split.vmdk split-s001.vmdk size/
zcid=$(qemu-img info --output=json size/base.vmdk | jq -r '.["format-specific"].data.cid')
sed -i "s/^parentCID=.*/parentCID=$(printf %x "$zcid")/" size/split.vmdk
rm -f "$T/x.raw"
bounded "a parent of another size" "$VDISK" convert -q -O raw size/split.vmdk "$T/x.raw"
if [ -f "$T/x.raw" ] && qraw size/split.vmdk size.q 2>/dev/null; then
	same "a parent of another size: read like qemu-img" size.q "$T/x.raw"
fi

# 1000 levels of text descriptors over one base
mkdir -p deep && cp base.vmdk deep/
(cd deep && qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse -b base.vmdk -F vmdk l0.vmdk)
prev=l0.vmdk pcid=$(sed -n 's/^CID=//p' deep/l0.vmdk)
for i in $(seq 1 1000); do
	cp deep/l0-s001.vmdk "deep/l$i-s001.vmdk"
	cid=$(printf %08x $((0x10000000 + i)))
	sed "s/^CID=.*/CID=$cid/; s/^parentCID=.*/parentCID=$pcid/; s/^parentFileNameHint=.*/parentFileNameHint=\"$prev\"/; s/l0-s001.vmdk/l$i-s001.vmdk/" \
		deep/l0.vmdk >"deep/l$i.vmdk"
	prev=l$i.vmdk pcid=$cid
done
bounded "1000 levels: info --backing-chain" "$VDISK" info --backing-chain deep/l1000.vmdk
finish
