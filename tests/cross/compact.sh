#!/usr/bin/env bash
# vdisk compact, checked with qemu-img:
#  - dynamic VDI whose allocated blocks were overwritten with zeros: the
#    zero blocks are dropped, the file has exactly the kept blocks, qemu-img
#    and vdisk check accept it, contents and UUIDs are unchanged, it is no
#    larger than what qemu-img convert makes of it;
#  - monolithicSparse and twoGbMaxExtentSparse VMDK (grains zeroed by
#    qemu-io): the same, CID, adapter type and hardware version kept; a
#    split VMDK with QEMU's 2 GiB extents is refused (its extent files could
#    not be replaced safely one by one);
#  - raw: holes punched in place, contents identical, same inode;
#  - fixed VDI and flat VMDK: "nothing to drop", file unchanged;
#  - SIGKILL at several moments leaves the original byte for byte intact;
#    SIGTERM / SIGINT exit 143 / 130 and leave no temporary file;
#  - free space short (8 MiB tmpfs): refused, saying how much is needed and
#    available; an image in use (open for writing, or locked) is refused;
#  - --fs-aware: free swap space in an MBR partition goes without being
#    zeroed, unknown content is left alone.
. "$(dirname "$0")/../lib.sh"
need qemu-img openssl jq
MiB=$((1 << 20))

tmp_files() { find "$1" -maxdepth 1 -name '.*vdisk-tmp*' 2>/dev/null; }
sha1_of() { openssl dgst -sha1 -r "$1" | cut -d' ' -f1; }
jinfo() { "$VDISK" info --output=json "$1"; }
du_bytes() { echo $(($(stat -c %b "$1") * 512)); }
# zero MiB-sized pieces of FILE: zero_mib FILE START_MIB COUNT_MIB (real zeros, not holes)
zero_mib() { dd if=/dev/zero of="$1" bs=1M seek="$2" count="$3" conv=notrunc status=none; }

rand_bytes compact $((32 * MiB)) >"$T/data.raw"
cp "$T/data.raw" "$T/z.raw"
zero_mib "$T/z.raw" 2 4
zero_mib "$T/z.raw" 10 1
zero_mib "$T/z.raw" 20 4
# half of block 12 zero: the block stays
dd if=/dev/zero of="$T/z.raw" bs=512K seek=24 count=1 conv=notrunc status=none

# ---------------------------------------------------------------- VDI
V=$T/a.vdi
"$VDISK" convert -O vdi "$T/data.raw" "$V"
# zeros written into allocated blocks (they stay allocated)
"$VDISK" convert -n -S 0 "$T/z.raw" "$V"
assert_eq "vdi: 32 blocks allocated before" 32 "$(jinfo "$V" | jq '."format-specific".data."blocks-allocated"')"
before=$(jinfo "$V")
cp "$V" "$T/a-orig.vdi"
qemu-img convert -O vdi "$V" "$T/q.vdi"
chmod 640 "$V"
assert_rc "vdi: compact" 0 "$VDISK" compact --output=json "$V"
cp "$T/.out" "$T/compact.json"
assert_eq "vdi: 9 zero blocks dropped" 9 "$(jq '."blocks-zero"' "$T/compact.json")"
assert_eq "vdi: 23 blocks kept" 23 "$(jq '."blocks-kept"' "$T/compact.json")"
assert_eq "vdi: method" '"new file"' "$(jq .method "$T/compact.json")"
after=$(jinfo "$V")
assert_eq "vdi: 23 blocks allocated after" 23 "$(echo "$after" | jq '."format-specific".data."blocks-allocated"')"
# header and block map (2 MiB, 1 MiB aligned) + 23 blocks, nothing more
assert_eq "vdi: file size = data offset + kept blocks" $((2 * MiB + 23 * MiB)) "$(stat -c %s "$V")"
used=$(du_bytes "$V")
[ "$used" -le $((23 * MiB + 64 * 1024)) ] && pass "vdi: disk usage $used <= kept data + metadata" ||
	fail "vdi: disk usage $used > 23 MiB + 64 KiB"
