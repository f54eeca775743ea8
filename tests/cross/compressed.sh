#!/usr/bin/env bash
# Compressed and streamed sources (issue 18) and the libdeflate grain path:
#  - an image compressed by the real tool (xz -T0, zstd, gzip, bzip2)
#    converts to raw byte for byte equal to the tool's decompression, as
#    sparse as the uncompressed source;
#  - truncated and corrupted archives: a clear error naming the container
#    and offset, and no output (nor temporary file) left;
#  - compare and create --part read compressed images and standard input
#    (gzip and bzip2 spooled, nothing left behind); devcopy --verify of a
#    stream checks the device against the digest of the first pass;
#  - standard input equals the file; --size and the container's size must
#    agree with the stream; --source-offset/--source-size windows;
#  - streamOptimized output at every compression level passes qemu-img
#    check and compare, is no larger than qemu-img's at the default level,
#    and vdisk reads qemu-img's (zlib) streams byte for byte.
. "$(dirname "$0")/../lib.sh"
need xz zstd gzip bzip2 qemu-img

# a guest-like raw disk: text, random data, zeros between
G=$T/guest.raw
truncate -s 24M "$G"
for i in $(seq 1 3000); do echo "line $i: the quick brown fox jumps over the lazy dog"; done |
	dd of="$G" bs=1M seek=1 conv=notrunc status=none
head -c $((3 << 20)) /dev/urandom | dd of="$G" bs=1M seek=8 conv=notrunc status=none
printf 'last sector' | dd of="$G" bs=1 seek=$((24 * 1048576 - 512)) conv=notrunc status=none
blocks() { stat -c %b "$1"; }
gblocks=$(blocks "$G")

declare -A EXT=([xz]=xz [zstd]=zst [gzip]=gz [bzip2]=bz2)
declare -A ZIP=([xz]="xz -T0 -c" [zstd]="zstd -q -c" [gzip]="gzip -c" [bzip2]="bzip2 -c")
for z in xz zstd gzip bzip2; do
	f=$T/guest.raw.${EXT[$z]}
	${ZIP[$z]} "$G" >"$f"
	$z -dc "$f" >"$T/tool.raw"
	assert_rc "$z: convert -O raw" 0 "$VDISK" convert -q -O raw "$f" "$T/$z.raw"
	if cmp -s "$T/tool.raw" "$T/$z.raw"; then pass "$z: equals $z -dc"; else fail "$z: differs from $z -dc"; fi
	b=$(blocks "$T/$z.raw")
	if [ "$b" -le $((gblocks + 64)) ]; then pass "$z: output sparse ($b blocks, source $gblocks)"
	else fail "$z: output has $b blocks, the sparse source $gblocks"; fi
	assert_rc "$z: convert -O vdi" 0 "$VDISK" convert -q -O vdi "$f" "$T/$z.vdi"
	assert_rc "$z: vdi holds the disk" 0 qemu-img compare -q "$T/tool.raw" "$T/$z.vdi"

	# truncated: half the archive
	s=$(stat -c %s "$f")
	head -c $((s / 2)) "$f" >"$T/trunc.$z"
	assert_rc "$z: truncated refused" 1 "$VDISK" convert -q -O vdi "$T/trunc.$z" "$T/out-t.vdi"
	assert_contains "$z: truncated names the container" "$z data ends early at compressed byte" "$T/.err"
	# corrupted: bytes overwritten in the middle
	cp "$f" "$T/bad.$z"
	printf '\x55\xaa\x55\xaa\x55\xaa\x55\xaa' | dd of="$T/bad.$z" bs=1 seek=$((s / 2)) conv=notrunc status=none
	assert_rc "$z: corrupt refused" 1 "$VDISK" convert -q -O raw "$T/bad.$z" "$T/out-c.raw"
	assert_contains "$z: corrupt names the container" "$z data" "$T/.err"
	for o in "$T/out-t.vdi" "$T/out-c.raw"; do
		if [ -e "$o" ]; then fail "$z: $(basename "$o") left after an error"; rm -f "$o"; fi
	done
	left=$(find "$T" -name '*vdisk-tmp*' | wc -l)
	assert_eq "$z: no temporary file left" 0 "$left"
done

