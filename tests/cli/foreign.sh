#!/usr/bin/env bash
# Formats vdisk does not read are refused when the format is probed, never
# read as raw: qcow, qcow2, QED, VHD (dynamic, fixed, old 511-byte footer),
# VHDX, Parallels, VMDK COWD and seSparse deltas, LUKS, and xz, gzip, zstd,
# bzip2 containers.  Samples come from the real tools where installed
# (qemu-img, xz, gzip, zstd, bzip2), else from hand-made headers.  For
# each: info, convert, check, map and compare fail naming the format, no
# output file is left, and -f raw still opens the file as a raw disk.
. "$(dirname "$0")/../lib.sh"

S=$T/samples
mkdir -p "$S"
rand_bytes foreign 65536 >"$T/data.raw"

# sample FILE DESCRIPTION NEEDLE
samples=()
sample() { samples+=("$1|$2"); }

if command -v qemu-img >/dev/null; then
	qi() { qemu-img create -q -f "$@" 1M 2>/dev/null; }
	qi qcow2 "$S/a.qcow2" && sample "$S/a.qcow2" "is a qcow2 image; vdisk does not read qcow2"
	qi qcow "$S/a.qcow" && sample "$S/a.qcow" "is a qcow image; vdisk does not read qcow"
	qi qed "$S/a.qed" && sample "$S/a.qed" "is a QED image; vdisk does not read QED"
	qi vpc "$S/dynamic.vhd" && sample "$S/dynamic.vhd" "is a VHD image; vdisk does not read VHD"
	if qi vpc -o subformat=fixed "$S/fixed.vhd"; then
		sample "$S/fixed.vhd" "is a VHD image"
		# the footer of old Virtual PC files is 511 bytes: drop the last
		# (reserved, zero) byte of the 512-byte one
		cp "$S/fixed.vhd" "$S/fixed511.vhd"
		truncate -s -1 "$S/fixed511.vhd"
		sample "$S/fixed511.vhd" "is a VHD image"
	fi
	qi vhdx "$S/a.vhdx" && sample "$S/a.vhdx" "is a VHDX image; vdisk does not read VHDX"
	qi parallels "$S/a.parallels" && sample "$S/a.parallels" "is a Parallels image"
else
	echo "note: qemu-img not installed: no qemu-made samples"
fi
# qcow version 1 by hand: magic, version 1, no backing file, 1 MiB
{ printf 'QFI\xfb\0\0\0\x01'; printf '\0%.0s' $(seq 12); printf '\0\0\0\0\0\x10\0\0'; } >"$S/v1.qcow"
truncate -s 4096 "$S/v1.qcow"
sample "$S/v1.qcow" "is a qcow image"
# ESX vmfsSparse delta (COWD): magic, version 1, flags 3
printf 'COWD\x01\0\0\0\x03\0\0\0' >"$S/delta-cowd.vmdk"
truncate -s 2048 "$S/delta-cowd.vmdk"
sample "$S/delta-cowd.vmdk" "is a VMDK vmfsSparse (COWD) delta extent; vdisk reads it through the descriptor (.vmdk) that names it"
# seSparse: const header magic le64 0xcafebabe, version 0x200000001
printf '\xbe\xba\xfe\xca\0\0\0\0\x01\0\0\0\x02\0\0\0' >"$S/delta-sesparse.vmdk"
truncate -s 4096 "$S/delta-sesparse.vmdk"
sample "$S/delta-sesparse.vmdk" "is a VMDK seSparse delta extent; vdisk reads it through the descriptor (.vmdk) that names it"
# LUKS1 header start (cryptsetup is not needed for the magic)
printf 'LUKS\xba\xbe\0\x01aes' >"$S/a.luks"
truncate -s 8192 "$S/a.luks"
sample "$S/a.luks" "is a LUKS image; vdisk does not read LUKS"
for z in xz gzip zstd bzip2; do
	if command -v $z >/dev/null; then
		$z -c <"$T/data.raw" >"$S/data.raw.$z"
		sample "$S/data.raw.$z" "is $z-compressed; only vdisk convert, compare and create --part read $z-compressed images, as a raw disk front to back (decompress it first"
	else
		echo "note: $z not installed: no $z sample"
	fi