q=$(du_bytes "$T/q.vdi")
# qemu-img convert drops all-zero blocks too; ours differs only in metadata
# (the block map on its own 1 MiB-aligned page)
[ "$used" -le $((q + 8192)) ] && pass "vdi: not larger than qemu-img convert ($used vs $q)" ||
	fail "vdi: $used bytes on disk, qemu-img convert $q"
assert_eq "vdi: mode kept" 640 "$(stat -c %a "$V")"
for k in uuid modification-uuid; do
	assert_eq "vdi: $k kept" "$(echo "$before" | jq -r ".\"$k\"")" "$(echo "$after" | jq -r ".\"$k\"")"
done
assert_rc "vdi: qemu-img check" 0 qemu-img check "$V"
assert_rc "vdi: vdisk check" 0 "$VDISK" check "$V"
assert_contains "vdi: vdisk check: no errors, no leaks" "No errors" "$T/.out"
assert_rc "vdi: same contents as before (qemu-img compare)" 0 qemu-img compare "$T/a-orig.vdi" "$V"
assert_rc "vdi: same contents as the raw source" 0 qemu-img compare "$T/z.raw" "$V"
assert_eq "vdi: no temporary file" "" "$(tmp_files "$T")"
# a second run has nothing left to drop and changes nothing in the contents
ino=$(stat -c %i "$V"); mt=$(stat -c %y "$V")
assert_rc "vdi: compact again" 0 "$VDISK" compact --output=json "$V"
assert_eq "vdi: second run drops nothing" 0 "$(jq '."blocks-zero"' "$T/.out")"
assert_eq "vdi: second run does nothing" '"nothing to do"' "$(jq .method "$T/.out")"
assert_eq "vdi: second run: same inode and mtime" "$ino $mt" "$(stat -c %i "$V") $(stat -c %y "$V")"
"$VDISK" compact "$V" >"$T/again.txt"
assert_contains "vdi: second run says so" "Nothing to do: every allocated block holds data" "$T/again.txt"
assert_eq "vdi: second run same size" $((25 * MiB)) "$(stat -c %s "$V")"

# VDI from qemu-img (offData right after the map, QEMU's layout), zeros
# written with qemu-io
if command -v qemu-io >/dev/null; then
	QV=$T/qemu.vdi
	qemu-img create -q -f vdi "$QV" 16M
	qemu-io -f vdi -c 'write -P 0xa5 0 16M' -c 'write -P 0 4M 3M' -c 'write -P 0 9M 512K' "$QV" >/dev/null
	cp "$QV" "$T/qemu-orig.vdi"
	assert_rc "qemu vdi: compact" 0 "$VDISK" compact --output=json "$QV"
	assert_eq "qemu vdi: 3 blocks dropped" 3 "$(jq '."blocks-zero"' "$T/.out")"
	assert_rc "qemu vdi: qemu-img check" 0 qemu-img check "$QV"
	assert_rc "qemu vdi: vdisk check" 0 "$VDISK" check "$QV"
	assert_rc "qemu vdi: contents" 0 qemu-img compare "$T/qemu-orig.vdi" "$QV"
fi

# ---------------------------------------------------------------- VMDK
need qemu-io
M=$T/m.vmdk
"$VDISK" convert -O vmdk -o compat=esxi "$T/data.raw" "$M"
qemu-io -f vmdk -c 'write -P 0 2M 4M' -c 'write -P 0 10M 1M' -c 'write -P 0 20M 4M' "$M" >/dev/null
cp "$M" "$T/m-orig.vmdk"
before=$(jinfo "$M")
assert_rc "vmdk: compact" 0 "$VDISK" compact --output=json "$M"
assert_eq "vmdk: 144 zero grains dropped" 144 "$(jq '."blocks-zero"' "$T/.out")"
assert_eq "vmdk: 368 grains kept" 368 "$(jq '."blocks-kept"' "$T/.out")"
after=$(jinfo "$M")
for k in uuid '"modification-uuid"' '"format-specific".data.cid' '"format-specific".data."adapter-type"' '"format-specific".data."hw-version"' subformat; do
	assert_eq "vmdk: $k kept" "$(echo "$before" | jq -r ".$k")" "$(echo "$after" | jq -r ".$k")"
