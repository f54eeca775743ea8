#!/usr/bin/env bash
# Self-tests of the chain reference helpers (tests/helpers/mkvdidiff.c and
# mkcowd.c, written from the published layouts, not from vdisk), so that
# the chain tests of vdisk can trust them.  Nothing here uses vdisk.
#  (a) a 3-deep VDI chain on a qemu-img base: blocks changed, zeroed and
#      padded in the middle layer, out-of-order data slots, zeroed and
#      changed again on top; `mkvdidiff read` gives the bytes computed here
#      with dd, reads qemu's base like `qemu-img convert`; the header fields
#      and links (`dump`), refused links (wrong layer order, uuidParentModify
#      mismatch, missing parent) and --force; qemu-img refuses the child;
#      a VM folder with a .vbox whose media registry nests the chain;
#      damaged layers (map entry out of range, a slot used twice, truncated
#      data, bad signature) are refused by the reader.
#  (b) ESXi vmfsSparse (COWD) deltas from mkcowd on a qemu-img
#      monolithicSparse parent, two deep (grain 512 bytes, then 4 KiB):
#      `mkcowd read` and `qemu-img convert` (an independent COWD reader)
#      both give the bytes computed here; qemu-img sees the links; a
#      truncated delta and a wrong magic are refused.
. "$(dirname "$0")/../lib.sh"
need qemu-img qemu-io jq cmp xmllint openssl
H=${BUILD:-$TOP/build}/tests/helpers
[ -x "$H/mkvdidiff" ] && [ -x "$H/mkcowd" ] || skip "helpers not built in $H (make unit-tests)"
MKVDI=$H/mkvdidiff MKCOWD=$H/mkcowd
K=1024 MiB=$((1 << 20))

# fill FILE OFFSET LEN BYTE: write LEN copies of BYTE (0xNN) at OFFSET
fill() {
	head -c "$3" /dev/zero | tr '\0' "\\$(printf %03o "$4")" |
		dd of="$1" bs=64K seek="$2" oflag=seek_bytes iflag=fullblock conv=notrunc status=none
}
zero() { head -c "$3" /dev/zero | dd of="$1" bs=64K seek="$2" oflag=seek_bytes iflag=fullblock conv=notrunc status=none; }
putf() { dd if="$3" of="$1" bs=64K seek="$2" oflag=seek_bytes conv=notrunc status=none; }
same() { # WHAT EXPECTED ACTUAL
	if cmp -s "$2" "$3"; then pass "$1"; else fail "$1: $(cmp "$2" "$3" 2>&1 | head -1)"; fi
}
field() { "$MKVDI" dump "$1" | sed -n "s/^$2=//p"; }

cd "$T" || exit 1
# ---------------------------------------------------------------- (a) VDI
qemu-img create -q -f vdi base.vdi 8M
qemu-io -f vdi -c 'write -q -P 0x11 0 3M' -c 'write -q -P 0x12 5M 1M' \
	-c "write -q -P 0x16 $((6 * MiB + 768 * K)) 64K" -c "write -q -P 0x13 $((7 * MiB + 64 * K)) 64K" base.vdi
qemu-img convert -f vdi -O raw base.vdi base.raw
rand_bytes chainref-r1 $MiB >r1
rand_bytes chainref-r2 $((512 * K)) >r2

"$MKVDI" read -o base.out base.vdi && same "read of qemu's base VDI == qemu-img convert" base.raw base.out
"$MKVDI" read base.vdi >base.out2 && same "read to stdout == read -o" base.raw base.out2

# mid: block 6 listed first (data slot 0), block 1 given twice (the later wins)
"$MKVDI" create mid.vdi --parent base.vdi --block 6=r2 --block 1=0x99 --block 1=0x21 \
	--zero 2 --block 3=r1 --zero 4 --uuid 01234567-89ab-cdef-0123-456789abcdef
"$MKVDI" create top.vdi --parent mid.vdi --zero 1 --block 2=0x31 --block 7:1=0x37

cp base.raw exp_mid
fill exp_mid $MiB $MiB 0x21
zero exp_mid $((2 * MiB)) $MiB
putf exp_mid $((3 * MiB)) r1
putf exp_mid $((6 * MiB)) r2
zero exp_mid $((6 * MiB + 512 * K)) $((512 * K))	# block padded with zeros hides base's 0x16
cp exp_mid exp_top
zero exp_top $MiB $MiB
fill exp_top $((2 * MiB)) $MiB 0x31
fill exp_top $((7 * MiB)) $MiB 0x37

