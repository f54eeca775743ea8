#!/usr/bin/env bash
# vdisk zerofree and compact --fs-aware on XFS, against xfsprogs and the
# kernel:
#  - a 320 MiB sparse image made by mkfs.xfs (v5, 4 AGs), filled through a
#    loop mount (random files, some deleted: stale data in free space; 600
#    one-block holes in one AG, so its bno btree has two levels)
#  - the free ranges of vdisk zerofree -n --list equal xfs_db's freesp -c -d
#    list (every AG, read from the by-size btree), the deleted data is in them
#  - after vdisk zerofree on raw, VDI and VMDK (qemu-img convert): xfs_repair
#    -n clean, every remaining file identical when mounted, every free range
#    reads as zeros, -n changed nothing, a second run has nothing to do, the
#    file did not grow; VDI/VMDK pass qemu-img check
#  - compact --fs-aware on the VDI: smaller than without, files intact
#  - an MBR disk with XFS in partition 2: --partition 2, offsets shifted,
#    partition 1 untouched
#  - a log left dirty by a shutdown (xfs_repair -n agrees) is refused by
#    zerofree and compact --fs-aware with the image unchanged; after a mount
#    and unmount it is accepted; a v4 filesystem (crc=0) works too
. "$(dirname "$0")/../lib.sh"
need qemu-img mkfs.xfs xfs_db xfs_repair xfs_io losetup mount jq sha256sum sfdisk
[ "$(id -u)" = 0 ] || skip "loop mounts need root"
MiB=$((1 << 20))
cd "$T" || exit 1

sha() { sha256sum "$1" | cut -d' ' -f1; }
jz() { "$VDISK" zerofree -q --output=json "$@"; }

# loop-mount FILE on DIR; the exit hook only detaches loop devices still
# backed by FILE (a number freed here may be reused by someone else)
DEV=
mount_img() { # FILE DIR [losetup options]
	local f=$T/$1 d=$T/$2; shift 2
	DEV=$(losetup -f --show "$@" "$f" 2>/dev/null) || skip "no loop device"
	on_exit "umount $d 2>/dev/null; for l in \$(losetup -n -O NAME -j $f); do losetup -d \$l; done"
	mount "$DEV" "$d" 2>/dev/null || skip "mount not permitted (xfs)"
}
umount_img() { umount "$1"; losetup -d "$DEV"; }

sbval() { xfs_db -r -c "sb 0" -c "p $2" "$1" | sed 's/.* = //'; }
# "AG block" of every block on the AG free lists (flcount entries from
# flfirst, circular)
agfl_blocks() {
	local img=$1 n a
	n=$(sbval "$img" agcount)
	for ((a = 0; a < n; a++)); do
		xfs_db -r -c "agf $a" -c "p flfirst flcount" -c "agfl $a" -c "p bno" "$img" |
			awk -v a=$a '/^flfirst/ { f = $3 } /^flcount/ { c = $3 }
				/^bno\[/ { split($1, r, /[-\]]/); size = r[2] + 1
					for (i = 3; i <= NF; i++) { split($i, kv, ":"); v[kv[1]] = kv[2] } }
				END { for (k = 0; k < c; k++) print a, v[(f + k) % size] }'
	done
}
# free ranges (byte offset, length; adjacent ones merged) from xfs_db's
# by-size btree walk; freesp also lists the AGFL blocks (one block each),
# which are reserved for btree growth and not free for vdisk
xfs_db_ranges() {
	local img=$1 bs agb
	bs=$(sbval "$img" blocksize)
	agb=$(sbval "$img" agblocks)
	agfl_blocks "$img" >agfl.txt
	[ -s agfl.txt ] || fail "$img: no AGFL blocks found (xfs_db output changed?)"
	xfs_db -r -c "freesp -c -d" "$img" |
		awk 'NR == FNR { x[$1 " " $2] = 1; next } $1 ~ /^[0-9]+$/ && NF == 3 && !($3 == 1 && ($1 " " $2) in x)' agfl.txt - |
		awk -v bs="$bs" -v agb="$agb" '{ print ($1 * agb + $2) * bs, $3 * bs }' | sort -n |
		awk '{ if (n && $1 == pe) pe += $2; else { if (n) print ps, pe - ps; ps = $1; pe = $1 + $2; n = 1 } } END { if (n) print ps, pe - ps }'
}
list_ranges() { "$VDISK" zerofree -n -q --list "$@" 2>/dev/null | sed -n 's/^free \([0-9]*\) \([0-9]*\)$/\1 \2/p'; }
# ranges_zero FILE RANGES [BASE]: 0 if every range reads as zeros
ranges_zero() {
	local off len
	while read -r off len; do
		cmp -s -n "$len" <(tail -c +$((off + ${3:-0} + 1)) "$1") /dev/zero || return 1
	done <"$2"
	return 0
}

