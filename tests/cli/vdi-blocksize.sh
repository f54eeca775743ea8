#!/usr/bin/env bash
# VDI outputs with a block size other than 1 MiB warn on stderr, naming
# qemu-img and VirtualBox (qemu opens only 1 MiB blocks, VirtualBox 512 KiB
# to 8 MiB: FORMATS.md); 1 MiB, given or by default, says nothing.
. "$(dirname "$0")/../lib.sh"
MiB=$((1 << 20))
rand_bytes bs $((3 * MiB)) >"$T/src.raw"

warns() { # NAME FILE: the warning is there, naming both tools
	assert_contains "$1: warns" "warning: vdi: block_size" "$2"
	assert_contains "$1: names qemu-img" "qemu-img" "$2"
	assert_contains "$1: names VirtualBox" "VirtualBox" "$2"
}
quiet() { # NAME FILE
	assert_eq "$1: no warning" "" "$(grep -i warning "$2")"
}

assert_rc "create 2M" 0 "$VDISK" create -O vdi -o block_size=2M "$T/c2.vdi" 16M
warns "create 2M" "$T/.err"
assert_contains "create 2M: exact warning" \
	"vdisk create: warning: vdi: block_size 2M (2097152 bytes) is not 1 MiB: qemu-img (and qemu) open only VDI images with 1 MiB blocks; VirtualBox opens 512 KiB to 8 MiB" \
	"$T/.err"
assert_rc "create 16M" 0 "$VDISK" create -O vdi -o block_size=16M "$T/c16.vdi" 64M
warns "create 16M" "$T/.err"
assert_contains "create 16M: neither opens it" "neither qemu-img" "$T/.err"
assert_rc "create 1M" 0 "$VDISK" create -O vdi -o block_size=1M "$T/c1.vdi" 16M
quiet "create 1M" "$T/.err"
assert_rc "create 1024K" 0 "$VDISK" create -O vdi -o block_size=1024K,subformat=fixed "$T/c1k.vdi" 16M
quiet "create 1024K" "$T/.err"
assert_rc "create default" 0 "$VDISK" create -O vdi "$T/cd.vdi" 16M
quiet "create default" "$T/.err"

assert_rc "convert 2M" 0 "$VDISK" convert -q -O vdi -o block_size=2M "$T/src.raw" "$T/v2.vdi"
warns "convert 2M" "$T/.err"
assert_rc "convert 2M: the copy is right" 0 "$VDISK" compare "$T/src.raw" "$T/v2.vdi"
assert_rc "convert 1M" 0 "$VDISK" convert -q -O vdi -o block_size=1M "$T/src.raw" "$T/v1.vdi"
quiet "convert 1M" "$T/.err"
assert_rc "convert to raw" 0 "$VDISK" convert -q -O raw "$T/src.raw" "$T/r.raw"
quiet "convert to raw" "$T/.err"
# an invalid size is an error, not a warning
assert_rc "create 3M: refused" 1 "$VDISK" create -O vdi -o block_size=3M "$T/c3.vdi" 16M
quiet "create 3M" "$T/.err"

# the warning is true: qemu-img opens the 1 MiB images, not the 2 MiB ones
if command -v qemu-img >/dev/null 2>&1; then
	assert_rc "qemu-img opens the 1 MiB VDI" 0 qemu-img info "$T/v1.vdi"
	assert_rc "qemu-img refuses the 2 MiB VDI" 1 qemu-img info "$T/v2.vdi"
fi
finish