done
assert_eq "vmdk: adapter type is the ESXi one" lsilogic "$(echo "$after" | jq -r '."format-specific".data."adapter-type"')"
assert_rc "vmdk: qemu-img check" 0 qemu-img check "$M"
assert_rc "vmdk: vdisk check" 0 "$VDISK" check "$M"
assert_rc "vmdk: contents" 0 qemu-img compare "$T/m-orig.vmdk" "$M"
qemu-img convert -O vmdk "$T/m-orig.vmdk" "$T/qm.vmdk"
used=$(du_bytes "$M"); q=$(du_bytes "$T/qm.vmdk")
[ "$used" -le "$q" ] && pass "vmdk: not larger than qemu-img convert ($used vs $q)" ||
	fail "vmdk: $used bytes on disk, qemu-img convert $q"
[ "$used" -le $((368 * 65536 + 256 * 1024)) ] && pass "vmdk: disk usage <= kept grains + metadata" ||
	fail "vmdk: disk usage $used"

# split, two extent files (2047 MiB each), data and zeroed grains in both
S=$T/s.vmdk
"$VDISK" create -O vmdk -o subformat=twoGbMaxExtentSparse "$S" 2100M
qemu-io -f vmdk -c 'write -P 0x11 0 4M' -c 'write -P 0 1M 2M' -c 'write -P 0x22 2046M 4M' \
	-c 'write -P 0 2048M 1M' -c 'write -P 0x33 2090M 1M' "$S" >/dev/null
assert_eq "split: two extent files" "2" "$(ls "$T"/s-s00?.vmdk | wc -l)"
qemu-img convert -O raw "$S" "$T/s.raw"
before=$(jinfo "$S")
assert_rc "split: compact" 0 "$VDISK" compact --output=json "$S"
assert_eq "split: 48 zero grains dropped" 48 "$(jq '."blocks-zero"' "$T/.out")"
assert_eq "split: 96 grains kept" 96 "$(jq '."blocks-kept"' "$T/.out")"
after=$(jinfo "$S")
for k in uuid '"format-specific".data.cid' '"format-specific".data.extents'; do
	assert_eq "split: $k kept" "$(echo "$before" | jq -r ".$k")" "$(echo "$after" | jq -r ".$k")"
done
assert_rc "split: qemu-img check" 0 qemu-img check "$S"
assert_rc "split: vdisk check" 0 "$VDISK" check "$S"
assert_rc "split: contents" 0 qemu-img compare "$T/s.raw" "$S"
assert_eq "split: extent files, nothing else" "s-s001.vmdk s-s002.vmdk s.vmdk" "$(cd "$T" && echo s*.vmdk)"
assert_eq "split: no temporary file" "" "$(tmp_files "$T")"

# QEMU's split images use 2 GiB extents, vdisk writes 2047 MiB ones
QS=$T/qs.vmdk
qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse "$QS" 2100M
# zero grains to drop: with nothing to drop compact would leave it alone
qemu-io -f vmdk -c 'write -P 0 0 1M' "$QS" >/dev/null
sum=$(cat "$T"/qs*.vmdk | openssl dgst -sha1 -r)
assert_rc "qemu split: refused" 1 "$VDISK" compact "$QS"
assert_contains "qemu split: says why" "cannot replace the extent files safely" "$T/.err"
assert_eq "qemu split: untouched" "$sum" "$(cat "$T"/qs*.vmdk | openssl dgst -sha1 -r)"
assert_eq "qemu split: no temporary file" "" "$(tmp_files "$T")"

# ---------------------------------------------------------------- raw
R=$T/r.raw
cp "$T/z.raw" "$R"
ino=$(stat -c %i "$R")
du0=$(du_bytes "$R")
assert_rc "raw: compact" 0 "$VDISK" compact --output=json "$R"
assert_eq "raw: method" '"in place"' "$(jq .method "$T/.out")"
assert_eq "raw: 9.5 MiB punched" $((9 * MiB + 512 * 1024)) "$(jq '."bytes-punched"' "$T/.out")"
assert_eq "raw: same inode (in place)" "$ino" "$(stat -c %i "$R")"
du1=$(du_bytes "$R")
[ "$du1" -le $((du0 - 9 * MiB - 512 * 1024 + 8192)) ] && pass "raw: disk usage shrank by the punched bytes ($du0 -> $du1)" ||
	fail "raw: disk usage $du0 -> $du1, expected 9.5 MiB less"