"$MKVDI" read mid.vdi base.vdi >mid.out && same "2-deep chain reads as computed" exp_mid mid.out
"$MKVDI" read top.vdi mid.vdi base.vdi >top.out && same "3-deep chain reads as computed" exp_top top.out
"$MKVDI" read -o top.out2 top.vdi mid.vdi base.vdi && same "3-deep chain, sparse -o" exp_top top.out2

assert_eq "mid: image type 4" 4 "$(field mid.vdi type)"
assert_eq "mid: header 1.1, 400 bytes" "1.1 400" "$(field mid.vdi version) $(field mid.vdi header_size)"
assert_eq "mid: uuidCreate as given" 01234567-89ab-cdef-0123-456789abcdef "$(field mid.vdi uuid_create)"
assert_eq "mid: uuidLinkage = base's uuidCreate" "$(field base.vdi uuid_create)" "$(field mid.vdi uuid_linkage)"
assert_eq "mid: uuidParentModify = base's uuidModify" "$(field base.vdi uuid_modify)" "$(field mid.vdi uuid_parent_modify)"
assert_eq "top: uuidLinkage = mid's uuidCreate" 01234567-89ab-cdef-0123-456789abcdef "$(field top.vdi uuid_linkage)"
assert_eq "mid: own uuidModify" 1 "$([ "$(field mid.vdi uuid_modify)" != "$(field base.vdi uuid_modify)" ] && echo 1)"
assert_eq "mid: size and blocks like base" "8388608 1048576 8" \
	"$(field mid.vdi disk_size) $(field mid.vdi block_size) $(field mid.vdi blocks)"
assert_eq "mid: cBlocksAllocated counts data blocks only" "3 3 2 3" \
	"$(field mid.vdi blocks_allocated) $(field mid.vdi map_data) $(field mid.vdi map_zero) $(field mid.vdi map_free)"
assert_eq "mid: offBlocks/offData 1 MiB aligned" "1048576 2097152" \
	"$(field mid.vdi offset_blocks) $(field mid.vdi offset_data)"
assert_eq "mid: file ends after 3 data blocks" $((5 * MiB)) "$(stat -c %s mid.vdi)"
assert_eq "mid: slots in command-line order" "block.1=1 block.2=zero block.3=2 block.4=zero block.6=0" \
	"$("$MKVDI" dump --map mid.vdi | grep '^block\.' | sort | tr '\n' ' ' | sed 's/ $//')"
# the raw map bytes at offBlocks: FREE for block 0, ZERO for block 2, slot 0 for block 6
assert_eq "mid: map entries on disk" "ffffffff 01000000 feffffff 02000000 feffffff ffffffff 00000000 ffffffff" \
	"$(od -An -v -tx1 -j $MiB -N 32 mid.vdi | tr -d ' \n' | sed 's/.\{8\}/& /g;s/ $//')"
"$MKVDI" create small.vdi --parent base.vdi --align 512 --block 0=0x01
assert_eq "--align 512: offBlocks 512, offData 1024" "512 1024" \
	"$(field small.vdi offset_blocks) $(field small.vdi offset_data)"
"$MKVDI" read small.vdi base.vdi >small.out && cp base.raw exp_small && fill exp_small 0 $MiB 0x01 &&
	same "512-aligned child reads as computed" exp_small small.out

assert_rc "layer skipped: refused" 1 "$MKVDI" read top.vdi base.vdi
assert_contains "layer skipped: names uuidLinkage" "uuidLinkage" "$T/.err"
assert_rc "parent missing: refused" 1 "$MKVDI" read top.vdi mid.vdi
assert_contains "parent missing: says so" "parent is missing" "$T/.err"
"$MKVDI" read --allow-partial top.vdi mid.vdi >part.out
cp exp_top exp_part && zero exp_part 0 $MiB && zero exp_part $((5 * MiB)) $MiB
same "--allow-partial: the missing base reads as zeros" exp_part part.out

"$MKVDI" create stale.vdi --parent base.vdi --block 0=0x55 --parent-modify 11111111-2222-3333-4444-555555555555
assert_rc "uuidParentModify mismatch: refused" 1 "$MKVDI" read stale.vdi base.vdi
assert_contains "uuidParentModify mismatch: named" "uuidParentModify 11111111-2222-3333-4444-555555555555" "$T/.err"
assert_rc "uuidParentModify mismatch: --force reads" 0 "$MKVDI" read --force stale.vdi base.vdi
assert_contains "uuidParentModify mismatch: --force warns" "warning" "$T/.err"
cp base.raw exp_stale && fill exp_stale 0 $MiB 0x55
same "uuidParentModify mismatch: --force gives the chain" exp_stale "$T/.out"
"$MKVDI" create undo.vdi --parent base.vdi --type 3 --block 0=0x55
assert_eq "--type 3 (undo)" 3 "$(field undo.vdi type)"

