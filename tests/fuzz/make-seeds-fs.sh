#!/bin/sh
# Seeds for fuzz_fs: small filesystems (64 KiB) made by the real tools, and
# the first 64 KiB of an XFS (the smallest XFS is 300 MiB): superblock,
# AG headers and the first btree blocks.
#   tests/fuzz/make-seeds-fs.sh DIR
set -eu
D=$1
REPO=$(pwd)
mkdir -p "$D"
cd "$D"
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
truncate -s 64K ext2.img && mkfs.ext2 -q -F -N 16 ext2.img >/dev/null 2>&1 || rm -f ext2.img
truncate -s 64K ext4.img && mkfs.ext4 -q -F -b 1024 -N 16 ext4.img >/dev/null 2>&1 || rm -f ext4.img
rm -f fat12.img && mkfs.fat -C fat12.img 64 >/dev/null 2>&1 || rm -f fat12.img
truncate -s 64K swap.img && mkswap swap.img >/dev/null 2>&1 || rm -f swap.img
truncate -s 300M "$t/x" && mkfs.xfs -q "$t/x" 2>/dev/null && head -c 65536 "$t/x" >xfs-head.img || true
# the first 256 KiB of the smallest NTFS mkntfs makes (2 MiB, 512-byte
# clusters): boot sector, $MFT, $Bitmap (total sectors larger than the
# cut, so the fuzzer has to shrink it to get past the boot sector)
truncate -s 2M "$t/n" && mkntfs -F -f -Q -q -c 512 "$t/n" >/dev/null 2>&1 && head -c 262144 "$t/n" >ntfs-head.img || true
# an MBR disk with the ext2 image in partition 1 at sector 8
if [ -f ext2.img ]; then
	truncate -s 68K mbr-ext2.img
	printf 'label: dos\nstart=8, type=83\n' | sfdisk -q mbr-ext2.img >/dev/null 2>&1 &&
		dd if=ext2.img of=mbr-ext2.img bs=512 seek=8 conv=notrunc status=none || rm -f mbr-ext2.img
fi
# a GPT disk (256 KiB) with the ext2 image in partition 1 and an empty one
if [ -f ext2.img ]; then
	truncate -s 256K gpt-ext2.img
	printf 'label: gpt\nstart=64, size=128, name=one\nstart=200, size=100\n' | sfdisk -q gpt-ext2.img >/dev/null 2>&1 &&
		dd if=ext2.img of=gpt-ext2.img bs=512 seek=64 conv=notrunc status=none || rm -f gpt-ext2.img
fi
# the unit tests' hand-built XFS (v4, v5: two AGs, a two-level btree, a
# clean log; 256 KiB, so run with -max_len=270000) and NTFS ($MFT and
# $Bitmap in two runs each, cut to 500 clusters of 512 bytes), and an ext4
# with 8 BLOCK_UNINIT groups and s_log_groups_per_flex 31 (issue 12)
# (run from the top of the tree after make unit-tests)
for u in test_fs test_ntfs test_fs_hostile; do
	if [ -x "$REPO/build/tests/$u" ]; then
		VDISK_FUZZ_SEEDS=$PWD "$REPO/build/tests/$u" >/dev/null 2>&1 || true
	fi
done
ls -la