assert_rc "raw: contents identical" 0 cmp "$T/z.raw" "$R"
assert_eq "raw: qemu-img map agrees: 9.5 MiB of holes" $((9 * MiB + 512 * 1024)) \
	"$(qemu-img map --output=json -f raw "$R" | jq '[.[] | select(.data == false) | .length] | add')"
# the report: punched out of what the host held before (st_blocks), and now
cp "$T/z.raw" "$R"
du0=$(du_bytes "$R")
"$VDISK" compact "$R" >"$T/raw.txt" || fail "raw: compact (human)"
assert_eq "raw: host bytes before are st_blocks" 32 "$((du0 / MiB))"
assert_contains "raw: report: punched of the allocated" \
	"Punched:      9.5 MiB (9961472 bytes) of the 32 MiB allocated on the host before" "$T/raw.txt"
assert_contains "raw: report: data left" "Data left:    22.5 MiB" "$T/raw.txt"
assert_contains "raw: report: disk usage before and after" "Disk usage:   32 MiB -> 22.5 MiB" "$T/raw.txt"

# ---------------------------------------------------------------- fixed, flat
"$VDISK" convert -O vdi -o subformat=fixed "$T/z.raw" "$T/f.vdi"
sum=$(sha1_of "$T/f.vdi")
assert_rc "fixed vdi: compact" 0 "$VDISK" compact "$T/f.vdi"
assert_contains "fixed vdi: nothing to drop" "no blocks to drop" "$T/.out"
assert_eq "fixed vdi: unchanged" "$sum" "$(sha1_of "$T/f.vdi")"
"$VDISK" convert -O vmdk -o subformat=monolithicFlat "$T/z.raw" "$T/fl.vmdk"
sum=$(sha1_of "$T/fl-flat.vmdk")
assert_rc "flat vmdk: compact" 0 "$VDISK" compact --output=json "$T/fl.vmdk"
assert_eq "flat vmdk: nothing to do" '"nothing to do"' "$(jq .method "$T/.out")"
assert_eq "flat vmdk: unchanged" "$sum" "$(sha1_of "$T/fl-flat.vmdk")"

