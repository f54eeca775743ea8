#!/usr/bin/env bash
# vdisk zerofree against independent tools:
#  - ext4 (1 KiB blocks, flex_bg, uninit groups), ext2, 64-bit ext4 with
#    4 KiB blocks and 4 groups: filled through a loop mount, some files
#    deleted (stale random data in free space), exported to VDI and VMDK by
#    qemu-img; after vdisk zerofree on raw, VDI and VMDK: e2fsck -fn clean,
#    every remaining file byte-identical (debugfs cat, and a loop mount),
#    Debian's zerofree -n finds no non-zero free block (it found some
#    before), the image file did not grow, host space shrank, qemu-img
#    convert of it is smaller than of the original; -n changed no byte, a
#    second run has nothing to zero or release
#  - the free-block list matches dumpe2fs's
#  - FAT16 and FAT32 (mkfs.vfat + mtools): fsck.fat -n clean, files intact
#    (mtype), the clusters of a deleted file (mshowfat) read as zeros
#  - an MBR disk (sfdisk) with ext4, swap and unknown content: --partition,
#    swap pages after the header zeroed with the header intact, the
#    unknown partition reported and left alone
#  - refusals: mounted image, image locked by another process, journal
#    needing recovery (image unchanged)
. "$(dirname "$0")/../lib.sh"
need qemu-img mkfs.ext4 mkfs.ext2 e2fsck debugfs dumpe2fs zerofree losetup mount jq sha256sum
[ "$(id -u)" = 0 ] || skip "loop mounts need root"
MiB=$((1 << 20))
cd "$T" || exit 1

sha() { sha256sum "$1" | cut -d' ' -f1; }
du_bytes() { echo $(($(stat -c %b "$1") * 512)); }
# Debian zerofree: "nonzero/free/total" on its last progress line
nonzero_free() { zerofree -n -v "$1" 2>&1 | tr '\r' '\n' | grep -E '^[0-9]+/[0-9]+/[0-9]+$' | tail -1 | cut -d/ -f1; }
jz() { "$VDISK" zerofree -q --output=json "$@"; }

# loop-mount FILE on DIR (skips the group when loop devices are missing)
DEV=
mount_img() {
	DEV=$(losetup -f --show "$1" 2>/dev/null) || skip "no loop device"
	on_exit "umount $2 2>/dev/null; losetup -d $DEV 2>/dev/null"
	mount "$DEV" "$2" 2>/dev/null || skip "mount not permitted"
}
umount_img() { umount "$1"; losetup -d "$DEV"; }

# build_ext NAME MKFS-COMMAND...: a 48 MiB filesystem with 8 files of
# 2.5 MiB, 4 of them deleted; their checksums in NAME.sums
build_ext() {
	local name=$1; shift
	truncate -s 48M "$name.img"
	"$@" "$name.img" >/dev/null 2>&1 || { fail "$name: mkfs failed"; return 1; }
	mkdir -p mnt
	mount_img "$name.img" mnt
	for i in 1 2 3 4 5 6 7 8; do rand_bytes "$name$i" $((5 * MiB / 2)) >mnt/f$i; done
	mkdir mnt/d && rand_bytes "${name}small" 7000 >mnt/d/small
	sync
	rm mnt/f2 mnt/f3 mnt/f5 mnt/f8
	(cd mnt && sha256sum f1 f4 f6 f7 d/small) >"$name.sums"
	umount_img mnt
}

# files_ok WHAT RAW SUMS: every file listed in SUMS, read by debugfs
files_ok() {
	local what=$1 raw=$2 sums=$3 f want bad=0
	while read -r want f; do
		[ "$(debugfs -R "cat /$f" "$raw" 2>/dev/null | sha256sum | cut -d' ' -f1)" = "$want" ] || bad=1
	done <"$sums"
	[ $bad = 0 ] && pass "$what: remaining files identical (debugfs)" || fail "$what: a file changed"
}