# standard input: compressed (size only at the end: spooled) and raw
gzip -c "$G" >"$T/g.gz"
assert_rc "file -> vdi" 0 "$VDISK" convert -q -O vdi "$T/g.gz" "$T/file.vdi"
assert_rc "stdin -> vdi" 0 bash -c 'cat "$1" | "$2" convert -q -O vdi - "$3"' _ "$T/g.gz" "$VDISK" "$T/pipe.vdi"
assert_rc "stdin equals the file" 0 "$VDISK" compare "$T/file.vdi" "$T/pipe.vdi"
assert_rc "stdin vdi holds the disk" 0 qemu-img compare -q "$G" "$T/pipe.vdi"
assert_rc "raw stdin -> raw" 0 bash -c 'cat "$1" | "$2" convert -q -O raw - "$3"' _ "$G" "$VDISK" "$T/pipe.raw"
if cmp -s "$G" "$T/pipe.raw"; then pass "raw stdin copied"; else fail "raw stdin copy differs"; fi
b=$(blocks "$T/pipe.raw")
if [ "$b" -le $((gblocks + 64)) ]; then pass "raw stdin output sparse"; else fail "raw stdin output has $b blocks"; fi
left=$(find "$T" -name '*vdisk-tmp*' | wc -l)
assert_eq "no spool file left" 0 "$left"
# --size: must match the stream
sz=$(stat -c %s "$G")
assert_rc "--size matching" 0 bash -c 'bzip2 -c <"$1" | "$2" convert -q -O raw --size "$3" - "$4"' _ "$G" "$VDISK" "$sz" "$T/s.raw"
if cmp -s "$G" "$T/s.raw"; then pass "--size copy"; else fail "--size copy differs"; fi
assert_rc "--size too small" 1 bash -c 'bzip2 -c <"$1" | "$2" convert -q -O raw --size "$3" - "$4"' _ "$G" "$VDISK" $((sz - 512)) "$T/s2.raw"
assert_contains "--size too small says so" "holds more than the $((sz - 512)) bytes --size says" "$T/.err"
assert_rc "--size too large" 1 bash -c 'bzip2 -c <"$1" | "$2" convert -q -O raw --size "$3" - "$4"' _ "$G" "$VDISK" $((sz + 512)) "$T/s3.raw"
assert_contains "--size too large says so" "stream ends after $sz bytes, but --size says $((sz + 512))" "$T/.err"
# the size from the xz index and the zstd frame header
assert_rc "xz index size" 0 "$VDISK" convert -q -O vdi "$T/guest.raw.xz" "$T/x.vdi"
assert_eq "xz: virtual size" "$sz" "$(qemu-img info --output=json "$T/x.vdi" | jq '.["virtual-size"]')"

# a window of a larger file: the image 1 MiB in
W=$T/big.raw
head -c 1048576 /dev/urandom >"$W"
cat "$G" >>"$W"
head -c 65536 /dev/urandom >>"$W"
assert_rc "window -> vdi" 0 "$VDISK" convert -q -O vdi --source-offset 1M --source-size "$sz" "$W" "$T/w.vdi"
assert_rc "window holds the image" 0 qemu-img compare -q "$G" "$T/w.vdi"
assert_rc "window past the end refused" 1 "$VDISK" convert -q -O raw --source-offset 1M --source-size $((sz + 131072)) "$W" "$T/w2.raw"
assert_contains "window past the end says so" "ends after" "$T/.err"

# streamOptimized: levels, qemu-img check and compare, size against qemu-img
qemu-img convert -O vmdk -o subformat=streamOptimized "$G" "$T/q.vmdk"
assert_rc "stream default" 0 "$VDISK" convert -q -O vmdk -o subformat=streamOptimized "$G" "$T/d.vmdk"
assert_rc "stream default: qemu-img check" 0 qemu-img check -q "$T/d.vmdk"
assert_rc "stream default: qemu-img compare" 0 qemu-img compare -q "$G" "$T/d.vmdk"
qs=$(stat -c %s "$T/q.vmdk") ds=$(stat -c %s "$T/d.vmdk")
if [ "$ds" -le "$qs" ]; then pass "stream default no larger than qemu-img's ($ds <= $qs)"
else fail "stream default $ds bytes, qemu-img's $qs"; fi
for l in 1 9 12; do
	assert_rc "stream level $l" 0 "$VDISK" convert -q -O vmdk -o subformat=streamOptimized,compression_level=$l "$G" "$T/l$l.vmdk"
	assert_rc "stream level $l: qemu-img check" 0 qemu-img check -q "$T/l$l.vmdk"
	assert_rc "stream level $l: qemu-img compare" 0 qemu-img compare -q "$G" "$T/l$l.vmdk"
