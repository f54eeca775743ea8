#!/usr/bin/env bash
# vdisk check exit codes (0 consistent, 1 could not check, 2 corrupted,
# 3 leaks only), repair with -r, and corrupt-input handling of info/map/
# convert: header fields and block map entries poked by hand.
. "$(dirname "$0")/../lib.sh"
need jq qemu-img
MiB=$((1 << 20))

# poke32 FILE OFFSET VALUE: store VALUE as u32 little-endian at OFFSET
poke32() {
	printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($3 & 255)) $((($3 >> 8) & 255)) \
		$((($3 >> 16) & 255)) $((($3 >> 24) & 255)))" |
		dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
peek32() { od -An -tu4 -j "$2" -N4 "$1" | tr -d ' '; }
nalloc() { "$VDISK" info --output=json "$1" | jq '."format-specific".data."blocks-allocated"'; }
json_field() { jq -r "$2" "$1" 2>/dev/null; }
BMAP=$MiB # offBlocks of images written by vdisk

# source: 8 MiB, data in blocks 0, 2 and 3
SRC=$T/src.raw
truncate -s $((8 * MiB)) "$SRC"
rand_bytes c1 $MiB | dd of="$SRC" conv=notrunc status=none
rand_bytes c2 $((2 * MiB)) | dd of="$SRC" bs=1M seek=2 conv=notrunc status=none
GOOD=$T/good.vdi
"$VDISK" convert -O vdi "$SRC" "$GOOD" || fail "convert good.vdi"
assert_eq "good.vdi has 3 blocks allocated" 3 "$(nalloc "$GOOD")"
assert_eq "good.vdi cBlocksAllocated at offset 388" 3 "$(peek32 "$GOOD" 388)"
GOOD_SIZE=$(stat -c %s "$GOOD")
fresh() { cp "$GOOD" "$T/$1.vdi"; echo "$T/$1.vdi"; }

# ---- consistent images: 0
assert_rc "check consistent dynamic VDI" 0 "$VDISK" check "$GOOD"
assert_contains "check says no errors" "No errors" "$T/.out"
assert_rc "check --output=json consistent" 0 "$VDISK" check --output=json "$GOOD"
assert_eq "check JSON: counts" "0 0" "$(json_field "$T/.out" '"\(.corruptions) \(.leaks)"')"
"$VDISK" create -O vdi -o subformat=fixed "$T/fixed.vdi" 3M || fail "create fixed.vdi"
assert_rc "check consistent fixed VDI" 0 "$VDISK" check "$T/fixed.vdi"
"$VDISK" create -O vdi "$T/empty.vdi" 1G || fail "create empty.vdi"
assert_rc "check empty dynamic VDI" 0 "$VDISK" check "$T/empty.vdi"
assert_rc "check -r on a consistent VDI" 0 "$VDISK" check -r "$GOOD"
assert_eq "check -r on a consistent VDI changes nothing" "$GOOD_SIZE" "$(stat -c %s "$GOOD")"
assert_rc "check raw (no metadata) exits 0" 0 "$VDISK" check "$SRC"
assert_rc "check of a missing file: could not check (1)" 1 "$VDISK" check "$T/missing.vdi"