# check_ext NAME FMT: run vdisk zerofree on NAME converted to FMT, check
check_ext() {
	local name=$1 fmt=$2 before after j
	local img="$name.$fmt"
	if [ "$fmt" = raw ]; then cp --sparse=always "$name.img" "$img"; else qemu-img convert -O "$fmt" "$name.img" "$img"; fi
	qemu-img convert -O "$fmt" "$img" "$img.qemu"   # what qemu-img makes of it before
	before=$(sha "$img")
	local size0 du0
	size0=$(stat -c %s "$img")
	du0=$(du_bytes "$img")
	jz -n "$img" >n.json || fail "$name/$fmt: -n failed"
	assert_eq "$name/$fmt: -n changes no byte" "$before" "$(sha "$img")"
	[ "$(jq '."zeroed-bytes" + ."released-bytes"' n.json)" -gt 0 ] && pass "$name/$fmt: -n finds stale data to clear" ||
		fail "$name/$fmt: -n finds nothing to do on a filesystem with deleted files"
	jz "$img" >r.json || fail "$name/$fmt: zerofree failed: $(cat r.json)"
	assert_eq "$name/$fmt: free bytes = dumpe2fs free blocks" \
		"$(($(dumpe2fs -h "$name.img" 2>/dev/null | sed -n 's/^Free blocks: *//p') * $(dumpe2fs -h "$name.img" 2>/dev/null | sed -n 's/^Block size: *//p')))" \
		"$(jq '."free-bytes"' r.json)"
	assert_eq "$name/$fmt: -n and the run agree" "$(jq -c '[."zeroed-bytes",."released-bytes"]' n.json)" "$(jq -c '[."zeroed-bytes",."released-bytes"]' r.json)"
	qemu-img convert -O raw "$img" x.raw
	if e2fsck -fn x.raw >fsck.out 2>&1; then pass "$name/$fmt: e2fsck -fn clean"; else fail "$name/$fmt: e2fsck: $(tail -3 fsck.out)"; fi
	assert_eq "$name/$fmt: Debian zerofree -n: no non-zero free blocks" 0 "$(nonzero_free x.raw)"
	files_ok "$name/$fmt" x.raw "$name.sums"
	after=$(stat -c %s "$img")
	[ "$after" -le "$size0" ] && pass "$name/$fmt: file did not grow" || fail "$name/$fmt: file grew $size0 -> $after"
	[ "$(du_bytes "$img")" -lt "$du0" ] && pass "$name/$fmt: host space shrank ($du0 -> $(du_bytes "$img"))" ||
		fail "$name/$fmt: host space $du0 -> $(du_bytes "$img")"
	qemu-img convert -O "$fmt" "$img" "$img.after"
	local q0 q1 # raw: allocated bytes (the apparent size is fixed)
	if [ "$fmt" = raw ]; then q0=$(du_bytes "$img.qemu") q1=$(du_bytes "$img.after"); else q0=$(stat -c %s "$img.qemu") q1=$(stat -c %s "$img.after"); fi
	[ "$q1" -lt "$q0" ] && pass "$name/$fmt: qemu-img convert gives a smaller file than before ($q0 -> $q1)" ||
		fail "$name/$fmt: qemu-img convert: $q0 -> $q1"
	before=$(sha "$img")
	jz -n "$img" >n2.json
	assert_eq "$name/$fmt: second -n: nothing to zero or release" "[0,0]" "$(jq -c '[."zeroed-bytes",."released-bytes"]' n2.json)"
	jz "$img" >r2.json
	assert_eq "$name/$fmt: second run changes no byte" "$before" "$(sha "$img")"
	if [ "$fmt" = vdi ]; then
		# released slots were filled from the end and the file shortened
		[ "$after" -lt "$size0" ] && pass "$name/$fmt: file shortened ($size0 -> $after)" ||
			fail "$name/$fmt: released blocks but the file stayed $after bytes"
		assert_eq "$name/$fmt: reported file size after" "$after" "$(jq '."file-size-after"' r.json)"
		"$VDISK" check "$img" >chk.out 2>&1 && pass "$name/$fmt: vdisk check: no leak left" ||
			fail "$name/$fmt: vdisk check: $(cat chk.out)"
	fi
	if [ "$fmt" != raw ]; then
		qemu-img check -q "$img" && pass "$name/$fmt: qemu-img check" || fail "$name/$fmt: qemu-img check"
	fi
	rm -f "$img" "$img.qemu" "$img.after" x.raw
}

