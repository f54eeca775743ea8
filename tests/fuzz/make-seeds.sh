#!/bin/sh
# Generate the seed corpus for fuzz_image into DIR (default tests/fuzz/out/seeds).
# Uses build/vdisk and qemu-img when present; real-world test images from
# /work/shared/testimages when present.  Everything is compacted to <= 64 KiB.
set -eu
cd "$(dirname "$0")/../.."
DIR=${1:-tests/fuzz/out/seeds}
mkdir -p "$DIR"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
set --
if [ -x build/vdisk ]; then
	for sub in dynamic fixed; do
		for sz in 32K 1M 3M; do
			build/vdisk create -O vdi -o subformat=$sub,block_size=4K --deterministic \
				"$TMP/vdisk-$sub-$sz.vdi" $sz >/dev/null && set -- "$@" "$TMP/vdisk-$sub-$sz.vdi"
		done
	done
	build/vdisk create -O vdi --deterministic "$TMP/vdisk-default.vdi" 1M >/dev/null &&
		set -- "$@" "$TMP/vdisk-default.vdi"
fi
if command -v qemu-img >/dev/null; then
	qemu-img create -q -f vdi "$TMP/qemu-empty.vdi" 1M && set -- "$@" "$TMP/qemu-empty.vdi"
	python3 -c "
import sys
b = bytearray(3 << 20)
for i in range(0, len(b), 300007): b[i:i+600] = bytes((j * 13 + 1) & 255 for j in range(600))
open(sys.argv[1], 'wb').write(b)" "$TMP/data.raw"
	qemu-img convert -O vdi "$TMP/data.raw" "$TMP/qemu-data.vdi" && set -- "$@" "$TMP/qemu-data.vdi"
fi
# formats vdisk does not read, which the probe refuses (src/core/foreign.c)
if command -v qemu-img >/dev/null; then
	for f in qcow2 qcow qed vpc vhdx parallels; do
		qemu-img create -q -f $f "$TMP/foreign.$f" 1M 2>/dev/null && set -- "$@" "$TMP/foreign.$f"
	done
	# a fixed VHD's only magic is its footer: keep it at the end of a small file
	if qemu-img create -q -f vpc -o subformat=fixed "$TMP/fixed.vhd" 1M 2>/dev/null; then
		{ head -c 4096 /dev/zero; tail -c 512 "$TMP/fixed.vhd"; } >"$TMP/foreign-fixed.vhd"
		set -- "$@" "$TMP/foreign-fixed.vhd"
	fi
fi
{ printf 'COWD\001\0\0\0\003\0\0\0'; head -c 2036 /dev/zero; } >"$TMP/foreign-cowd.vmdk"
{ printf '\276\272\376\312\0\0\0\0\001\0\0\0\002\0\0\0'; head -c 4080 /dev/zero; } >"$TMP/foreign-sesparse.vmdk"
{ printf 'LUKS\272\276\0\001aes'; head -c 4087 /dev/zero; } >"$TMP/foreign.luks"
set -- "$@" "$TMP/foreign-cowd.vmdk" "$TMP/foreign-sesparse.vmdk" "$TMP/foreign.luks"
for z in xz gzip zstd bzip2; do
	if command -v $z >/dev/null; then
		head -c 8192 /dev/zero | $z -c >"$TMP/foreign.$z" && set -- "$@" "$TMP/foreign.$z"
	fi
done
for f in /work/shared/testimages/von_pyVBox/*.vdi /work/shared/testimages/YIVIES_yvhdt/test.vdi; do
	[ -f "$f" ] && set -- "$@" "$f"
done
python3 tests/fuzz/make-seeds.py "$DIR" "$@"
python3 tests/fuzz/make-seeds-vmdk.py "$DIR"
ls -l "$DIR" >&2
