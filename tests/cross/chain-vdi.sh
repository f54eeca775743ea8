#!/usr/bin/env bash
# vdisk reads VirtualBox differencing VDI chains as the independent
# reference (tests/helpers/mkvdidiff, written from the published layout)
# reads them; qemu cannot open differencing VDIs, so the reference is the
# only other reader.  The chain is 3 deep on a qemu-img base, with blocks
# changed, zeroed and padded in the middle layer:
#  - convert -O raw of each child == `mkvdidiff read` of its chain, with the
#    parents found next to the child, given with --backing, in the VM
#    folder above Snapshots/, and only through the VM's .vbox file;
#  - the flattened VDI passes qemu-img check and compares equal;
#  - info --backing-chain --output=json: an array of info objects (the
#    qemu-img shape), child first, with filename, format, virtual-size and
#    backing-filename;
#  - a uuidParentModify mismatch is refused, and read with --force and a
#    warning; a missing parent is named; a chain that loops is refused
#    (in bounded time); an undo image (type 3) is read or refused clearly;
#  - when vdisk has them: create --backing makes an empty child the reference
#    reads as its parent, convert -B writes only the differences.
# Until vdisk has chain support (info --backing-chain) the test skips.
. "$(dirname "$0")/../lib.sh"
need qemu-img qemu-io jq cmp
"$VDISK" info --help 2>&1 | grep -q backing-chain || skip "vdisk has no chain support yet"
H=${BUILD:-$TOP/build}/tests/helpers
[ -x "$H/mkvdidiff" ] || skip "mkvdidiff not built in $H (make unit-tests)"
MKVDI=$H/mkvdidiff
K=1024 MiB=$((1 << 20))

fill() {
	head -c "$3" /dev/zero | tr '\0' "\\$(printf %03o "$4")" |
		dd of="$1" bs=64K seek="$2" oflag=seek_bytes iflag=fullblock conv=notrunc status=none
}
same() { if cmp -s "$2" "$3"; then pass "$1"; else fail "$1: $(cmp "$2" "$3" 2>&1 | head -1)"; fi; }
field() { "$MKVDI" dump "$1" | sed -n "s/^$2=//p"; }
# flat WHAT EXPECTED_RAW [vdisk convert options and SRC]: vdisk's raw flattening equals EXPECTED_RAW
flat() {
	local what=$1 exp=$2; shift 2
	rm -f "$T/flat.raw"
	if "$VDISK" convert -q -O raw "$@" "$T/flat.raw" 2>"$T/flat.err"; then same "$what" "$exp" "$T/flat.raw"
	else fail "$what: vdisk convert failed: $(head -c 300 "$T/flat.err")"; fi
}

cd "$T" || exit 1
qemu-img create -q -f vdi base.vdi 8M
qemu-io -f vdi -c 'write -q -P 0x11 0 3M' -c 'write -q -P 0x12 5M 1M' \
	-c "write -q -P 0x16 $((6 * MiB + 768 * K)) 64K" -c "write -q -P 0x13 $((7 * MiB + 64 * K)) 64K" base.vdi
rand_bytes chain-vdi-r1 $MiB >r1
rand_bytes chain-vdi-r2 $((512 * K)) >r2
"$MKVDI" create mid.vdi --parent base.vdi --block 6=r2 --block 1=0x21 --zero 2 --block 3=r1 --zero 4
"$MKVDI" create top.vdi --parent mid.vdi --zero 1 --block 2=0x31 --block 7=0x37
"$MKVDI" read base.vdi >base.ref
"$MKVDI" read mid.vdi base.vdi >mid.ref
"$MKVDI" read top.vdi mid.vdi base.vdi >top.ref
qemu-img convert -f vdi -O raw base.vdi base.q
same "reference reads the qemu base like qemu" base.q base.ref