# ---- ext4, 1 KiB blocks (8 groups, flex_bg, BLOCK_UNINIT) ----
build_ext e4 mkfs.ext4 -q -F
# the free list itself, against dumpe2fs (byte ranges, merged)
dumpe2fs e4.img 2>/dev/null | sed -n 's/^  Free blocks: //p' | tr ',' '\n' | sed 's/ //g; /^$/d' |
	awk -F- '{ s=$1; e=($2==""?$1:$2); if (n && s==pe+1) pe=e; else { if (n) print ps*1024, (pe-ps+1)*1024; ps=s; pe=e; n=1 } } END { if (n) print ps*1024, (pe-ps+1)*1024 }' >want.ranges
"$VDISK" zerofree -n -q --list e4.img 2>/dev/null | sed -n 's/^free \([0-9]*\) \([0-9]*\)$/\1 \2/p' >got.ranges
if [ -s want.ranges ] && cmp -s want.ranges got.ranges; then pass "ext4: free ranges identical to dumpe2fs ($(wc -l <got.ranges) ranges)"; else
	fail "ext4: free ranges differ from dumpe2fs: $(diff want.ranges got.ranges | head -5)"; fi
[ "$(nonzero_free e4.img)" -gt 0 ] && pass "ext4: Debian zerofree sees stale data before" || fail "ext4: no stale data to begin with"
for fmt in raw vdi vmdk; do check_ext e4 $fmt; done

# a loop mount of the zerofree'd VDI's export: files as the kernel sees them
qemu-img convert -O vdi e4.img m.vdi && "$VDISK" zerofree -q m.vdi >/dev/null && qemu-img convert -O raw m.vdi m.raw
mount_img m.raw mnt
(cd mnt && sha256sum -c --quiet ../e4.sums) && pass "ext4/vdi: files identical when mounted" || fail "ext4/vdi: files differ when mounted"
umount_img mnt
# VDI: the slots of released blocks are reclaimed before zerofree returns
assert_rc "ext4/vdi: vdisk check clean right after zerofree" 0 "$VDISK" check m.vdi
assert_rc "ext4/vdi: qemu-img check clean right after zerofree" 0 qemu-img check -q m.vdi
rm -f m.vdi m.raw

# one run reaches the fixed point (issue 12, defect 15): images written by
# vdisk convert keep host holes inside allocated blocks; a whole free block
# split by such a hole was zeroed instead of released, reclaim then moved
# it (filling the hole) and the second run released it
for fmt in vdi vmdk; do
	rm -f fp.$fmt
	"$VDISK" convert -q -O $fmt e4.img fp.$fmt || fail "fixed point/$fmt: convert failed"
	jz fp.$fmt >fp1.json || fail "fixed point/$fmt: first run failed"
	[ "$(jq '."released-bytes"' fp1.json)" -gt 0 ] && pass "fixed point/$fmt: the first run releases blocks" ||
		fail "fixed point/$fmt: the first run released nothing"
	assert_eq "fixed point/$fmt: free = zero + zeroed + released" "$(jq '."free-bytes"' fp1.json)" \
		"$(jq '."zero-bytes" + ."zeroed-bytes" + ."released-bytes"' fp1.json)"
	before=$(sha fp.$fmt)
	jz fp.$fmt >fp2.json || fail "fixed point/$fmt: second run failed"
	assert_eq "fixed point/$fmt: second run: 0 zeroed, 0 released" "[0,0,0]" \
		"$(jq -c '[."zeroed-bytes",."released-bytes",."released-blocks"]' fp2.json)"
	assert_eq "fixed point/$fmt: second run changes no byte" "$before" "$(sha fp.$fmt)"
	qemu-img convert -O raw fp.$fmt fp.raw
	files_ok "fixed point/$fmt" fp.raw e4.sums
	rm -f fp.$fmt fp.raw
done