done
if [ "$(stat -c %s "$T/l12.vmdk")" -le "$(stat -c %s "$T/l1.vmdk")" ]; then pass "level 12 no larger than level 1"
else fail "level 12 larger than level 1"; fi
assert_rc "level 13 refused" 1 "$VDISK" convert -q -O vmdk -o subformat=streamOptimized,compression_level=13 "$G" "$T/x13.vmdk"
assert_contains "level 13 message" "compression_level must be a number from 1 to 12, not '13'" "$T/.err"
assert_rc "level on a sparse VMDK refused" 1 "$VDISK" convert -q -O vmdk -o compression_level=3 "$G" "$T/xs.vmdk"
assert_contains "level on a sparse VMDK message" "compression_level applies to subformat=streamOptimized only" "$T/.err"
# standard output: streamOptimized and raw, sent as they are made
mkdir -p "$T/tmp"
assert_rc "stream to stdout" 0 bash -c 'TMPDIR="$1/tmp" "$2" convert -q -O vmdk -o subformat=streamOptimized "$3" - >"$1/so.vmdk"' _ "$T" "$VDISK" "$G"
assert_rc "stdout stream: qemu-img check" 0 qemu-img check -q "$T/so.vmdk"
assert_rc "stdout stream: qemu-img compare" 0 qemu-img compare -q "$G" "$T/so.vmdk"
# streamOptimized into a pipe without staging, a disk larger than the 1 MiB
# held back and sparse beyond it
truncate -s 20G "$T/big.raw"
printf 'late data' | dd of="$T/big.raw" bs=1 seek=$((15 << 30)) conv=notrunc status=none
assert_rc "stream to a pipe, no staging" 0 bash -c 'set -o pipefail; TMPDIR=/nonexistent/vdisk "$1" convert -q -O vmdk -o subformat=streamOptimized "$2" - | cat >"$3"' _ "$VDISK" "$T/big.raw" "$T/big.vmdk"
assert_rc "piped stream: qemu-img check" 0 qemu-img check -q "$T/big.vmdk"
assert_rc "piped stream: qemu-img compare" 0 qemu-img compare -q "$T/big.raw" "$T/big.vmdk"
rm -f "$T/big.raw" "$T/big.vmdk"
assert_rc "xz to raw stdout" 0 bash -c 'TMPDIR="$1/tmp" "$2" convert -q -O raw "$1/guest.raw.xz" - >"$1/so.raw"' _ "$T" "$VDISK"
if cmp -s "$G" "$T/so.raw"; then pass "raw stdout copy"; else fail "raw stdout copy differs"; fi
assert_rc "vdi to stdout refused" 1 bash -c 'TMPDIR="$1/tmp" "$2" convert -q -O vdi "$3" - >"$1/so.vdi"' _ "$T" "$VDISK" "$G"
assert_contains "vdi to stdout: says which formats" "standard output (-) takes -O raw or -O vmdk -o subformat=streamOptimized" "$T/.err"
# raw to standard output is sent as it is made: nothing staged (a $TMPDIR
# that does not exist is never needed), the zeros between and after the
# data included, a reader that stops early ends it
qemu-img create -q -f vdi "$T/so-src.vdi" 24M
qemu-io -c 'write -P 0x41 1M 64k' -c 'write -P 0x42 9M 1M' "$T/so-src.vdi" >/dev/null
qemu-img convert -O raw "$T/so-src.vdi" "$T/so-exp.raw"
assert_rc "vdi to raw stdout, no staging" 0 bash -c 'TMPDIR=/nonexistent/vdisk "$1" convert -q -O raw "$2" - >"$3"' _ "$VDISK" "$T/so-src.vdi" "$T/so-vdi.raw"
if cmp -s "$T/so-exp.raw" "$T/so-vdi.raw"; then pass "raw stdout of a VDI equals qemu-img's, trailing zeros included"; else fail "raw stdout of a VDI differs"; fi
assert_rc "raw stdout into a pipe" 0 bash -c 'set -o pipefail; "$1" convert -q -O raw "$2" - | cmp -s - "$3"' _ "$VDISK" "$T/so-src.vdi" "$T/so-exp.raw"
assert_rc "zstd to raw stdout, no staging" 0 bash -c 'TMPDIR=/nonexistent/vdisk "$1" convert -q -O raw "$2" - | cmp -s - "$3"' _ "$VDISK" "$T/guest.raw.zst" "$G"
head -c 100 "$T/so-exp.raw" >"$T/so-100"
timeout 60 bash -c '"$1" convert -q -O raw "$2" - | head -c 100 >"$3"; echo "${PIPESTATUS[0]}" >"$4"' _ "$VDISK" "$T/so-src.vdi" "$T/so-head" "$T/so-rc"
if cmp -s "$T/so-100" "$T/so-head" && [ "$(cat "$T/so-rc")" = 141 ]; then pass "a reader that stops early: its bytes right, vdisk ended by SIGPIPE"
else fail "early reader: rc $(cat "$T/so-rc"), bytes $(cmp "$T/so-100" "$T/so-head" 2>&1)"; fi
assert_rc "truncated to stdout refused" 1 bash -c 'TMPDIR="$1/tmp" "$2" convert -q -O raw "$1/trunc.xz" - >"$1/so-t.raw"' _ "$T" "$VDISK"
assert_eq "truncated: nothing on stdout" 0 "$(stat -c %s "$T/so-t.raw")"
assert_eq "no staging directory left" "" "$(ls -A "$T/tmp")"