# ---------------------------------------------------------------- --fs-aware
# MBR: partition 1 swap (stale random data after its header page),
# partition 2 random data no walker reads.  The free swap blocks go without
# being zeroed first; everything else is kept byte for byte.
if command -v mkswap >/dev/null; then
	rand_bytes fsaware $((24 * MiB)) >"$T/sw.raw"
	printf 'label: dos\n,8MiB,82\n,,L\n' | "$VDISK" mbr "$T/sw.raw" >/dev/null
	rand_bytes swap $((8 * MiB)) >"$T/part.swp"
	mkswap "$T/part.swp" >/dev/null 2>&1
	dd if="$T/part.swp" of="$T/sw.raw" bs=1M seek=1 conv=notrunc status=none
	"$VDISK" convert -O vdi "$T/sw.raw" "$T/sw.vdi"
	assert_rc "fs-aware vdi: compact" 0 "$VDISK" compact --fs-aware --output=json "$T/sw.vdi"
	cp "$T/.out" "$T/swc.json"
	assert_eq "fs-aware vdi: 7 free swap blocks dropped" 7 "$(jq '."blocks-free"' "$T/.out")"
	assert_eq "fs-aware vdi: no zero blocks" 0 "$(jq '."blocks-zero"' "$T/.out")"
	assert_contains "fs-aware vdi: note names the swap" "partition 1: swap" "$T/.out"
	assert_contains "fs-aware vdi: unknown content left alone" "partition 2: no filesystem vdisk can read, left alone" "$T/.out"
	assert_rc "fs-aware vdi: qemu-img check" 0 qemu-img check "$T/sw.vdi"
	assert_rc "fs-aware vdi: vdisk check" 0 "$VDISK" check "$T/sw.vdi"
	qemu-img convert -O raw "$T/sw.vdi" "$T/sw.out"
	assert_rc "fs-aware vdi: MBR and swap header page unchanged" 0 \
		cmp -n $((MiB + 4096)) "$T/sw.raw" "$T/sw.out"
	# the rest of the swap header's block is free: kept, written as zeros
	assert_eq "fs-aware vdi: free space in the kept swap header block reads as zeros" 0 \
		"$(dd if="$T/sw.out" bs=4K skip=257 count=255 status=none | tr -d '\0' | wc -c)"
	assert_eq "fs-aware vdi: the kept block's free bytes counted" $((MiB - 4096)) "$(jq '."bytes-free-zeroed"' "$T/swc.json")"
	assert_eq "fs-aware vdi: one kept block held old data in free space" 1 "$(jq '."blocks-free-zeroed"' "$T/swc.json")"
	assert_rc "fs-aware vdi: partition 2 unchanged" 0 cmp -i $((9 * MiB)) "$T/sw.raw" "$T/sw.out"
	assert_eq "fs-aware vdi: dropped swap blocks read as zeros" 0 \
		"$(dd if="$T/sw.out" bs=1M skip=2 count=7 status=none | tr -d '\0' | wc -c)"
	blkid -p -O $MiB "$T/sw.out" >"$T/blkid.out" 2>&1 || true
	assert_contains "fs-aware vdi: still swap for blkid" 'TYPE="swap"' "$T/blkid.out"
	# without --fs-aware nothing would have gone: the swap data is not zero
	"$VDISK" convert -O vdi "$T/sw.raw" "$T/sw2.vdi"
	assert_rc "plain compact of the same image" 0 "$VDISK" compact --output=json "$T/sw2.vdi"
	assert_eq "plain compact keeps the stale swap blocks" 0 "$(jq '."blocks-free" + ."blocks-zero"' "$T/.out")"
	# raw: free ranges punched in place
	cp "$T/sw.raw" "$T/swr.raw"
	assert_rc "fs-aware raw: compact" 0 "$VDISK" compact --fs-aware --output=json "$T/swr.raw"
	assert_eq "fs-aware raw: 8 MiB - the header page punched" $((8 * MiB - 4096)) "$(jq '."bytes-punched"' "$T/.out")"
	assert_rc "fs-aware raw: outside the free space unchanged" 0 cmp -n $((MiB + 4096)) "$T/sw.raw" "$T/swr.raw"
	# free space that is a hole already is not punched again, nor counted
	cp "$T/sw.raw" "$T/swh.raw"
	fallocate -p -o $((3 * MiB)) -l $((4 * MiB)) "$T/swh.raw"
	before=$(du_bytes "$T/swh.raw")
	assert_rc "fs-aware raw with holes: compact" 0 "$VDISK" compact --fs-aware --output=json "$T/swh.raw"
	assert_eq "fs-aware raw with holes: only the stored free bytes punched" $((4 * MiB - 4096)) "$(jq '."bytes-punched"' "$T/.out")"
	assert_eq "fs-aware raw with holes: host bytes before" "$before" "$(jq '."host-bytes-before"' "$T/.out")"
	assert_eq "fs-aware raw with holes: host bytes after" "$(du_bytes "$T/swh.raw")" "$(jq '."host-bytes-after"' "$T/.out")"
	assert_eq "fs-aware raw with holes: what was punched left the host" $((4 * MiB - 4096)) \
		"$(jq '."host-bytes-before" - ."host-bytes-after"' "$T/.out")"
	assert_rc "fs-aware raw with holes: contents outside the free space" 0 cmp -n $((MiB + 4096)) "$T/sw.raw" "$T/swh.raw"
	assert_rc "fs-aware raw: partition 2 unchanged" 0 cmp -i $((9 * MiB)) "$T/sw.raw" "$T/swr.raw"
else
	echo "SKIP: --fs-aware tests (no mkswap)"
fi