# ---- ext2, and 64-bit ext4 with 4 KiB blocks in 4 groups ----
build_ext e2 mkfs.ext2 -q -F
check_ext e2 vdi
build_ext e64 mkfs.ext4 -q -F -b 4096 -g 4096 -O 64bit,flex_bg -G 4
check_ext e64 vmdk
rm -f e2.img e64.img

# ---- refusals ----
mkdir -p mnt
cp --sparse=always e4.img busy.img
mount_img busy.img mnt
assert_rc "mounted image refused" 1 "$VDISK" zerofree busy.img
assert_contains "the message names the loop device and the mount point" "is mounted on $T/mnt" "$T/.err"
umount_img mnt
(flock -x 9; touch locked; sleep 5) 9<busy.img &
lockpid=$!
for _ in $(seq 50); do [ -e locked ] && break; sleep 0.1; done
assert_rc "image locked by another process refused" 1 "$VDISK" zerofree busy.img
assert_contains "the message says why" "in use by another vdisk process" "$T/.err"
kill "$lockpid" 2>/dev/null; wait "$lockpid" 2>/dev/null
debugfs -w -R "feature needs_recovery" busy.img >/dev/null 2>&1
before=$(sha busy.img)
assert_rc "journal needing recovery refused" 1 "$VDISK" zerofree busy.img
assert_contains "the message says so" "needs journal recovery" "$T/.err"
assert_eq "refused image unchanged" "$before" "$(sha busy.img)"
rm -f busy.img