# parents next to the child
flat "2-deep chain, parent beside the child" mid.ref mid.vdi
flat "3-deep chain, parents beside the child" top.ref top.vdi
assert_rc "compare the chain with the reference raw" 0 "$VDISK" compare top.vdi top.ref
rm -f flat.vdi
if "$VDISK" convert -q -O vdi top.vdi flat.vdi 2>"$T/err"; then
	assert_rc "flattened VDI: qemu-img check" 0 qemu-img check -q -f vdi flat.vdi
	assert_rc "flattened VDI: qemu-img compare with the reference" 0 qemu-img compare -q -f vdi -F raw flat.vdi top.ref
	assert_eq "flattened VDI is a base image" 1 "$(field flat.vdi type)"
else fail "convert -O vdi of the chain: $(head -c 300 "$T/err")"; fi

# given with --backing (repeatable), the layers in other folders
mkdir -p a b c
cp top.vdi a/ && cp mid.vdi b/ && cp base.vdi c/
flat "--backing for each parent" top.ref --backing b/mid.vdi --backing c/base.vdi a/top.vdi
assert_rc "a lone child without its parent: refused" 1 "$VDISK" convert -q -O raw a/top.vdi "$T/x.raw"
assert_contains "a lone child: names the missing parent" "parent" "$T/.err"

# VM folder: Snapshots/{uuid}.vdi with the base in the folder above it
mu=$(field mid.vdi uuid_create) tu=$(field top.vdi uuid_create)
mkdir -p VM/Snapshots
cp base.vdi VM/VM.vdi && cp mid.vdi "VM/Snapshots/{$mu}.vdi" && cp top.vdi "VM/Snapshots/{$tu}.vdi"
flat "VM folder: parents in Snapshots/ and above it" top.ref "VM/Snapshots/{$tu}.vdi"
# only the .vbox says where the base is (another folder, another name)
mkdir -p VM2/Snapshots VM2/disks
cp base.vdi VM2/disks/system-disk.vdi && cp mid.vdi "VM2/Snapshots/{$mu}.vdi" && cp top.vdi "VM2/Snapshots/{$tu}.vdi"
"$MKVDI" vbox VM2/VM2.vbox --disk disks/system-disk.vdi --child "Snapshots/{$mu}.vdi" --child "Snapshots/{$tu}.vdi"
flat "VM folder: base found through the .vbox media registry" top.ref "VM2/Snapshots/{$tu}.vdi"

# info --backing-chain in the qemu-img JSON shape
if "$VDISK" info --backing-chain --output=json top.vdi >chain.json 2>"$T/err"; then
	assert_eq "info --backing-chain: an array, child first" "top.vdi mid.vdi base.vdi" \
		"$(jq -r '[.[].filename | split("/") | last] | join(" ")' chain.json)"
	assert_eq "info --backing-chain: formats" "vdi vdi vdi" "$(jq -r '[.[].format] | join(" ")' chain.json)"
	assert_eq "info --backing-chain: virtual sizes" "8388608 8388608 8388608" \
		"$(jq -r '[.[]["virtual-size"]] | map(tostring) | join(" ")' chain.json)"
	assert_eq "info --backing-chain: backing-filename of each child, none for the base" "mid.vdi base.vdi null" \
		"$(jq -r '[.[] | .["backing-filename"] // "null" | split("/") | last] | join(" ")' chain.json)"
else fail "info --backing-chain --output=json: $(head -c 300 "$T/err")"; fi

# uuidParentModify mismatch (the parent was changed after the child was made)
mkdir -p stale && cp base.vdi stale/
"$MKVDI" create stale/child.vdi --parent stale/base.vdi --block 0=0x55 \
	--parent-modify 11111111-2222-3333-4444-555555555555
"$MKVDI" read --force stale/child.vdi stale/base.vdi >stale.ref 2>/dev/null
assert_rc "uuidParentModify mismatch: refused" 1 "$VDISK" convert -q -O raw stale/child.vdi "$T/x.raw"
grep -qi 'modif' "$T/.err" && pass "uuidParentModify mismatch: named" ||
	fail "uuidParentModify mismatch: message does not name it: $(head -c 300 "$T/.err")"