done

for s in "${samples[@]}"; do
	f=${s%%|*} msg=${s#*|} n=$(basename "$f")
	assert_rc "$n: info refused" 1 "$VDISK" info "$f"
	assert_contains "$n: info names the format" "$f $msg" "$T/.err"
	assert_contains "$n: info says how to force raw" "use -f raw to copy its bytes as a raw disk" "$T/.err"
	if [ -s "$T/.out" ]; then fail "$n: info printed to stdout: $(head -c 200 "$T/.out")"; fi
	for o in vdi raw vmdk; do
		case $msg in *-compressed*)
			# convert decompresses it (tests/cross/compressed.sh has the rest)
			assert_rc "$n: convert -O $o decompresses" 0 "$VDISK" convert -O $o "$f" "$T/out.$o"
			assert_rc "$n: convert -O $o holds the raw disk" 0 "$VDISK" compare "$T/data.raw" "$T/out.$o"
			rm -f "$T/out.$o"
			continue ;;
		esac
		assert_rc "$n: convert -O $o refused" 1 "$VDISK" convert -O $o "$f" "$T/out.$o"
		assert_contains "$n: convert -O $o names the format" "$msg" "$T/.err"
		if [ -e "$T/out.$o" ]; then fail "$n: convert -O $o left an output file"; rm -f "$T/out.$o"; fi
	done
	assert_rc "$n: check refused" 1 "$VDISK" check "$f"
	assert_contains "$n: check names the format" "$msg" "$T/.err"
	assert_rc "$n: map refused" 1 "$VDISK" map "$f"
	assert_contains "$n: map names the format" "$msg" "$T/.err"
	case $msg in *-compressed*)
		assert_rc "$n: compare decompresses" 0 "$VDISK" compare "$T/data.raw" "$f" ;;
	*)
		assert_rc "$n: compare refused" 2 "$VDISK" compare "$T/data.raw" "$f"
		assert_contains "$n: compare names the format" "$msg" "$T/.err" ;;
	esac
	# -f raw opens any of them as the raw disk they are not
	assert_rc "$n: info -f raw" 0 "$VDISK" info -f raw "$f"
	assert_contains "$n: info -f raw says raw" "file format: raw" "$T/.out"
done

# -f raw copies the container bytes exactly
f=$S/data.raw.gzip
[ -e "$f" ] || f=$S/delta-cowd.vmdk
assert_rc "convert -f raw -O raw" 0 "$VDISK" convert -f raw -O raw "$f" "$T/copy.raw"
if cmp -s "$f" "$T/copy.raw"; then pass "-f raw copy is byte-identical"; else fail "-f raw copy differs from $f"; fi
# the copy has the same magic: both sides need raw
assert_rc "compare -f raw -F raw" 0 "$VDISK" compare -f raw -F raw "$f" "$T/copy.raw"

# a raw disk that merely contains such bytes away from the probed places
# is still raw: a gzip magic at offset 512, a VHD cookie 1000 bytes from the end
cp "$T/data.raw" "$T/plain.raw"
printf '\x1f\x8b\x08' | dd of="$T/plain.raw" bs=1 seek=512 conv=notrunc status=none
printf 'conectix' | dd of="$T/plain.raw" bs=1 seek=$((65536 - 1000)) conv=notrunc status=none
dd if=/dev/zero of="$T/plain.raw" bs=1 count=16 conv=notrunc status=none
assert_rc "plain raw still probes" 0 "$VDISK" info "$T/plain.raw"
assert_contains "plain raw is raw" "file format: raw" "$T/.out"
# real backends win: a VDI whose last guest sector holds a VHD footer
"$VDISK" create -O vdi -o subformat=fixed "$T/tail.vdi" 1M || fail "create tail.vdi"
sz=$(stat -c %s "$T/tail.vdi")
printf 'conectix' | dd of="$T/tail.vdi" bs=1 seek=$((sz - 512)) conv=notrunc status=none
assert_rc "VDI with a footer-like tail opens" 0 "$VDISK" info "$T/tail.vdi"
assert_contains "VDI with a footer-like tail is vdi" "file format: vdi" "$T/.out"
finish