# ext4 built without mounting (mkfs.ext4 -d), a large file and every other
# small one (sizes that are no multiple of a block) deleted with debugfs so
# their blocks are free but still hold their data, some of them in blocks
# that stay in use: compact --fs-aware writes zeros there, so that after it
# zerofree (vdisk's and e2fsprogs') finds no free block to zero
if command -v mkfs.ext4 >/dev/null && command -v debugfs >/dev/null && command -v e2fsck >/dev/null; then
	mkdir -p "$T/fsroot"
	rand_bytes big $((30 * MiB)) >"$T/fsroot/big"
	rand_bytes keep $((4 * MiB)) >"$T/fsroot/keep"
	for i in $(seq 1 12); do rand_bytes "small$i" $((i * 150000 + 777)) >"$T/fsroot/s$i"; done
	truncate -s 64M "$T/e.raw"
	mkfs.ext4 -q -F -b 4096 -d "$T/fsroot" "$T/e.raw"
	debugfs -w -R "rm big" "$T/e.raw" >/dev/null 2>&1
	for i in 2 4 6 8 10 12; do debugfs -w -R "rm s$i" "$T/e.raw" >/dev/null 2>&1; done
	"$VDISK" convert -O vdi "$T/e.raw" "$T/e.vdi"
	qemu-img convert -O vdi "$T/e.vdi" "$T/eq.vdi"
	assert_rc "fs-aware ext4: compact" 0 "$VDISK" compact --fs-aware --output=json "$T/e.vdi"
	assert_contains "fs-aware ext4: note" "whole disk: ext4" "$T/.out"
	nfree=$(jq '."blocks-free"' "$T/.out")
	[ "$nfree" -ge 25 ] && pass "fs-aware ext4: $nfree free blocks dropped" || fail "fs-aware ext4: only $nfree free blocks dropped"
	used=$(du_bytes "$T/e.vdi"); q=$(du_bytes "$T/eq.vdi")
	[ "$used" -lt $((q / 2)) ] && pass "fs-aware ext4: smaller than qemu-img convert ($used vs $q)" ||
		fail "fs-aware ext4: $used bytes on disk, qemu-img convert $q"
	assert_rc "fs-aware ext4: qemu-img check" 0 qemu-img check "$T/e.vdi"
	assert_rc "fs-aware ext4: vdisk check" 0 "$VDISK" check "$T/e.vdi"
	qemu-img convert -O raw "$T/e.vdi" "$T/e.out"
	assert_rc "fs-aware ext4: e2fsck -fn clean" 0 e2fsck -fn "$T/e.out"
	debugfs -R "dump keep $T/keep.out" "$T/e.out" >/dev/null 2>&1
	assert_rc "fs-aware ext4: the remaining file is intact" 0 cmp "$T/fsroot/keep" "$T/keep.out"
	bad=0
	for i in 1 3 5 7 9 11; do
		debugfs -R "dump s$i $T/s$i.out" "$T/e.out" >/dev/null 2>&1
		cmp -s "$T/fsroot/s$i" "$T/s$i.out" || { bad=1; fail "fs-aware ext4: s$i changed"; }
	done
	[ $bad = 0 ] && pass "fs-aware ext4: the remaining small files are intact"
	assert_eq "fs-aware ext4: deleted files are gone" "" \
		"$(debugfs -R 'ls -l' "$T/e.out" 2>/dev/null | grep -wE 's(2|4|6|8|10|12)|big')"
	# vdisk zerofree --dry-run: nothing left to zero or release
	"$VDISK" zerofree --dry-run --output=json "$T/e.vdi" >"$T/zfd.json" || fail "fs-aware ext4: zerofree --dry-run"
	assert_eq "fs-aware ext4: zerofree --dry-run finds nothing to zero" 0 "$(jq '."zeroed-bytes"' "$T/zfd.json")"
	assert_eq "fs-aware ext4: zerofree --dry-run finds nothing to release" 0 "$(jq '."released-bytes"' "$T/zfd.json")"
	"$VDISK" zerofree --dry-run --output=json "$T/eq.vdi" >"$T/zfq.json"
	[ "$(jq '."zeroed-bytes"' "$T/zfq.json")" -gt 0 ] && pass "fs-aware ext4: the original had free space to zero in blocks in use" ||
		fail "fs-aware ext4: the test image has no stale data in partly free blocks"
	if command -v zerofree >/dev/null; then
		zerofree -n -v "$T/e.out" >"$T/zf.out" 2>/dev/null
		nz=$(tr -d '\r' <"$T/zf.out" | awk -F/ 'NR==1 {print $1 + 0}')
		zerofree -n -v "$T/e.raw" >"$T/zf0.out" 2>/dev/null
		nz0=$(tr -d '\r' <"$T/zf0.out" | awk -F/ 'NR==1 {print $1 + 0}')
		assert_eq "fs-aware ext4: zerofree -n finds no non-zero free block (before: $nz0)" 0 "$nz"
	fi
	# again: nothing to drop, nothing to zero: the image is left alone
	ino=$(stat -c %i "$T/e.vdi"); mt=$(stat -c %Y.%y "$T/e.vdi"); sum=$(sha1_of "$T/e.vdi")
	assert_rc "fs-aware ext4: second compact" 0 "$VDISK" compact --fs-aware --output=json "$T/e.vdi"
	assert_eq "fs-aware ext4: second compact: nothing to do" '"nothing to do"' "$(jq .method "$T/.out")"
	assert_contains "fs-aware ext4: second compact says so" "left as it was" "$T/.out"
	assert_eq "fs-aware ext4: second compact: same inode and mtime" "$ino $mt" \
		"$(stat -c %i "$T/e.vdi") $(stat -c %Y.%y "$T/e.vdi")"
	assert_eq "fs-aware ext4: second compact: same bytes" "$sum" "$(sha1_of "$T/e.vdi")"
