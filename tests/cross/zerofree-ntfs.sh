#!/usr/bin/env bash
# vdisk zerofree and compact --fs-aware on NTFS, against ntfs-3g's tools:
#  - a 64 MiB sparse image made by mkntfs -Q, files copied in with ntfscp,
#    then every cluster the $Bitmap (ntfscat '$Bitmap') calls free filled
#    with random data (stale data in free space)
#  - the free ranges of vdisk zerofree -n --list equal the 0 bits of
#    ntfscat '$Bitmap' (up to the cluster count ntfsinfo -m reports)
#  - after vdisk zerofree on raw, VDI and VMDK (qemu-img convert): every
#    free cluster reads as zeros, every file read back with ntfscat is
#    identical, ntfsfix -n and ntfsinfo -m still accept the volume, -n
#    changed nothing, a second run has nothing to do, the file did not
#    grow; VDI/VMDK pass qemu-img check
#  - compact --fs-aware on the VDI: smaller than a plain compact
#  - NTFS in partition 2 of an MBR disk and partition 1 of a GPT disk: the
#    same ranges shifted by the partition offset, the other partition
#    untouched
#  - the dirty flag set in $VOLUME_INFORMATION (ntfsinfo refuses the volume,
#    ntfsinfo -f -m shows the flag):
#    zerofree and compact --fs-aware refuse, image unchanged; --force -n
#    walks it; after ntfsfix -d it is accepted
. "$(dirname "$0")/../lib.sh"
need qemu-img mkntfs ntfscp ntfscat ntfsinfo ntfsfix jq sha256sum sfdisk od
MiB=$((1 << 20))
cd "$T" || exit 1

sha() { sha256sum "$1" | cut -d' ' -f1; }
jz() { "$VDISK" zerofree -q --output=json "$@"; }
list_ranges() { "$VDISK" zerofree -n -q --list "$@" 2>/dev/null | sed -n 's/^free \([0-9]*\) \([0-9]*\)$/\1 \2/p'; }
# ranges_zero FILE RANGES [BASE]: 0 if every range reads as zeros
ranges_zero() {
	local off len
	while read -r off len; do
		cmp -s -n "$len" <(tail -c +$((off + ${3:-0} + 1)) "$1") /dev/zero || return 1
	done <"$2"
	return 0
}
info_val() { ntfsinfo -m "$1" 2>/dev/null | sed -n "s/^[[:space:]]*$2: *//p" | head -1; }
# free ranges (byte offset, length, merged) from the 0 bits of $Bitmap
bitmap_ranges() {
	local img=$1 ncl cs
	ncl=$(info_val "$img" "Volume Size in Clusters")
	cs=$(info_val "$img" "Cluster Size")
	[ -n "$ncl" ] && [ -n "$cs" ] || { fail "ntfsinfo -m: no cluster count or size"; return; }
	ntfscat "$img" '$Bitmap' | od -An -v -tu1 |
		awk -v ncl="$ncl" -v cs="$cs" '{ for (i = 1; i <= NF; i++) { b = $i
			for (k = 0; k < 8 && c < ncl; k++) {
				if (b % 2 == 0) { if (!n) s = c; n++ } else if (n) { print s * cs, n * cs; n = 0 }
				b = int(b / 2); c++ } } }
			END { if (n) print s * cs, n * cs }'
}
same_files() { # IMG: every file identical when read back with ntfscat
	local f
	for f in f1 f2 f3 small; do
		[ "$(ntfscat "$1" "$f" 2>/dev/null | sha256sum | cut -d' ' -f1)" = "$(sha "src/$f")" ] || return 1
	done
}
ntfs_ok() { ntfsfix -n "$1" >fix.out 2>&1 && ntfsinfo -m "$1" >/dev/null 2>&1; }

# ---- build: mkntfs, files copied in, stale data in every free cluster ----
truncate -s 64M x.img
mkntfs -F -f -Q -L zfntfs x.img >/dev/null 2>&1 || { fail "mkntfs failed"; finish; }
mkdir src
rand_bytes n1 $((3 * MiB)) >src/f1
rand_bytes n2 $((5 * MiB)) >src/f2
rand_bytes n3 $((1 * MiB + 777)) >src/f3
rand_bytes n4 3000 >src/small
for f in f1 f2 f3 small; do ntfscp x.img "src/$f" "$f" >/dev/null 2>&1 || fail "ntfscp $f"; done
bitmap_ranges x.img >want.ranges
[ "$(wc -l <want.ranges)" -ge 2 ] && pass "the \$Bitmap has $(wc -l <want.ranges) free ranges" || fail "the \$Bitmap has too few free ranges"
i=0
while read -r off len; do
	rand_bytes "stale$i" "$len" | dd of=x.img bs=64K seek="$off" oflag=seek_bytes conv=notrunc status=none
	i=$((i + 1))
