#!/usr/bin/env bash
# QEMU's static=on VDI is a sparse file: its allocated blocks are mostly host
# holes.  vdisk reports them as holes (data + zero), so convert and compare
# do not read them, and the data ranges still agree with qemu-img map.
. "$(dirname "$0")/../lib.sh"
need qemu-img jq
truncate -s 256M "$T/src.raw"
rand_bytes holes 8192 | dd of="$T/src.raw" bs=4096 seek=300 conv=notrunc status=none
qemu-img convert -O vdi -o static=on "$T/src.raw" "$T/static.vdi"
"$VDISK" map --output=json "$T/static.vdi" > "$T/map.json"
assert_eq "whole image is data (every block allocated)" 268435456 \
	"$(jq '[.[] | select(.data) | .length] | add' "$T/map.json")"
real=$(jq '[.[] | select(.data and (.zero | not)) | .length] | add // 0' "$T/map.json")
if [ "$real" -ge 8192 ] && [ "$real" -le $((1 << 20)) ]; then
	pass "only the written part is data that must be read ($real bytes)"
else
	fail "bytes to read: $real, expected between 8192 and 1 MiB"
fi
qemu-img map --output=json "$T/static.vdi" > "$T/qmap.json"
assert_eq "data ranges agree with qemu-img map" \
	"$(jq -c '[.[] | select(.data) | .length] | add' "$T/qmap.json")" \
	"$(jq -c '[.[] | select(.data) | .length] | add' "$T/map.json")"
assert_rc "convert to raw" 0 "$VDISK" convert -O raw "$T/static.vdi" "$T/back.raw"
assert_rc "contents identical" 0 cmp "$T/src.raw" "$T/back.raw"
assert_eq "output stays sparse" 1 "$([ "$(stat -c %b "$T/back.raw")" -lt 4096 ] && echo 1 || echo 0)"
assert_rc "compare" 0 "$VDISK" compare "$T/static.vdi" "$T/src.raw"
finish