# compare reads them too (gzip and bzip2 spooled in $TMPDIR, unlinked at once)
mkdir -p "$T/spool"
cp "$G" "$T/other.raw" && printf 'X' | dd of="$T/other.raw" bs=1 seek=$((9 << 20)) conv=notrunc status=none
for z in xz zstd gzip bzip2; do
	f=$T/guest.raw.${EXT[$z]}
	assert_rc "compare $z with the raw disk" 0 env TMPDIR="$T/spool" "$VDISK" compare "$f" "$G"
	assert_rc "compare $z with a changed disk" 1 env TMPDIR="$T/spool" "$VDISK" compare --output=json "$f" "$T/other.raw"
	assert_eq "compare $z: the offset of the change" $((9 << 20)) "$(jq .offset "$T/.out")"
done
assert_rc "compare standard input (bzip2) with a VDI" 0 bash -c 'TMPDIR="$4" "$1" compare - "$2" <"$3"' _ "$VDISK" "$T/bzip2.vdi" "$T/guest.raw.bz2" "$T/spool"
assert_rc "compare - - refused" 2 "$VDISK" compare - - </dev/null
assert_contains "compare - -: message" "only one of A and B can be standard input" "$T/.err"
assert_rc "compare a truncated xz: an error, not a difference" 2 "$VDISK" compare "$T/trunc.xz" "$G"
assert_eq "no spool file left" "" "$(ls -A "$T/spool")"

# create --part from compressed filesystem images and standard input
if command -v mkfs.ext4 >/dev/null && command -v e2fsck >/dev/null; then
	truncate -s 16M "$T/fs.img" && mkfs.ext4 -q -F "$T/fs.img" &&
		printf 'hello from a compressed partition\n' >"$T/hello" &&
		debugfs -w -R "write $T/hello hello" "$T/fs.img" >/dev/null 2>&1
	xz -T0 -k -c "$T/fs.img" >"$T/fs.img.xz"
	gzip -c "$T/fs.img" >"$T/fs.img.gz"
	printf 'label: dos\n,,L\n' >"$T/one.sfdisk"
	mkdir -p "$T/ref"
	assert_rc "create --part 1=fs.img (reference)" 0 "$VDISK" create -q -O raw --deterministic --label-id 0x1234abcd --script "$T/one.sfdisk" --part 1="$T/fs.img" "$T/ref/d.raw"
	for src in xz gz; do
		mkdir -p "$T/p$src"
		assert_rc "create --part 1=fs.img.$src" 0 env TMPDIR="$T/spool" "$VDISK" create -q -O vmdk --label-id 0x1234abcd --script "$T/one.sfdisk" --part 1="$T/fs.img.$src" "$T/p$src/d.vmdk"
		assert_rc "create --part 1=fs.img.$src: the disk as from the file" 0 qemu-img compare -q "$T/ref/d.raw" "$T/p$src/d.vmdk"
		mkdir -p "$T/det$src"
		assert_rc "create --deterministic --part 1=fs.img.$src" 0 env TMPDIR="$T/spool" "$VDISK" create -q -O raw --deterministic --label-id 0x1234abcd --script "$T/one.sfdisk" --part 1="$T/fs.img.$src" "$T/det$src/d.raw"
		if cmp -s "$T/ref/d.raw" "$T/det$src/d.raw"; then pass "--deterministic from $src: byte for byte the file's image"
		else fail "--deterministic from $src differs from the file's image"; fi
	done
	mkdir -p "$T/pstdin"
	assert_rc "create --part 1=- (xz on standard input)" 0 bash -c 'TMPDIR="$5" "$1" create -q -O vdi --label-id 0x1234abcd --script "$2" --part 1=- "$3" <"$4"' _ "$VDISK" "$T/one.sfdisk" "$T/pstdin/d.vdi" "$T/fs.img.xz" "$T/spool"
	assert_rc "create --part 1=-: the disk as from the file" 0 qemu-img compare -q "$T/ref/d.raw" "$T/pstdin/d.vdi"
	dd if="$T/ref/d.raw" of="$T/p1.img" bs=1M skip=1 status=none
	assert_rc "the partition passes e2fsck" 0 e2fsck -fn "$T/p1.img"
	assert_eq "no spool file left" "" "$(ls -A "$T/spool")"