done <want.ranges
same_files x.img && pass "files read back with ntfscat after the stale data" || fail "stale data hit a file"
ntfs_ok x.img && pass "ntfsfix -n accepts the volume" || fail "ntfsfix -n: $(tail -2 fix.out)"

# (a) the free list, against the $Bitmap
list_ranges x.img >got.ranges
if [ -s want.ranges ] && cmp -s want.ranges got.ranges; then pass "free ranges identical to the 0 bits of ntfscat \$Bitmap ($(wc -l <got.ranges) ranges)"; else
	fail "free ranges differ from the \$Bitmap: $(diff want.ranges got.ranges | head -5)"; fi
ranges_zero x.img want.ranges && fail "no stale data in free space to begin with" || pass "stale data in free space before"

# (b) zerofree on raw, VDI, VMDK
check_fmt() {
	local fmt=$1 img="x.$fmt" before size0 after
	if [ "$fmt" = raw ]; then cp --sparse=always x.img "$img"; else qemu-img convert -O "$fmt" x.img "$img"; fi
	before=$(sha "$img")
	size0=$(stat -c %s "$img")
	jz -n "$img" >n.json || fail "$fmt: -n failed: $(cat n.json)"
	assert_eq "$fmt: -n changes no byte" "$before" "$(sha "$img")"
	jz "$img" >r.json || fail "$fmt: zerofree failed: $(cat r.json)"
	assert_eq "$fmt: filesystem type and label" 'ntfs zfntfs' "$(jq -r '.filesystems[0] | "\(.type) \(.label)"' r.json)"
	assert_eq "$fmt: -n and the run agree" "$(jq -c '[."zeroed-bytes",."released-bytes"]' n.json)" "$(jq -c '[."zeroed-bytes",."released-bytes"]' r.json)"
	[ "$(jq '."zeroed-bytes" + ."released-bytes"' r.json)" -gt 0 ] && pass "$fmt: stale data cleared" || fail "$fmt: nothing cleared"
	assert_eq "$fmt: free bytes = the \$Bitmap's" "$(awk '{ s += $2 } END { print s }' want.ranges)" "$(jq '."free-bytes"' r.json)"
	after=$(stat -c %s "$img")
	[ "$after" -le "$size0" ] && pass "$fmt: file did not grow ($size0 -> $after)" || fail "$fmt: file grew $size0 -> $after"
	qemu-img convert -O raw "$img" y.raw
	ranges_zero y.raw want.ranges && pass "$fmt: every free cluster reads as zeros" || fail "$fmt: stale data left in free space"
	same_files y.raw && pass "$fmt: files identical (ntfscat)" || fail "$fmt: files differ"
	ntfs_ok y.raw && pass "$fmt: ntfsfix -n and ntfsinfo -m accept the volume" || fail "$fmt: ntfsfix -n: $(tail -2 fix.out)"
	before=$(sha "$img")
	jz -n "$img" >n2.json
	assert_eq "$fmt: second -n: nothing to zero or release" "[0,0]" "$(jq -c '[."zeroed-bytes",."released-bytes"]' n2.json)"
	jz "$img" >/dev/null
	assert_eq "$fmt: second run changes no byte" "$before" "$(sha "$img")"
	if [ "$fmt" != raw ]; then
		qemu-img check -q "$img" && pass "$fmt: qemu-img check" || fail "$fmt: qemu-img check"
	fi
	rm -f "$img" y.raw
}
for fmt in raw vdi vmdk; do check_fmt $fmt; done

# compact --fs-aware on a VDI
qemu-img convert -O vdi x.img c.vdi && cp c.vdi p.vdi
"$VDISK" compact -q p.vdi >/dev/null 2>&1
assert_rc "compact --fs-aware" 0 "$VDISK" compact --fs-aware c.vdi
assert_contains "compact --fs-aware names the NTFS" "whole disk: ntfs" "$T/.out"
[ "$(stat -c %s c.vdi)" -lt "$(stat -c %s p.vdi)" ] && pass "compact --fs-aware: smaller than plain compact ($(stat -c %s p.vdi) -> $(stat -c %s c.vdi))" ||
	fail "compact --fs-aware: $(stat -c %s c.vdi) bytes, plain compact $(stat -c %s p.vdi)"
assert_rc "compact --fs-aware: qemu-img check" 0 qemu-img check -q c.vdi
qemu-img convert -O raw c.vdi y.raw
same_files y.raw && pass "compact --fs-aware: files identical" || fail "compact --fs-aware: files differ"
rm -f c.vdi p.vdi y.raw