else
	echo "SKIP: ext4 --fs-aware tests (no mkfs.ext4/debugfs/e2fsck)"
fi

# ---------------------------------------------------------------- in use
cp "$T/a-orig.vdi" "$T/busy.vdi"
exec 9>>"$T/busy.vdi"
assert_rc "open for writing elsewhere: refused" 1 "$VDISK" compact "$T/busy.vdi"
assert_contains "open for writing: names the process" "in use: process $$ (bash) has it open for writing" "$T/.err"
exec 9>&-
exec 8<"$T/busy.vdi"
flock -n 8
assert_rc "locked by another vdisk: refused" 1 "$VDISK" compact "$T/busy.vdi"
assert_contains "locked: says so" "in use by another" "$T/.err"
exec 8<&-
assert_rc "in use: original untouched" 0 cmp "$T/a-orig.vdi" "$T/busy.vdi"
assert_rc "no longer in use: compact works" 0 "$VDISK" compact "$T/busy.vdi"

# ---------------------------------------------------------------- free space
SMALL=$T/small
mkdir "$SMALL"
if mount -t tmpfs -o size=8m tmpfs "$SMALL" 2>/dev/null; then
	on_exit "umount '$SMALL'"
	# 4 MiB of data and one zero block: the new file needs 4 MiB, about 1 is free
	head -c $((4 * MiB)) "$T/data.raw" >"$T/5m.raw"
	head -c $MiB /dev/zero >>"$T/5m.raw"
	"$VDISK" convert -O vdi -S 0 "$T/5m.raw" "$SMALL/full.vdi"
	sum=$(sha1_of "$SMALL/full.vdi")
	assert_rc "no space: compact refused" 1 "$VDISK" compact "$SMALL/full.vdi"
	assert_contains "no space: says how much is needed" "needs 4194304 bytes" "$T/.err"
	assert_contains "no space: says how much is available" "available" "$T/.err"
	assert_eq "no space: image unchanged" "$sum" "$(sha1_of "$SMALL/full.vdi")"
	assert_eq "no space: no temporary file" "" "$(tmp_files "$SMALL")"
	assert_rc "no space: defrag refused too" 1 "$VDISK" defrag "$SMALL/full.vdi"
	assert_contains "no space: defrag says so" "not enough free space" "$T/.err"
	assert_eq "no space: defrag left it unchanged" "$sum" "$(sha1_of "$SMALL/full.vdi")"
	# mostly zeros: the new file fits
	head -c $((5 * MiB)) "$T/z.raw" >"$T/5z.raw"
	"$VDISK" convert -n -S 0 "$T/5z.raw" "$SMALL/full.vdi"
	assert_rc "enough space once zeros are dropped: compact works" 0 "$VDISK" compact "$SMALL/full.vdi"
	assert_rc "tmpfs compact: check" 0 "$VDISK" check "$SMALL/full.vdi"
	assert_eq "tmpfs: no temporary file" "" "$(tmp_files "$SMALL")"
