#!/usr/bin/env bash
# vdisk info and vdisk map output, human and JSON, against expected files in
# tests/cli/expected/ (REBASE=1 rewrites them from the current output).
# Images are made with --deterministic, so UUIDs are fixed; the temp dir is
# masked as TMP and the host-dependent "disk size"/"actual-size" as MASKED.
. "$(dirname "$0")/../lib.sh"
need jq
EXP=$(cd "$(dirname "$0")" && pwd)/expected
MiB=$((1 << 20))

mask() {
	sed -e "s|$T|TMP|g" -e 's/^disk size: .*/disk size: MASKED/' \
		-e 's/"actual-size": [0-9]*/"actual-size": MASKED/'
}
# expect NAME CMD...: CMD exits 0 and its masked stdout equals expected/NAME
expect() {
	local name=$1 rc=0; shift
	"$@" >"$T/out.raw" 2>"$T/err" || rc=$?
	if [ "$rc" != 0 ]; then fail "$name: exit $rc: $(head -c 300 "$T/err")"; return; fi
	mask <"$T/out.raw" >"$T/out"
	if [ "${REBASE:-}" = 1 ]; then cp "$T/out" "$EXP/$name"; pass "$name (rebased)"; return; fi
	if [ ! -f "$EXP/$name" ]; then fail "$name: no expected file $EXP/$name (run make rebase)"; return; fi
	if diff -u "$EXP/$name" "$T/out" >"$T/diff"; then pass "$name"; else
		fail "$name: output differs from expected/$name:"; cat "$T/diff" >&2; fi
}
put() { rand_bytes "$4" "$3" | dd of="$1" bs=64K seek="$2" oflag=seek_bytes conv=notrunc status=none; }
json_ok() { # WHAT: $T/out.raw is valid JSON
	if jq -e . "$T/out.raw" >/dev/null 2>&1; then pass "$1: valid JSON"; else fail "$1: invalid JSON"; fi
}

# empty dynamic VDI
V=$T/empty.vdi
"$VDISK" create -O vdi --deterministic "$V" 64M || fail "create empty.vdi"
expect info-empty-vdi.txt "$VDISK" info "$V"
expect info-empty-vdi.json "$VDISK" info --output=json "$V"
json_ok "info --output=json empty"
expect map-empty-vdi.txt "$VDISK" map "$V"
expect map-empty-vdi.json "$VDISK" map --output=json "$V"
json_ok "map --output=json empty"

# fixed VDI
V=$T/fixed.vdi
"$VDISK" create -O vdi -o subformat=fixed --deterministic "$V" 3M || fail "create fixed.vdi"
expect info-fixed-vdi.txt "$VDISK" info "$V"
expect info-fixed-vdi.json "$VDISK" info --output=json "$V"
# preallocated (unwritten) space is a hole or data depending on the host
# filesystem and its page cache: compare the kinds with that folded
map_folded() { "$VDISK" map "$@" | sed 's/ hole        / data        /'; }
expect map-fixed-vdi.txt map_folded "$V"

# dynamic VDI with data: blocks 0 (full) and 2 (4 KiB) hold data, block 3
# is marked as a zero block (0xfffffffe) by hand, the rest is unallocated;
# the size (5 MiB + 512) leaves a partial last block
R=$T/data.raw V=$T/data.vdi
truncate -s $((5 * MiB + 512)) "$R"
put "$R" 0 $MiB i1
put "$R" $((2 * MiB)) 4096 i2
"$VDISK" convert -O vdi --deterministic "$R" "$V" || fail "convert data.vdi"
printf '\xfe\xff\xff\xff' | dd of="$V" bs=1 seek=$((MiB + 3 * 4)) conv=notrunc status=none
expect info-data-vdi.txt "$VDISK" info "$V"
expect info-data-vdi.json "$VDISK" info --output=json "$V"
json_ok "info --output=json data"
expect map-data-vdi.txt "$VDISK" map "$V"
expect map-data-vdi.json "$VDISK" map --output=json "$V"
json_ok "map --output=json data"
assert_eq "data.vdi: JSON fields" "vdi dynamic 5243392 1048576 2 1" \
	"$("$VDISK" info --output=json "$V" | jq -r '[.format, .subformat, ."virtual-size", ."cluster-size", ."format-specific".data."blocks-allocated", ."format-specific".data."blocks-zero"] | join(" ")')"
# the same with -f vdi and through a relative path
expect info-data-vdi-f.txt bash -c "cd '$T' && '$VDISK' info -f vdi data.vdi"
# --output=human is the default
"$VDISK" info --output=human "$V" | mask >"$T/h1"
"$VDISK" info "$V" | mask >"$T/h2"
if cmp -s "$T/h1" "$T/h2"; then pass "--output=human is the default"; else fail "--output=human differs from default"; fi

# raw image
R=$T/plain.raw
truncate -s 3M "$R"
put "$R" $MiB 8192 i3
expect info-raw.txt "$VDISK" info "$R"
expect info-raw.json "$VDISK" info --output=json "$R"
expect map-raw.txt "$VDISK" map "$R"
expect map-raw.json "$VDISK" map -f raw --output=json "$R"

# the vdisk-written image gets the same geometry-free header as before: a
# second --deterministic run produces a byte-identical file
"$VDISK" convert -O vdi --deterministic "$T/data.raw" "$T/data2.vdi" || fail "convert data2.vdi"
"$VDISK" convert -O vdi --deterministic "$T/data.raw" "$T/data3.vdi" || fail "convert data3.vdi"
if cmp -s "$T/data2.vdi" "$T/data3.vdi"; then pass "--deterministic images are byte-identical"
else fail "--deterministic images differ: $(cmp "$T/data2.vdi" "$T/data3.vdi" 2>&1)"; fi
# without --deterministic the UUIDs are random and differ
"$VDISK" create -O vdi "$T/r1.vdi" 1M && "$VDISK" create -O vdi "$T/r2.vdi" 1M || fail "create r1/r2"
u1=$("$VDISK" info --output=json "$T/r1.vdi" | jq -r .uuid)
u2=$("$VDISK" info --output=json "$T/r2.vdi" | jq -r .uuid)
if [ -n "$u1" ] && [ "$u1" != "$u2" ] && [ "$u1" != 00000000-0000-4000-8000-000000000001 ]; then
	pass "random UUIDs without --deterministic"; else fail "UUIDs not random: '$u1' '$u2'"; fi

# JSON output of a file name that needs escaping
N=$T/$'we"ird\\na\tme \xc3\xbc.vdi'
"$VDISK" create -O vdi -- "$N" 1M || fail "create oddly named image"
assert_eq "info JSON escapes the file name" "$N" "$("$VDISK" info --output=json -- "$N" | jq -r .filename)"
assert_eq "check JSON escapes the file name" "$N" "$("$VDISK" check --output=json -- "$N" | jq -r .filename)"

finish