# (c) in a partition: MBR partition 2, GPT partition 1
in_part() { # LABEL PARTNO SCRIPT
	local label=$1 n=$2 s=$((10 * MiB)) p1
	truncate -s 80M disk.img
	printf '%s' "$3" | sfdisk -q disk.img || { fail "$label: sfdisk"; return; }
	rand_bytes other $((4 * MiB)) | dd of=disk.img bs=1M seek=$(( n == 1 ? 75 : 2 )) conv=notrunc status=none
	dd if=x.img of=disk.img bs=1M seek=10 conv=notrunc,sparse status=none
	qemu-img convert -O vdi disk.img disk.vdi
	p1=$(sha <(dd if=disk.img bs=1M skip=$(( n == 1 ? 75 : 2 )) count=4 status=none))
	awk -v b=$s '{ print $1 + b, $2 }' want.ranges >want2.ranges
	list_ranges --partition "$n" disk.vdi >got2.ranges
	if [ -s got2.ranges ] && cmp -s want2.ranges got2.ranges; then pass "$label: --partition $n: the same ranges, shifted"; else
		fail "$label: --partition $n: ranges differ: $(diff want2.ranges got2.ranges | head -3)"; fi
	jz disk.vdi >p.json || fail "$label: whole-disk zerofree failed: $(cat p.json)"
	jq -e '[.filesystems[].type] | index("ntfs") != null' p.json >/dev/null && pass "$label: the whole-disk walk finds the NTFS" ||
		fail "$label: no ntfs in $(jq -c '[.filesystems[].type]' p.json)"
	qemu-img convert -O raw disk.vdi y.raw
	assert_eq "$label: the other partition untouched" "$p1" "$(sha <(dd if=y.raw bs=1M skip=$(( n == 1 ? 75 : 2 )) count=4 status=none))"
	ranges_zero y.raw want.ranges $s && pass "$label: every free cluster reads as zeros" || fail "$label: stale data left"
	dd if=y.raw of=p.img bs=1M skip=10 count=64 status=none
	same_files p.img && pass "$label: files identical" || fail "$label: files differ"
	rm -f disk.img disk.vdi y.raw p.img
}
in_part mbr 2 $'label: dos\nstart=2048, size=8M, type=83\nstart=20480, size=64M, type=7\n'
in_part gpt 1 $'label: gpt\nstart=20480, size=64M, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\nstart=153600, size=4M\n'

# (d) the dirty flag: set in $VOLUME_INFORMATION of record 3 ($MFT is
# contiguous after mkntfs; the attribute is found by walking the record;
# the flags sit before the record's first fixup position)
u() { od -An -v -j "$2" -N "$3" -tu"$3" "$1" | tr -d ' '; }
cp --sparse=always x.img dirty.img
cs=$(info_val dirty.img "Cluster Size")
rec3=$(($(u dirty.img 48 8) * cs + 3 * 1024))
a=$((rec3 + $(u dirty.img $((rec3 + 20)) 2)))
while [ "$(u dirty.img "$a" 4)" != 112 ] && [ "$(u dirty.img "$a" 4)" != 4294967295 ] && [ $((a - rec3)) -lt 1024 ]; do
	a=$((a + $(u dirty.img $((a + 4)) 4)))
done
flags=$((a + $(u dirty.img $((a + 20)) 2) + 10))
# the same byte in $MFTMirr's copy of record 3, or ntfs-3g refuses the volume
mirr=$((flags - rec3 + $(u dirty.img 56 8) * cs + 3 * 1024))
for o in "$flags" "$mirr"; do printf '\001' | dd of=dirty.img bs=1 seek="$o" conv=notrunc status=none; done
ntfsinfo -m dirty.img >info.out 2>&1
assert_contains "ntfsinfo refuses the dirty volume" "Volume is scheduled for check" info.out
assert_eq "ntfsinfo -f -m: Volume Flags" "0x0001 DIRTY" "$(ntfsinfo -f -m dirty.img 2>/dev/null | sed -n 's/^[[:space:]]*Volume Flags: *//p')"
before=$(sha dirty.img)
assert_rc "dirty: zerofree refused" 1 "$VDISK" zerofree dirty.img
assert_contains "dirty: the message says why" "NTFS volume is marked dirty" "$T/.err"
assert_contains "dirty: the message says what to do" "run chkdsk in Windows (or ntfsfix), or use --force" "$T/.err"
assert_rc "dirty: compact --fs-aware refused" 1 "$VDISK" compact --fs-aware dirty.img
assert_eq "dirty: image unchanged" "$before" "$(sha dirty.img)"
assert_rc "dirty: --force -n walks it" 0 "$VDISK" zerofree -n --force dirty.img
ntfsfix -d dirty.img >/dev/null 2>&1
assert_eq "ntfsfix -d cleared the flag" "0x0000" "$(info_val dirty.img "Volume Flags")"
assert_rc "after ntfsfix -d: accepted" 0 "$VDISK" zerofree -q dirty.img
same_files dirty.img && pass "after ntfsfix -d and zerofree: files identical" || fail "after ntfsfix -d: files differ"

finish