else
	echo "SKIP: free-space tests (cannot mount a tmpfs here)"
fi

# ---------------------------------------------------------------- kills
# 320 MiB VDI with every fourth block zeroed; the original must stay byte
# for byte the same whenever compact dies.
K=$T/k.vdi
rand_bytes kill $((320 * MiB)) >"$T/k.raw"
for i in $(seq 0 4 319); do zero_mib "$T/k.raw" "$i" 1; done
"$VDISK" convert -O vdi -S 0 "$T/k.raw" "$K"
rm -f "$T/k.raw"
ksum=$(sha1_of "$K")
cp "$K" "$T/k0.vdi" # pristine copy: every attempt starts from it
tmp_size() { local f; f=$(tmp_files "$T"); [ -n "$f" ] && stat -c %s $f 2>/dev/null | head -1 || echo -1; }
# after_stop WHAT RC: the image is either the original, byte for byte (the
# run stopped before its rename), or the complete compacted image (the
# signal came after the rename, or the run finished first); returns 0 for
# "original"
after_stop() {
	if [ "$(sha1_of "$K")" = "$ksum" ]; then
		assert_rc "$1: original byte for byte intact, vdisk check" 0 "$VDISK" check "$K"
		assert_rc "$1: qemu-img check" 0 qemu-img check "$K"
		return 0
	fi
	echo "note: $1 came after the rename (rc $2): the image must be the compacted one"
	assert_rc "$1 after the rename: vdisk check" 0 "$VDISK" check "$K"
	assert_rc "$1 after the rename: same guest contents" 0 qemu-img compare -q "$T/k0.vdi" "$K"
	[ "$(stat -c %s "$K")" -lt "$(stat -c %s "$T/k0.vdi")" ] && pass "$1 after the rename: smaller" ||
		fail "$1: neither the original nor a compacted image"
	return 1
}
landed=0
# moments: right away, once the temporary file exists, at 1/3 and 2/3 of its size
for moment in start created $((2 * MiB + 80 * MiB)) $((2 * MiB + 160 * MiB)); do
	cp "$T/k0.vdi" "$K"
	"$VDISK" compact -q "$K" >/dev/null 2>&1 &
	pid=$!
	case $moment in
	start) ;;
	created) for _ in $(seq 2000); do [ -n "$(tmp_files "$T")" ] && break; sleep 0.001; done ;;
	*) for _ in $(seq 5000); do [ "$(tmp_size)" -ge "$moment" ] && break; sleep 0.001; done ;;
	esac
	kill -KILL "$pid" 2>/dev/null
	rc=0; wait "$pid" || rc=$?
	if after_stop "SIGKILL at $moment" "$rc" && [ "$rc" = 137 ]; then
		landed=$((landed + 1))
	fi
	# SIGKILL cannot clean up: the stale temporary file is all that is left
	rm -f $(tmp_files "$T")
done
[ "$landed" -ge 2 ] && pass "SIGKILL landed before the rename $landed times" || fail "SIGKILL landed before the rename only $landed times"
for sig in TERM INT; do
	cp "$T/k0.vdi" "$K"
	"$VDISK" compact -q "$K" >/dev/null 2>"$T/sig.err" &
	pid=$!
	for _ in $(seq 5000); do [ "$(tmp_size)" -ge $((2 * MiB + 40 * MiB)) ] && break; sleep 0.001; done
	kill -"$sig" "$pid"
	rc=0; wait "$pid" || rc=$?
	want=$([ $sig = TERM ] && echo 143 || echo 130)
	assert_eq "SIG$sig: no temporary file left" "" "$(tmp_files "$T")"
	# a signal after the rename finds the work done (exit 0)
	if after_stop "SIG$sig" "$rc"; then
		assert_eq "SIG$sig: exit status" "$want" "$rc"
	else
		assert_eq "SIG$sig after the rename: exit status" 0 "$rc"
	fi
done
cp "$T/k0.vdi" "$K"
assert_rc "after the kills: compact completes" 0 "$VDISK" compact --output=json "$K"
assert_eq "after the kills: 80 zero blocks dropped" 80 "$(jq '."blocks-zero"' "$T/.out")"
assert_rc "after the kills: qemu-img check" 0 qemu-img check "$K"
finish