# ---- cBlocksAllocated too low: 2, repaired by -r
V=$(fresh low)
poke32 "$V" 388 1
assert_rc "cBlocksAllocated too low: check exits 2" 2 "$VDISK" check "$V"
assert_contains "cBlocksAllocated too low: message" "cBlocksAllocated" "$T/.out"
assert_rc "cBlocksAllocated too low: JSON exits 2" 2 "$VDISK" check --output=json "$V"
assert_eq "cBlocksAllocated too low: JSON corruptions" 1 "$(json_field "$T/.out" '.corruptions')"
assert_contains "cBlocksAllocated too low: JSON message" "cBlocksAllocated" "$T/.out"
assert_rc "cBlocksAllocated too low: info still works" 0 "$VDISK" info "$V"
assert_rc "cBlocksAllocated too low: convert -n into it refused" 1 "$VDISK" convert -n "$SRC" "$V"
assert_contains "cBlocksAllocated too low: convert -n says to run check -r" "check -r" "$T/.err"
assert_rc "cBlocksAllocated too low: check -r exits 0" 0 "$VDISK" check -r "$V"
assert_contains "cBlocksAllocated too low: check -r reports the repair" "Repaired" "$T/.out"
assert_eq "cBlocksAllocated repaired" 3 "$(peek32 "$V" 388)"
assert_rc "cBlocksAllocated too low: check after repair" 0 "$VDISK" check "$V"
assert_rc "cBlocksAllocated too low: qemu-img check after repair" 0 qemu-img check -f vdi "$V"
assert_rc "cBlocksAllocated too low: contents kept" 0 "$VDISK" compare "$SRC" "$V"

# ---- cBlocksAllocated too high (but <= cBlocks): only wasted slots, a
# leak (3, as a discard leaves it), repaired by -r
V=$(fresh high)
poke32 "$V" 388 6
assert_rc "cBlocksAllocated too high: check exits 3" 3 "$VDISK" check "$V"
assert_contains "cBlocksAllocated too high: message" "cBlocksAllocated" "$T/.out"
assert_rc "cBlocksAllocated too high: check -r exits 0" 0 "$VDISK" check -r "$V"
assert_eq "cBlocksAllocated too high: repaired" 3 "$(peek32 "$V" 388)"
assert_rc "cBlocksAllocated too high: qemu-img check after repair" 0 qemu-img check -f vdi "$V"
assert_rc "cBlocksAllocated too high: contents kept" 0 "$VDISK" compare "$SRC" "$V"
# and larger than cBlocks: the header is invalid
V=$(fresh toohigh)
poke32 "$V" 388 9
assert_rc "cBlocksAllocated > cBlocks: check exits 2" 2 "$VDISK" check "$V"
assert_contains "cBlocksAllocated > cBlocks: message" "cBlocksAllocated" "$T/.err"

# ---- leak: 1 MiB appended: 3, -r truncates
V=$(fresh leak)
rand_bytes leak $MiB >>"$V"
assert_rc "appended 1 MiB: check exits 3" 3 "$VDISK" check "$V"
assert_contains "appended 1 MiB: reported as leaked" "leaked" "$T/.out"
assert_rc "appended 1 MiB: JSON exits 3" 3 "$VDISK" check --output=json "$V"
assert_eq "appended 1 MiB: JSON leaks/leaked-bytes/errors" "1 1048576 0" \
	"$(json_field "$T/.out" '"\(.leaks) \(."leaked-bytes") \(.corruptions)"')"
assert_rc "appended 1 MiB: info still works" 0 "$VDISK" info "$V"
assert_rc "appended 1 MiB: compare still identical" 0 "$VDISK" compare "$SRC" "$V"
assert_rc "appended 1 MiB: check -r exits 0" 0 "$VDISK" check -r "$V"
assert_eq "appended 1 MiB: check -r truncated the file" "$GOOD_SIZE" "$(stat -c %s "$V")"
assert_rc "appended 1 MiB: check after repair" 0 "$VDISK" check "$V"
assert_rc "appended 1 MiB: qemu-img check after repair" 0 qemu-img check -f vdi "$V"
assert_rc "appended 1 MiB: contents kept" 0 "$VDISK" compare "$SRC" "$V"
# a new block written after the leak lands in the right place
V=$(fresh leak2)
rand_bytes leak2 $MiB >>"$V"
truncate -s $((8 * MiB)) "$T/patch.raw"
rand_bytes p1 4096 | dd of="$T/patch.raw" bs=1M seek=6 conv=notrunc status=none
cp "$SRC" "$T/src-patched.raw"
rand_bytes p1 4096 | dd of="$T/src-patched.raw" bs=1M seek=6 conv=notrunc status=none
assert_rc "write into a leaky VDI" 0 "$VDISK" convert -n --target-is-zero "$T/patch.raw" "$V"
assert_rc "write into a leaky VDI: contents" 0 "$VDISK" compare "$T/src-patched.raw" "$V"
assert_rc "write into a leaky VDI: qemu-img compare" 0 qemu-img compare -f raw -F vdi "$T/src-patched.raw" "$V"

