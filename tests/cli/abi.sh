#!/usr/bin/env bash
# The layers (tests/cli/abi.sh): libvdisk.so exports exactly the functions include/vdisk.h declares (the
# version script), so the backend contract and the operations' internals
# (src/core/vdisk-int.h) cannot be linked against; and every function the
# header declares is defined (no stale declaration).
. "$(dirname "$0")/../lib.sh"
need nm
B=${BUILD:-$TOP/build}
so=$(ls "$B"/libvdisk.so.* 2>/dev/null | head -1)
[ -n "$so" ] || skip "no libvdisk.so in $B"
H=$TOP/include/vdisk.h
grep -E '^[a-z]' "$H" | grep -v '^static' | grep -oE '\bvd_[a-z0-9_]+\(' | tr -d '(' | sort -u >"$T/declared"
nm -D --defined-only "$so" | awk '$2 == "T" || $2 == "W" {print $3}' | sed 's/@.*//' | grep -v '^_' | sort -u >"$T/exported"
[ -s "$T/declared" ] && pass "vdisk.h declares $(wc -l <"$T/declared") functions" || fail "no declarations found in $H"
assert_eq "exported but not in vdisk.h" "" "$(comm -13 "$T/declared" "$T/exported" | tr '\n' ' ')"
assert_eq "declared in vdisk.h but not defined" "" "$(comm -23 "$T/declared" "$T/exported" | tr '\n' ' ')"
nm -D --defined-only "$so" | grep -q ' vd_host_open_file' && fail "an internal function (vd_host_open_file) is exported" ||
	pass "internal functions are not exported"

# the layers' headers: backends see the contract (backend.h, base.h), never
# the operations' internals; the filesystem walkers only the shared base
src=$TOP
if [ -d "$src/formats" ]; then
	bad=$(grep -lE '#include "[./a-z]*(ops|vdisk-int)\.h"' "$src"/formats/*.[ch] 2>/dev/null | tr '\n' ' ')
	assert_eq "formats/ include neither ops.h nor vdisk-int.h" "" "$bad"
	bad=$(grep -lE '#include "[./a-z]*(ops|backend|vdisk-int)\.h"' "$src"/src/fs/*.[ch] 2>/dev/null | tr '\n' ' ')
	assert_eq "src/fs/ includes only base.h" "" "$bad"
	bad=$(grep -lE '#include "[./a-z]*vdisk-int\.h"' "$src"/src/ops/*.[ch] 2>/dev/null | tr '\n' ' ')
	assert_eq "src/ops/ include ops.h, not vdisk-int.h" "" "$bad"
	bad=$(grep -nE '\->drv->' "$src"/src/ops/*.c 2>/dev/null | head -3 | tr '\n' ' ')
	assert_eq "src/ops/ never call a backend's operations directly" "" "$bad"
	# operations use the accessors of src/core/ops.h, not vd_image's fields
	bad=$(grep -nE '\b(img|src|dst|np|par|par2|im|w->src|w->dst|fs->img|z->img)->(host|drv|priv|backing|writable|allocate_zero_writes|has_parent|cow_unit|finished|parent_hint|align|size)\b' \
		"$src"/src/ops/*.c 2>/dev/null | grep -v '^[^:]*:[0-9]*:\s*/\?\*' | head -3 | tr '\n' ' ')
	assert_eq "src/ops/ reach into no vd_image field" "" "$bad"
	# the nbdkit plugin uses only the public API, and exports only its entry
	bad=$(grep -lE '#include "[./a-z]*(ops|backend|base|vdisk-int)\.h"' "$src"/src/nbdkit/*.[ch] 2>/dev/null | tr '\n' ' ')
	assert_eq "src/nbdkit/ includes only vdisk.h of libvdisk" "" "$bad"
fi
PLUGIN=${BUILD:-$TOP/build}/nbdkit-vdisk-plugin.so
if [ -f "$PLUGIN" ] && ! nm -D "$PLUGIN" 2>/dev/null | grep -q __asan_init; then
	assert_eq "the plugin exports only plugin_init" "plugin_init" "$(nm -D --defined-only "$PLUGIN" | awk '{print $3}' | tr '\n' ' ' | sed 's/ $//')"
fi
finish