# the reference reader is not fooled by damaged layers
poke32() { printf "\\x$(printf %02x $(($3 & 255)))\\x$(printf %02x $((($3 >> 8) & 255)))\\x$(printf %02x $((($3 >> 16) & 255)))\\x$(printf %02x $((($3 >> 24) & 255)))" |
	dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }
cp mid.vdi bad1.vdi && poke32 bad1.vdi $MiB 9
assert_rc "damaged: map entry beyond cBlocks refused" 1 "$MKVDI" read bad1.vdi base.vdi
assert_contains "damaged: map entry named" "block 0: map entry 9 is not below cBlocks 8" "$T/.err"
cp mid.vdi bad2.vdi && poke32 bad2.vdi $MiB 0
assert_rc "damaged: a data slot used twice refused" 1 "$MKVDI" read bad2.vdi base.vdi
assert_contains "damaged: slot named" "data slot 0 is used twice" "$T/.err"
cp mid.vdi bad3.vdi && truncate -s $((3 * MiB)) bad3.vdi
assert_rc "damaged: truncated data refused" 1 "$MKVDI" read bad3.vdi base.vdi
assert_contains "damaged: truncation named" "past the end of the file" "$T/.err"
cp mid.vdi bad4.vdi && poke32 bad4.vdi 64 0x12345678
assert_rc "damaged: signature refused" 1 "$MKVDI" dump bad4.vdi

assert_rc "qemu-img opens the base" 0 qemu-img info base.vdi
assert_rc "qemu-img refuses the differencing child" 1 qemu-img info mid.vdi
assert_contains "qemu-img: because of the link to a parent" "non-NULL link UUID" "$T/.err"