# ---- unused slot below the last used one (block 0 unmapped, as a discard
# leaves it): a leak (3); -r moves the last slot into the hole and truncates
V=$(fresh hole)
poke32 "$V" $BMAP $((0xffffffff))
assert_rc "unmapped slot: check exits 3 (leak)" 3 "$VDISK" check "$V"
assert_contains "unmapped slot: slot 0 reported unused" "slot 0" "$T/.out"
assert_rc "unmapped slot: check -r exits 0" 0 "$VDISK" check -r "$V"
assert_eq "unmapped slot: file shrank by one block" $((GOOD_SIZE - MiB)) "$(stat -c %s "$V")"
assert_eq "unmapped slot: count" 2 "$(peek32 "$V" 388)"
assert_rc "unmapped slot: check after repair" 0 "$VDISK" check "$V"
assert_rc "unmapped slot: qemu-img check after repair" 0 qemu-img check -f vdi "$V"
cp "$SRC" "$T/src-hole.raw"
dd if=/dev/zero of="$T/src-hole.raw" bs=1M count=1 conv=notrunc status=none
assert_rc "unmapped slot: other blocks kept after the move" 0 "$VDISK" compare "$T/src-hole.raw" "$V"
assert_rc "unmapped slot: qemu-img agrees" 0 qemu-img compare -f raw -F vdi "$T/src-hole.raw" "$V"

# ---- block map entries that are wrong: info/map/convert refuse, check 2,
# check -r changes nothing
bad_bmap() { # NAME BLOCK VALUE CHECK-NEEDLE
	local V sum
	V=$(fresh "$1")
	poke32 "$V" $((BMAP + 4 * $2)) "$3"
	sum=$(sha1sum <"$V")
	assert_rc "$1: info fails" 1 "$VDISK" info "$V"
	assert_contains "$1: info names the block map" "block map" "$T/.err"
	assert_rc "$1: map fails" 1 "$VDISK" map "$V"
	assert_contains "$1: map names the block map" "block map" "$T/.err"
	assert_rc "$1: convert fails" 1 "$VDISK" convert -O raw "$V" "$T/$1.raw"
	[ -e "$T/$1.raw" ] && fail "$1: convert left a DST" || pass "$1: convert left no DST"
	assert_rc "$1: check exits 2" 2 "$VDISK" check "$V"
	assert_contains "$1: check message" "$4" "$T/.out"
	assert_rc "$1: check --output=json exits 2" 2 "$VDISK" check --output=json "$V"
	if jq -e '.corruptions >= 1' "$T/.out" >/dev/null 2>&1; then pass "$1: JSON corruptions"
	else fail "$1: JSON corruptions: $(head -c 300 "$T/.out")"; fi
	assert_rc "$1: check -r cannot repair (2)" 2 "$VDISK" check -r "$V"
	assert_eq "$1: check -r changed nothing" "$sum" "$(sha1sum <"$V")"
}
bad_bmap past-eof 0 7 "past the end"
bad_bmap beyond-cblocks 1 1000 "not below cBlocks"
bad_bmap duplicate 5 0 "already uses"
# the file cut short inside the data area
V=$(fresh short)
truncate -s $((GOOD_SIZE - MiB / 2)) "$V"
assert_rc "truncated data area: info fails" 1 "$VDISK" info "$V"
assert_contains "truncated data area: info names the block map" "block map" "$T/.err"
assert_rc "truncated data area: check exits 2" 2 "$VDISK" check "$V"