rm -f "$T/x.raw"
assert_rc "uuidParentModify mismatch: --force reads" 0 "$VDISK" convert -q --force -O raw stale/child.vdi "$T/x.raw"
assert_contains "uuidParentModify mismatch: --force warns" "warning" "$T/.err"
[ -f "$T/x.raw" ] && same "uuidParentModify mismatch: --force gives the chain" stale.ref "$T/x.raw"

# a chain that loops: the child is its own parent
mkdir -p loop
"$MKVDI" create loop/self.vdi --parent base.vdi --uuid 0a0a0a0a-0000-4000-8000-000000000001 \
	--modify-uuid 0a0a0a0a-0000-4000-8000-000000000002 --linkage 0a0a0a0a-0000-4000-8000-000000000001 \
	--parent-modify 0a0a0a0a-0000-4000-8000-000000000002 --block 0=0x01
assert_rc "a child that is its own parent: refused in bounded time" 1 timeout 20 "$VDISK" info --backing-chain loop/self.vdi

# undo image (type 3): read like a differencing one, or refused clearly
mkdir -p undo && cp base.vdi undo/
"$MKVDI" create undo/undo.vdi --parent undo/base.vdi --type 3 --block 0=0x77
"$MKVDI" read undo/undo.vdi undo/base.vdi >undo.ref
rm -f "$T/x.raw"
if "$VDISK" convert -q -O raw undo/undo.vdi "$T/x.raw" 2>"$T/err"; then same "undo image read like a differencing one" undo.ref "$T/x.raw"
elif grep -qiE 'undo|type 3' "$T/err"; then pass "undo image refused with a clear message"
else fail "undo image: unclear refusal: $(head -c 300 "$T/err")"; fi

# vdisk's own children, read by the reference (create -B: a relative parent
# is relative to the child's folder, as qemu-img create -b takes it)
bopt=$("$VDISK" create --help 2>&1 | grep -oE -- '--backing(-file)?' | head -1)
if [ -n "$bopt" ]; then
	mkdir -p own && cp base.vdi own/
	if "$VDISK" create -O vdi "$bopt" base.vdi own/empty.vdi 2>"$T/err"; then
		assert_eq "create -b: a type 4 child" 4 "$(field own/empty.vdi type)"
		assert_eq "create -b: linked to the parent" "$(field own/base.vdi uuid_create) $(field own/base.vdi uuid_modify)" \
			"$(field own/empty.vdi uuid_linkage) $(field own/empty.vdi uuid_parent_modify)"
		assert_eq "create -b: nothing in the child" 0 "$(field own/empty.vdi map_data)"
		"$MKVDI" read own/empty.vdi own/base.vdi >empty.ref && same "create -b: the reference reads the parent" base.ref empty.ref
	else fail "create -b: $(head -c 300 "$T/err")"; fi
else echo "note: vdisk create has no --backing yet"; fi
if "$VDISK" convert --help 2>&1 | grep -qE '(^|[[:space:]])-B[, ]'; then
	mkdir -p diff && cp base.vdi diff/
	if "$VDISK" convert -q -O vdi -B base.vdi top.ref diff/child.vdi 2>"$T/err"; then
		assert_eq "convert -B: a type 4 child" 4 "$(field diff/child.vdi type)"
		"$MKVDI" read diff/child.vdi diff/base.vdi >child.ref && same "convert -B: the reference reads the source" top.ref child.ref
		[ "$(field diff/child.vdi map_data)" -lt 8 ] && pass "convert -B: only the differences" ||
			fail "convert -B: $(field diff/child.vdi map_data) data blocks of 8"
	else fail "convert -B: $(head -c 300 "$T/err")"; fi
else echo "note: vdisk convert has no -B yet"; fi
finish
