#!/usr/bin/env bash
# Golden hexdumps of what vdisk writes (--deterministic: fixed UUIDs): the
# header sector, the start of the block map and the file size, for a dynamic
# and a fixed VDI, and for a dynamic VDI after data was converted into it.
# A reviewer reads a format change as a diff; REBASE=1 (make rebase)
# regenerates the expected files.
. "$(dirname "$0")/../lib.sh"
need xxd
EXP=$TOP/tests/cli/expected

dump() { # FILE -> header sector, block map start, size
	xxd -l 512 "$1"
	echo "-- block map"
	xxd -s 1048576 -l 64 "$1"
	echo "-- file size $(stat -c %s "$1")"
}
golden() { # NAME FILE
	dump "$2" > "$T/$1.hex"
	if [ "${REBASE:-0}" = 1 ]; then cp "$T/$1.hex" "$EXP/$1.hex"; pass "$1 rebased"; return; fi
	if diff -u "$EXP/$1.hex" "$T/$1.hex" > "$T/diff"; then pass "$1 matches expected/$1.hex"
	else fail "$1 differs from expected/$1.hex:"; cat "$T/diff" >&2; fi
}

"$VDISK" create -O vdi --deterministic "$T/dyn.vdi" 10M
golden vdi-dynamic-10M "$T/dyn.vdi"
"$VDISK" create -O vdi -o subformat=fixed --deterministic "$T/fix.vdi" 3M
golden vdi-fixed-3M "$T/fix.vdi"
# data in blocks 0 and 2: convert writes in guest order, so block 0 gets
# slot 0, block 2 slot 1, and block 1 stays unallocated
truncate -s 4M "$T/src.raw"
printf 'block zero' | dd of="$T/src.raw" bs=1 seek=100 conv=notrunc status=none
printf 'block two' | dd of="$T/src.raw" bs=1 seek=$((2 << 20)) conv=notrunc status=none
"$VDISK" convert -O vdi --deterministic "$T/src.raw" "$T/data.vdi"
golden vdi-data-4M "$T/data.vdi"
# two runs give the same bytes
"$VDISK" convert -O vdi --deterministic "$T/src.raw" "$T/data2.vdi"
assert_rc "deterministic convert is reproducible" 0 cmp "$T/data.vdi" "$T/data2.vdi"
finish