# a VM folder: VM.vbox, VM.vdi, Snapshots/{uuid}.vdi nested in the media registry
mkdir -p VM/Snapshots
mu=$(field mid.vdi uuid_create) tu=$(field top.vdi uuid_create)
cp base.vdi VM/VM.vdi && cp mid.vdi "VM/Snapshots/{$mu}.vdi" && cp top.vdi "VM/Snapshots/{$tu}.vdi"
"$MKVDI" vbox VM/VM.vbox --disk VM.vdi --child "Snapshots/{$mu}.vdi" --child "Snapshots/{$tu}.vdi"
assert_rc ".vbox is well-formed XML" 0 xmllint --noout VM/VM.vbox
X() { xmllint --xpath "$1" VM/VM.vbox 2>/dev/null; }
HD="*[local-name()='HardDisk']"
R="/*[local-name()='VirtualBox']/*[local-name()='Machine']/*[local-name()='MediaRegistry']/*[local-name()='HardDisks']"
assert_eq ".vbox: three disks" 3 "$(X "count(//$HD)")"
assert_eq ".vbox: base is Normal VDI" "VM.vdi VDI Normal {$(field base.vdi uuid_create)}" \
	"$(X "string($R/$HD/@location)") $(X "string($R/$HD/@format)") $(X "string($R/$HD/@type)") $(X "string($R/$HD/@uuid)")"
assert_eq ".vbox: child nested in base" "Snapshots/{$mu}.vdi {$mu}" \
	"$(X "string($R/$HD/$HD/@location)") $(X "string($R/$HD/$HD/@uuid)")"
assert_eq ".vbox: grandchild nested in child" "Snapshots/{$tu}.vdi {$tu}" \
	"$(X "string($R/$HD/$HD/$HD/@location)") $(X "string($R/$HD/$HD/$HD/@uuid)")"
assert_eq ".vbox: children have no type" "" "$(X "string($R/$HD/$HD/@type)")"
assert_eq ".vbox: the leaf is attached" "{$tu}" "$(X "string(//*[local-name()='AttachedDevice']/*[local-name()='Image']/@uuid)")"
l0=$(X "string($R/$HD/@location)") l1=$(X "string($R/$HD/$HD/@location)") l2=$(X "string($R/$HD/$HD/$HD/@location)")
(cd VM && "$MKVDI" read "$l2" "$l1" "$l0") >vm.out
same ".vbox chain read by its locations, leaf first" exp_top vm.out

# ---------------------------------------------------------------- (b) COWD
qemu-img create -q -f vmdk p.vmdk 4M
qemu-io -f vmdk -c 'write -q -P 0x41 0 2M' -c 'write -q -P 0x42 3M 64K' p.vmdk
qemu-img convert -f vmdk -O raw p.vmdk p.raw
rand_bytes chainref-c1 $((16 * K)) >c1
"$MKCOWD" create p-000001-delta.vmdk p-000001.vmdk --parent p.vmdk --cid 0badcafe \
	--grain 0=0xa1 --grain 1M:64K=0xb1 --grain 3M=c1 --grain 3584K:512K=0xc1
cp p.raw exp1
fill exp1 0 512 0xa1
fill exp1 $MiB $((64 * K)) 0xb1
putf exp1 $((3 * MiB)) c1
fill exp1 $((3584 * K)) $((512 * K)) 0xc1
"$MKCOWD" read p-000001.vmdk --parent-raw p.raw >d1.out && same "COWD delta: mkcowd read" exp1 d1.out
qemu-img convert -O raw p-000001.vmdk d1.q && same "COWD delta: qemu-img convert" exp1 d1.q
"$MKCOWD" read p-000001-delta.vmdk --parent-raw p.raw -o d1.out2 && same "COWD delta read directly, -o" exp1 d1.out2

D() { "$MKCOWD" dump "$1" | sed -n "s/^$2=//p"; }
assert_eq "COWD header" "1 3 8192 1 4 2 2" "$(D p-000001-delta.vmdk version) $(D p-000001-delta.vmdk flags) \
$(D p-000001-delta.vmdk num_sectors) $(D p-000001-delta.vmdk grain_size) $(D p-000001-delta.vmdk gd_offset) \
$(D p-000001-delta.vmdk num_gd_entries) $(D p-000001-delta.vmdk grain_tables)"
assert_eq "COWD magic bytes (0x44574f43 little-endian)" "COWD" "$(head -c 4 p-000001-delta.vmdk)"
assert_eq "COWD freeSector = file end" "$(stat -c %s p-000001-delta.vmdk)" $(($(D p-000001-delta.vmdk free_sector) * 512))
assert_eq "COWD parentFileName" p.vmdk "$(D p-000001-delta.vmdk parent_file_name)"
grep -q '^createType="vmfsSparse"$' p-000001.vmdk && grep -q '^RW 8192 VMFSSPARSE "p-000001-delta.vmdk"$' p-000001.vmdk &&
	grep -q '^parentFileNameHint="p.vmdk"$' p-000001.vmdk && pass "descriptor: createType, extent, hint" ||
	fail "descriptor: $(cat p-000001.vmdk)"
qemu-img info --backing-chain --output=json p-000001.vmdk >chain.json
assert_eq "qemu sees the chain" "2 p.vmdk vmfsSparse" \
	"$(jq -r 'length, .[0]["backing-filename"], .[0]["format-specific"].data["create-type"]' chain.json | tr '\n' ' ' | sed 's/ $//')"
assert_eq "parentCID = parent's CID" "$(jq '.[1]["format-specific"].data.cid' chain.json)" \
	"$(jq '.[0]["format-specific"].data["parent-cid"]' chain.json)"
assert_eq "CID as given" $((0x0badcafe)) "$(jq '.[0]["format-specific"].data.cid' chain.json)"

# second delta, 4 KiB grains, over the first one (a descriptor as parent)
"$MKCOWD" create p-000002-delta.vmdk p-000002.vmdk --parent p-000001.vmdk --grain-size 8 \
	--grain 4K=0xd2 --grain 1M:8K=0xd3
cp exp1 exp2
fill exp2 $((4 * K)) $((4 * K)) 0xd2
fill exp2 $MiB $((8 * K)) 0xd3
"$MKCOWD" read p-000002.vmdk --parent-raw exp1 >d2.out && same "2 COWD deltas: mkcowd read" exp2 d2.out
qemu-img convert -O raw p-000002.vmdk d2.q && same "2 COWD deltas: qemu-img convert" exp2 d2.q
assert_eq "second delta: parentCID = first's CID" 0badcafe "$(sed -n 's/^parentCID=//p' p-000002.vmdk)"
assert_eq "4 KiB grains: one grain table" "8 1 1" \
	"$(D p-000002-delta.vmdk grain_size) $(D p-000002-delta.vmdk num_gd_entries) $(D p-000002-delta.vmdk grain_tables)"
cp p-000001-delta.vmdk bad-delta.vmdk && truncate -s 4096 bad-delta.vmdk
assert_rc "damaged COWD: grain table past the end refused" 1 "$MKCOWD" read bad-delta.vmdk
assert_contains "damaged COWD: named" "past the end of the file" "$T/.err"
cp p-000001-delta.vmdk bad-delta.vmdk && printf 'KDMV' | dd of=bad-delta.vmdk conv=notrunc status=none
assert_rc "damaged COWD: magic refused" 1 "$MKCOWD" dump bad-delta.vmdk
assert_rc "unaligned grain refused" 1 "$MKCOWD" create x-delta.vmdk x.vmdk --parent p.vmdk --grain-size 8 --grain 512=0x01
finish