# ---- FAT16, FAT32 ----
if command -v mkfs.vfat >/dev/null && command -v mcopy >/dev/null && command -v fsck.fat >/dev/null; then
	for bits in 16 32; do
		f=fat$bits.img
		truncate -s 64M $f
		mkfs.vfat -F $bits -n ZF$bits $f >/dev/null
		for i in 1 2 3 4; do rand_bytes "fat$bits$i" $((3 * MiB)) >h$i; mcopy -i $f h$i ::h$i; done
		# where the clusters of h2 are: "<3-1538>" runs; sector offsets from the BPB
		chain=$(mshowfat -i $f ::h2 | grep -o '<[^>]*>' | tr -d '<>' | tr ' ' '\n' | sed '/^$/d')
		mdel -i $f ::h2
		qemu-img convert -O vdi $f $f.vdi
		"$VDISK" zerofree -q $f.vdi >/dev/null || fail "fat$bits: zerofree failed"
		qemu-img convert -O raw $f.vdi x.raw
		fsck.fat -n x.raw >fsck.out 2>&1 && pass "fat$bits: fsck.fat -n clean" || fail "fat$bits: fsck.fat: $(tail -3 fsck.out)"
		ok=1
		for i in 1 3 4; do mtype -i x.raw ::h$i >got; cmp -s got h$i || ok=0; done
		[ $ok = 1 ] && pass "fat$bits: remaining files identical (mtype)" || fail "fat$bits: a file changed"
		# data area start and cluster size from the BPB
		bps=$(od -An -tu2 -j11 -N2 x.raw | tr -d ' ')
		spc=$(od -An -tu1 -j13 -N1 x.raw | tr -d ' ')
		rsvd=$(od -An -tu2 -j14 -N2 x.raw | tr -d ' ')
		nf=$(od -An -tu1 -j16 -N1 x.raw | tr -d ' ')
		re=$(od -An -tu2 -j17 -N2 x.raw | tr -d ' ')
		fsz=$(od -An -tu2 -j22 -N2 x.raw | tr -d ' ')
		[ "$fsz" = 0 ] && fsz=$(od -An -tu4 -j36 -N4 x.raw | tr -d ' ')
		data=$(((rsvd + nf * fsz + (re * 32 + bps - 1) / bps) * bps))
		cl=$((bps * spc)) zero=1 stale=1
		for run in $chain; do
			a=${run%-*} b=${run#*-}
			off=$((data + (a - 2) * cl)) len=$(((b - a + 1) * cl))
			cmp -s -n $len <(tail -c +$((off + 1)) x.raw) /dev/zero || zero=0
			cmp -s -n $len <(tail -c +$((off + 1)) $f) /dev/zero && stale=0
		done
		[ -n "$chain" ] && [ $stale = 1 ] && [ $zero = 1 ] &&
			pass "fat$bits: the deleted file's clusters ($chain) read as zeros" ||
			fail "fat$bits: deleted clusters '$chain': stale before=$stale, zero after=$zero"
		rm -f $f $f.vdi x.raw
	done
else
	echo "SKIP: FAT part (dosfstools/mtools missing)"
fi

# ---- MBR disk: ext4, swap, unknown ----
if command -v sfdisk >/dev/null && command -v mkswap >/dev/null; then
	truncate -s 80M disk.img
	printf 'label: dos\n,48M,83\n,16M,82\n,,da\n' | sfdisk -q disk.img
	s1=$((2048 * 512)) s2=$(((2048 + 98304) * 512)) s3=$(((2048 + 98304 + 32768) * 512))
	dd if=e4.img of=disk.img bs=1M seek=1 conv=notrunc,sparse status=none
	rand_bytes swap $((16 * MiB)) | dd of=disk.img bs=1M seek=$((s2 / MiB)) conv=notrunc status=none
	dd if=disk.img of=sw.img bs=1M skip=$((s2 / MiB)) count=16 status=none
	mkswap -L zfswap sw.img >/dev/null 2>&1
	dd if=sw.img of=disk.img bs=1M seek=$((s2 / MiB)) conv=notrunc status=none
	rand_bytes other $((15 * MiB)) | dd of=disk.img bs=1M seek=$((s3 / MiB)) conv=notrunc status=none
	qemu-img convert -O vdi disk.img disk.vdi
	p3=$(tail -c +$((s3 + 1)) disk.img | sha256sum | cut -d' ' -f1)
	jz --partition 2 -n disk.vdi >p.json
	assert_eq "--partition 2: only the swap partition" '["swap"]' "$(jq -c '[.filesystems[].type]' p.json)"
	assert_eq "swap: free = everything after the first page" $((16 * MiB - 4096)) "$(jq '."free-bytes"' p.json)"
	jz disk.vdi >all.json || fail "MBR disk: zerofree failed"
	assert_eq "MBR disk: ext4 and swap walked, partition 3 left alone" '["ext4","swap",true]' \
		"$(jq -c '[.filesystems[0].type,.filesystems[1].type,.filesystems[2].skipped]' all.json)"
	qemu-img convert -O raw disk.vdi x.raw
	dd if=x.raw of=sw2.img bs=1M skip=$((s2 / MiB)) count=16 status=none
	cmp -s -n 4096 sw.img sw2.img && pass "swap: header page intact" || fail "swap: header page changed"
	cmp -s -n $((16 * MiB - 4096)) <(tail -c +4097 sw2.img) /dev/zero && pass "swap: pages after the header read as zeros" ||
		fail "swap: stale data left after the header"
	[ "$(blkid -o value -s LABEL sw2.img 2>/dev/null)" = zfswap ] && pass "swap: blkid still finds the label" ||
		fail "swap: blkid label '$(blkid -o value -s LABEL sw2.img 2>/dev/null)'"
	assert_eq "partition 3 (unknown content) untouched" "$p3" "$(tail -c +$((s3 + 1)) x.raw | sha256sum | cut -d' ' -f1)"
	dd if=x.raw of=p1.img bs=1M skip=1 count=48 status=none
	e2fsck -fn p1.img >/dev/null 2>&1 && pass "partition 1: e2fsck -fn clean" || fail "partition 1: e2fsck"
	assert_eq "partition 1: Debian zerofree -n: no non-zero free blocks" 0 "$(nonzero_free p1.img)"
	files_ok "partition 1" p1.img e4.sums
	jz --partition 1 -n disk.vdi >p1.json
	assert_eq "--partition 1 -n after the run: nothing to do" "[0,0]" "$(jq -c '[."zeroed-bytes",."released-bytes"]' p1.json)"
	assert_rc "--partition 3 (unknown content) is an error" 1 "$VDISK" zerofree --partition 3 disk.vdi
	assert_rc "--partition 9 (missing) is an error" 1 "$VDISK" zerofree --partition 9 disk.vdi
fi

finish