else
	echo "note: no mkfs.ext4/e2fsck: create --part cases skipped"
fi

# onto a garbage-filled loop device: the image, no stale data (root only)
if [ "$(id -u)" = 0 ] && command -v losetup >/dev/null &&
	head -c $((26 << 20)) /dev/urandom >"$T/garbage" && DEV=$(losetup -f --show "$T/garbage" 2>/dev/null); then
	on_exit "losetup -d $DEV"
	assert_rc "xz onto a device" 0 "$VDISK" convert -q "$T/guest.raw.xz" "$DEV"
	if cmp -s <(head -c "$sz" "$DEV") "$G"; then pass "device holds the image (zero runs zeroed)"
	else fail "device differs from the image"; fi
	assert_rc "gzip onto a device needs --size" 1 "$VDISK" convert -q "$T/g.gz" "$DEV"
	assert_contains "gzip onto a device: message" "give --size" "$T/.err"
	assert_rc "gzip onto a device with --size" 0 "$VDISK" convert -q --size "$sz" "$T/g.gz" "$DEV"
	if cmp -s <(head -c "$sz" "$DEV") "$G"; then pass "device holds the gzip image"; else fail "device differs after gzip"; fi
	# --verify of a source read once: against the digest of the first pass
	head -c $((26 << 20)) /dev/urandom | dd of="$DEV" bs=1M status=none conv=fsync
	assert_rc "--verify of an xz stream" 0 "$VDISK" convert --verify "$T/guest.raw.xz" "$DEV"
	assert_contains "--verify of an xz stream: verified" "verified: the device holds the image" "$T/.out"
	if cmp -s <(head -c "$sz" "$DEV") "$G"; then pass "--verify xz: device holds the image"; else fail "--verify xz: device differs"; fi
	assert_rc "--verify of standard input (zstd)" 0 bash -c '"$1" convert --verify --size "$2" - "$3" <"$4"' _ "$VDISK" "$sz" "$DEV" "$T/guest.raw.zst"
	assert_contains "--verify of standard input: verified" "verified: the device holds the image" "$T/.out"
	assert_rc "--verify of a gzip stream with --size" 0 "$VDISK" convert --verify --size "$sz" "$T/g.gz" "$DEV"
	assert_contains "--verify of a gzip stream: verified" "verified: the device holds the image" "$T/.out"
else
	echo "note: no root or loop devices: device cases skipped"
fi

# compressed raw output, with several threads
for z in zstd xz; do
	assert_rc "-o compression=$z" 0 "$VDISK" convert -q -O raw -o compression=$z "$G" "$T/out.$z"
	if $z -dc "$T/out.$z" | cmp -s - "$G"; then pass "$z -dc of the output is the image"; else fail "$z output differs"; fi
	assert_rc "$z output reads back" 0 "$VDISK" convert -q -O raw "$T/out.$z" "$T/back-$z.raw"
	if cmp -s "$T/back-$z.raw" "$G"; then pass "$z output converts back"; else fail "$z output converts back differently"; fi
done
assert_rc "-o compression=zstd to stdout" 0 bash -c 'TMPDIR="$1/tmp" "$2" convert -q -O raw -o compression=zstd,compression_level=1 "$3" - >"$1/so.zst"' _ "$T" "$VDISK" "$G"
if zstd -dc "$T/so.zst" | cmp -s - "$G"; then pass "zstd stdout"; else fail "zstd stdout differs"; fi
assert_rc "-o compression=lz4 refused" 1 "$VDISK" convert -q -O raw -o compression=lz4 "$G" "$T/out.lz4"
assert_contains "lz4 message" "compression must be zstd or xz, not 'lz4'" "$T/.err"
assert_rc "xz level 10 refused" 1 "$VDISK" convert -q -O raw -o compression=xz,compression_level=10 "$G" "$T/out10.xz"
assert_eq "no staging directory or temporary file left" "" "$(find "$T" -name '.vdisk-stage*' -o -name '*vdisk-tmp*')"

# qemu-img's zlib stream read byte for byte
assert_rc "qemu-img stream -> raw" 0 "$VDISK" convert -q -O raw "$T/q.vmdk" "$T/q.raw"
if cmp -s "$G" "$T/q.raw"; then pass "qemu-img stream read byte for byte"; else fail "qemu-img stream read differs"; fi
finish