# ---- build: files written through the kernel, some deleted ----
truncate -s 320M x.img
mkfs.xfs -q -f -L zfxfs x.img >/dev/null 2>&1 || { fail "mkfs.xfs failed"; finish; }
fallocate -d x.img # mkfs wrote the 64 MiB log as zeros
mkdir -p mnt
mount_img x.img mnt
for i in 1 2 3 4 5 6 7 8; do rand_bytes "xfs$i" $((3 * MiB)) >mnt/f$i; done
mkdir mnt/d && rand_bytes xsmall 7000 >mnt/d/small && rand_bytes xmid 300000 >mnt/d/mid
# 1200 one-block files, every other one deleted: more free extents in
# one AG than a leaf holds, so that AG's bno btree gets a second level
mkdir mnt/frag && rand_bytes frag $((1200 * 4096)) | split -b 4096 -a 4 -d - mnt/frag/p
sync
rm mnt/f2 mnt/f3 mnt/f5 mnt/f8 mnt/frag/p*[13579]
(cd mnt && sha256sum f1 f4 f6 f7 d/small d/mid frag/*) >sums
umount_img mnt

# (a) the free list, against xfs_db
xfs_db_ranges x.img >want.ranges
list_ranges x.img >got.ranges
if [ -s want.ranges ] && cmp -s want.ranges got.ranges; then pass "free ranges identical to xfs_db freesp -c -d ($(wc -l <got.ranges) ranges)"; else
	fail "free ranges differ from xfs_db: $(diff want.ranges got.ranges | head -5)"; fi
agcount=$(sbval x.img agcount)
[ "$agcount" -gt 1 ] && pass "the filesystem has $agcount AGs" || fail "only $agcount AG"
levels=$(for ((a = 0; a < agcount; a++)); do xfs_db -r -c "agf $a" -c "p levels" x.img; done | sed -n 's/^levels\[.*\] = 0:\([0-9]*\) .*/\1/p' | sort -n | tail -1)
[ "${levels:-0}" -ge 2 ] && pass "a bno btree of $levels levels" || fail "no multi-level bno btree (levels '$levels')"
ranges_zero x.img want.ranges && fail "no stale data in free space to begin with" || pass "stale data in free space before"

# (b) zerofree on raw, VDI, VMDK
check_fmt() {
	local fmt=$1 img="x.$fmt" before size0 after
	if [ "$fmt" = raw ]; then cp --sparse=always x.img "$img"; else qemu-img convert -O "$fmt" x.img "$img"; fi
	before=$(sha "$img")
	size0=$(stat -c %s "$img")
	jz -n "$img" >n.json || fail "$fmt: -n failed: $(cat n.json)"
	assert_eq "$fmt: -n changes no byte" "$before" "$(sha "$img")"
	[ "$(jq '."zeroed-bytes" + ."released-bytes"' n.json)" -gt 0 ] && pass "$fmt: -n finds stale data to clear" ||
		fail "$fmt: -n finds nothing to do"
	jz "$img" >r.json || fail "$fmt: zerofree failed: $(cat r.json)"
	assert_eq "$fmt: filesystem type" xfs "$(jq -r '.filesystems[0].type' r.json)"
	assert_eq "$fmt: -n and the run agree" "$(jq -c '[."zeroed-bytes",."released-bytes"]' n.json)" "$(jq -c '[."zeroed-bytes",."released-bytes"]' r.json)"
	assert_eq "$fmt: free bytes = xfs_db's" "$(awk '{ s += $2 } END { print s }' want.ranges)" "$(jq '."free-bytes"' r.json)"
	after=$(stat -c %s "$img")
	[ "$after" -le "$size0" ] && pass "$fmt: file did not grow ($size0 -> $after)" || fail "$fmt: file grew $size0 -> $after"
	qemu-img convert -O raw "$img" y.raw
	if xfs_repair -n -f y.raw >repair.out 2>&1; then pass "$fmt: xfs_repair -n clean"; else fail "$fmt: xfs_repair -n: $(tail -3 repair.out)"; fi
	ranges_zero y.raw want.ranges && pass "$fmt: every free range reads as zeros" || fail "$fmt: stale data left in free space"
	mount_img y.raw mnt -r
	(cd mnt && sha256sum -c --quiet ../sums) && pass "$fmt: remaining files identical when mounted" || fail "$fmt: files differ when mounted"
	umount_img mnt
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
assert_rc "compact --fs-aware" 0 "$VDISK" compact --fs-aware --output=json c.vdi
assert_contains "compact --fs-aware names the XFS" "whole disk: xfs" "$T/.out"
[ "$(stat -c %s c.vdi)" -lt "$(stat -c %s p.vdi)" ] && pass "compact --fs-aware: smaller than plain compact ($(stat -c %s p.vdi) -> $(stat -c %s c.vdi))" ||
	fail "compact --fs-aware: $(stat -c %s c.vdi) bytes, plain compact $(stat -c %s p.vdi)"
assert_rc "compact --fs-aware: qemu-img check" 0 qemu-img check -q c.vdi
qemu-img convert -O raw c.vdi y.raw
if xfs_repair -n -f y.raw >repair.out 2>&1; then pass "compact --fs-aware: xfs_repair -n clean"; else fail "compact --fs-aware: xfs_repair: $(tail -3 repair.out)"; fi
mount_img y.raw mnt -r
(cd mnt && sha256sum -c --quiet ../sums) && pass "compact --fs-aware: files identical when mounted" || fail "compact --fs-aware: files differ"
umount_img mnt
rm -f c.vdi p.vdi y.raw

# (c) an MBR disk: partition 1 random data, XFS in partition 2
truncate -s 340M disk.img
printf 'label: dos\n,8M,83\n,,83\n' | sfdisk -q disk.img
s2=$(((2048 + 16384) * 512))
rand_bytes part1 $((8 * MiB)) | dd of=disk.img bs=1M seek=1 conv=notrunc status=none
dd if=x.img of=disk.img bs=1M seek=$((s2 / MiB)) conv=notrunc,sparse status=none
qemu-img convert -O vdi disk.img disk.vdi
p1=$(sha <(dd if=disk.img bs=1M skip=1 count=8 status=none))
awk -v b=$s2 '{ print $1 + b, $2 }' got.ranges >want2.ranges
list_ranges --partition 2 disk.vdi >got2.ranges
if cmp -s want2.ranges got2.ranges; then pass "--partition 2: the same ranges, shifted by the partition offset"; else
	fail "--partition 2: ranges differ: $(diff want2.ranges got2.ranges | head -3)"; fi
jz --partition 2 disk.vdi >p.json || fail "--partition 2: zerofree failed: $(cat p.json)"
assert_eq "--partition 2: xfs" xfs "$(jq -r '.filesystems[0].type' p.json)"
qemu-img convert -O raw disk.vdi y.raw
assert_eq "partition 1 untouched" "$p1" "$(sha <(dd if=y.raw bs=1M skip=1 count=8 status=none))"
ranges_zero y.raw want.ranges $s2 && pass "partition 2: every free range reads as zeros" || fail "partition 2: stale data left"
dd if=y.raw of=p2.img bs=1M skip=$((s2 / MiB)) status=none
if xfs_repair -n -f p2.img >repair.out 2>&1; then pass "partition 2: xfs_repair -n clean"; else fail "partition 2: xfs_repair: $(tail -3 repair.out)"; fi
mount_img y.raw mnt -r -o "$s2" --sizelimit $((320 * MiB))
(cd mnt && sha256sum -c --quiet ../sums) && pass "partition 2: files identical when mounted" || fail "partition 2: files differ"
umount_img mnt
jz disk.vdi >all.json || fail "whole MBR disk: zerofree failed"
assert_eq "whole MBR disk: partition 1 left alone, partition 2 walked" '[true,"xfs"]' \
	"$(jq -c '[.filesystems[0].skipped,.filesystems[1].type]' all.json)"
rm -f disk.img disk.vdi y.raw p2.img

# (d) a dirty log: the filesystem shut down while mounted
cp --sparse=always x.img dirty.img
mount_img dirty.img mnt
rand_bytes late $((2 * MiB)) >mnt/late
rm mnt/f1
sync
xfs_io -x -c "shutdown -f" mnt
umount_img mnt
rc=0; xfs_repair -n -f dirty.img >repair.out 2>&1 || rc=$?
[ $rc != 0 ] && grep -q "log" repair.out && pass "xfs_repair -n: the log needs replaying (exit $rc)" ||
	fail "xfs_repair -n does not see a dirty log (exit $rc): $(tail -2 repair.out)"
before=$(sha dirty.img)
assert_rc "dirty log: zerofree refused" 1 "$VDISK" zerofree dirty.img
assert_contains "dirty log: the message says why" "XFS log needs recovery: mount and unmount the filesystem, or run xfs_repair" "$T/.err"
assert_rc "dirty log: compact --fs-aware refused" 1 "$VDISK" compact --fs-aware dirty.img
assert_eq "dirty log: image unchanged" "$before" "$(sha dirty.img)"
assert_rc "dirty log: --force -n walks it" 0 "$VDISK" zerofree -n --force dirty.img
mount_img dirty.img mnt
umount_img mnt
assert_rc "after log recovery (mount, unmount): accepted" 0 "$VDISK" zerofree -q dirty.img
if xfs_repair -n -f dirty.img >repair.out 2>&1; then pass "after recovery and zerofree: xfs_repair -n clean"; else fail "after recovery: xfs_repair: $(tail -3 repair.out)"; fi
rm -f dirty.img

# a v4 filesystem (no CRCs)
truncate -s 320M v4.img
if mkfs.xfs -q -f -m crc=0 -d agcount=2 v4.img >/dev/null 2>&1; then
	xfs_db_ranges v4.img >want4.ranges
	list_ranges v4.img >got4.ranges
	if [ -s want4.ranges ] && cmp -s want4.ranges got4.ranges; then pass "v4: free ranges identical to xfs_db"; else
		fail "v4: free ranges differ: $(diff want4.ranges got4.ranges | head -3)"; fi
else
	echo "SKIP: v4 (mkfs.xfs -m crc=0 refused)"
fi

finish