# ---- header pokes: check 2 (with -f vdi; without it the file probes as raw)
bad_header() { # NAME OFFSET VALUE NEEDLE [CHECK-RC]
	local V
	V=$(fresh "$1")
	poke32 "$V" "$2" "$3"
	assert_rc "$1: check -f vdi exits ${5:-2}" "${5:-2}" "$VDISK" check -f vdi "$V"
	assert_contains "$1: check names the field" "$4" "$T/.err"
	if "$VDISK" info -f vdi "$V" >"$T/.out" 2>"$T/.err"; then fail "$1: info -f vdi succeeded"
	else assert_contains "$1: info -f vdi fails naming the field" "$4" "$T/.err"; fi
	if "$VDISK" convert -f vdi -O raw "$V" "$T/$1.raw" 2>/dev/null; then fail "$1: convert succeeded"
	else pass "$1: convert fails"; fi
}
bad_header signature 64 0 "signature"
bad_header version 68 0x00010002 "version"
bad_header version0 68 0x00000002 "version" 1
bad_header cbheader 72 100 "cbHeader"
bad_header type 76 7 "imageType"
bad_header offblocks 340 1000 "offBlocks"
bad_header sectorsize 360 4096 "sector size"
bad_header cbblock 376 3000 "cbBlock"
bad_header cblocks 384 0 "cBlocks"
bad_header cblocks-small 384 2 "cBlocks"
bad_header offdata 344 $MiB "offData"
# a too-short file
head -c 60 "$GOOD" >"$T/tiny.vdi"
if "$VDISK" info -f vdi "$T/tiny.vdi" >/dev/null 2>"$T/.err"; then fail "60-byte VDI: info succeeded"
else pass "60-byte VDI: info fails"; fi
# the signature alone makes the probe pick VDI, so a poked header elsewhere
# is reported without -f
V=$(fresh probe)
poke32 "$V" 376 3000
assert_rc "bad cbBlock, probed: check exits 2" 2 "$VDISK" check "$V"
assert_contains "bad cbBlock, probed: message" "cbBlock" "$T/.err"
assert_rc "bad cbBlock, probed: info fails" 1 "$VDISK" info "$V"

# ---- regressions found by the fuzzer (tests/fuzz/crashes)
# a fixed VDI whose map skips a slot: repair must not lower cBlocksAllocated
# under the highest used slot, or the next write overwrites another block
cp "$TOP/tests/fuzz/crashes/vdi-fixed-repair-nalloc.vdi" "$T/fz1.vdi"
assert_rc "fuzz fixed: check -r" 0 "$VDISK" check -f vdi -r "$T/fz1.vdi"
"$VDISK" convert -f vdi -O raw "$T/fz1.vdi" "$T/fz1.raw"
size=$(stat -c %s "$T/fz1.raw")
rand_bytes fz1 "$size" > "$T/fz1.new"
assert_rc "fuzz fixed: write every block after repair" 0 "$VDISK" convert -n -f raw "$T/fz1.new" "$T/fz1.vdi"
assert_rc "fuzz fixed: every block reads back (no shared slot)" 0 "$VDISK" compare -F vdi "$T/fz1.new" "$T/fz1.vdi"
assert_rc "fuzz fixed: consistent afterwards" 0 "$VDISK" check -f vdi "$T/fz1.vdi"
# a dynamic VDI whose moved slot holds a partial last block that ends the file
cp "$TOP/tests/fuzz/crashes/vdi-partial-slot-repair.vdi" "$T/fz2.vdi"
"$VDISK" convert -f vdi -O raw "$T/fz2.vdi" "$T/fz2.before"
assert_rc "fuzz partial slot: check -r succeeds" 0 "$VDISK" check -f vdi -r "$T/fz2.vdi"
assert_rc "fuzz partial slot: consistent afterwards" 0 "$VDISK" check -f vdi "$T/fz2.vdi"
assert_rc "fuzz partial slot: contents kept" 0 "$VDISK" compare -F vdi "$T/fz2.before" "$T/fz2.vdi"

finish
