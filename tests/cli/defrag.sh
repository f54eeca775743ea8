#!/usr/bin/env bash
# vdisk defrag: blocks in guest order in a file allocated up front.
#  - a dynamic VDI written out of guest order (pieces converted in reverse
#    and interleaved order): inspect shows discontinuities before and none
#    after, the sequential read needs no more host runs than before, the
#    new file's host extents equal filefrag's, contents, UUIDs, mode kept,
#    qemu-img check and vdisk check accept it;
#  - a sparse VMDK written in shuffled order (qemu-io): the same, CID kept;
#  - fixed VDI, raw (zero ranges stay holes) and flat VMDK (reallocated);
#  - refusals: streamOptimized, a missing file, a directory.
. "$(dirname "$0")/../lib.sh"
need openssl jq
MiB=$((1 << 20))

tmp_files() { find "$1" -maxdepth 1 -name '.*vdisk-tmp*' 2>/dev/null; }
jinfo() { "$VDISK" info --output=json "$1"; }
summary() { "$VDISK" inspect --output=json "$1" | jq -r ".summary.\"$2\""; }

rand_bytes defrag $((24 * MiB)) >"$T/data.raw"

# ---------------------------------------------------------------- VDI
V=$T/o.vdi
"$VDISK" create -O vdi "$V" 24M
for i in 23 21 19 17 15 13 11 9 7 5 3 1 22 20 18 16 14 12 10 8 6 4 2 0; do
	rm -f "$T/p.raw"
	truncate -s 24M "$T/p.raw"
	dd if="$T/data.raw" of="$T/p.raw" bs=1M skip=$i seek=$i count=1 conv=notrunc status=none
	"$VDISK" convert -n --target-is-zero "$T/p.raw" "$V"
done
rm -f "$T/p.raw"
assert_rc "vdi: written out of order, contents right" 0 "$VDISK" compare "$T/data.raw" "$V"
d0=$(summary "$V" discontinuities)
runs0=$(summary "$V" host-runs)
[ "$d0" -ge 20 ] && pass "vdi: $d0 discontinuities before" || fail "vdi: only $d0 discontinuities before"
before=$(jinfo "$V")
chmod 600 "$V"
assert_rc "vdi: defrag" 0 "$VDISK" defrag --output=json "$V"
assert_eq "vdi: 24 blocks kept" 24 "$(jq '."blocks-kept"' "$T/.out")"
assert_eq "vdi: no discontinuities after" 0 "$(summary "$V" discontinuities)"
assert_eq "vdi: no block out of order" 0 "$(summary "$V" out-of-order-blocks)"
runs1=$(summary "$V" host-runs)
[ "$runs1" -le "$runs0" ] && pass "vdi: host runs $runs0 -> $runs1" || fail "vdi: host runs $runs0 -> $runs1"
after=$(jinfo "$V")
for k in uuid '"modification-uuid"' subformat '"cluster-size"'; do
	assert_eq "vdi: $k kept" "$(echo "$before" | jq -r ".$k")" "$(echo "$after" | jq -r ".$k")"
done
assert_eq "vdi: mode kept" 600 "$(stat -c %a "$V")"
assert_rc "vdi: vdisk check" 0 "$VDISK" check "$V"
assert_rc "vdi: contents" 0 "$VDISK" compare "$T/data.raw" "$V"
assert_eq "vdi: file size: header + map + 24 blocks" $((26 * MiB)) "$(stat -c %s "$V")"
assert_eq "vdi: no temporary file" "" "$(tmp_files "$T")"
if command -v filefrag >/dev/null && [ "$(summary "$V" host-map)" = fiemap ]; then
	ff=$(filefrag -v "$V" | grep -cE '^ *[0-9]+:')
	assert_eq "vdi: host extents = filefrag -v" "$ff" "$(summary "$V" host-extents)"
	frag=$(filefrag "$V" | sed -E 's/.*: ([0-9]+) extents? found/\1/')
	[ "$frag" -le 3 ] && pass "vdi: $frag physically separate host extents after defrag" ||
		fail "vdi: $frag host extents after defrag (one fallocate should give few)"
	echo "measured: $d0 discontinuities, $runs0 host runs before; $runs1 runs, $frag filefrag extents after"
fi
if command -v qemu-img >/dev/null; then
	assert_rc "vdi: qemu-img check" 0 qemu-img check "$V"
	assert_rc "vdi: qemu-img compare" 0 qemu-img compare "$T/data.raw" "$V"
	# block offsets in the file now follow the guest order (qemu-img map)
	offs=$(qemu-img map --output=json "$V" | jq -r '[.[] | select(.data) | .offset] | join(" ")')
	assert_eq "vdi: qemu-img map: one data run at 2 MiB" "$((2 * MiB))" "$offs"
fi

# ---------------------------------------------------------------- VMDK
if command -v qemu-io >/dev/null; then
	M=$T/s.vmdk
	"$VDISK" create -O vmdk -o compat=workstation "$M" 24M
	cmds=()
	for i in 7 2 11 0 5 9 3 10 1 6 8 4; do
		cmds+=(-c "write -P $((i + 1)) $((i * 2))M 2M")
	done
	qemu-io -f vmdk "${cmds[@]}" "$M" >/dev/null
	qemu-img convert -O raw "$M" "$T/s.raw"
	d0=$(summary "$M" discontinuities)
	[ "$d0" -ge 8 ] && pass "vmdk: $d0 discontinuities before" || fail "vmdk: only $d0 discontinuities before"
	before=$(jinfo "$M")
	assert_rc "vmdk: defrag" 0 "$VDISK" defrag "$M"
	assert_eq "vmdk: no discontinuities after" 0 "$(summary "$M" discontinuities)"
	after=$(jinfo "$M")
	for k in uuid '"format-specific".data.cid' '"format-specific".data."adapter-type"' '"format-specific".data."hw-version"'; do
		assert_eq "vmdk: $k kept" "$(echo "$before" | jq -r ".$k")" "$(echo "$after" | jq -r ".$k")"
	done
	assert_rc "vmdk: qemu-img check" 0 qemu-img check "$M"
	assert_rc "vmdk: vdisk check" 0 "$VDISK" check "$M"
	assert_rc "vmdk: contents" 0 qemu-img compare "$T/s.raw" "$M"
fi

# ---------------------------------------------------------------- fixed VDI
"$VDISK" convert -O vdi -o subformat=fixed "$T/data.raw" "$T/f.vdi"
uuid=$(jinfo "$T/f.vdi" | jq -r .uuid)
assert_rc "fixed vdi: defrag" 0 "$VDISK" defrag "$T/f.vdi"
assert_eq "fixed vdi: still fixed" fixed "$(jinfo "$T/f.vdi" | jq -r .subformat)"
assert_eq "fixed vdi: uuid kept" "$uuid" "$(jinfo "$T/f.vdi" | jq -r .uuid)"
alloc=$(($(stat -c %b "$T/f.vdi") * 512))
[ "$alloc" -ge $((26 * MiB)) ] && pass "fixed vdi: fully allocated ($alloc)" || fail "fixed vdi: only $alloc bytes allocated"
assert_rc "fixed vdi: check" 0 "$VDISK" check "$T/f.vdi"
assert_rc "fixed vdi: contents" 0 "$VDISK" compare "$T/data.raw" "$T/f.vdi"

# ---------------------------------------------------------------- raw
R=$T/r.raw
truncate -s 64M "$R"
dd if="$T/data.raw" of="$R" bs=1M count=4 seek=3 conv=notrunc status=none
dd if="$T/data.raw" of="$R" bs=1M count=2 skip=4 seek=40 conv=notrunc status=none
cp --sparse=always "$R" "$T/r-orig.raw"
assert_rc "raw: defrag" 0 "$VDISK" defrag --output=json "$R"
assert_eq "raw: new file" '"new file"' "$(jq .method "$T/.out")"
assert_rc "raw: contents" 0 cmp "$T/r-orig.raw" "$R"
assert_eq "raw: size kept" $((64 * MiB)) "$(stat -c %s "$R")"
assert_eq "raw: zero ranges stay holes (6 MiB allocated)" $((6 * MiB)) "$(($(stat -c %b "$R") * 512))"
assert_eq "raw: map: two data ranges" 2 "$("$VDISK" map --output=json "$R" | jq '[.[] | select(.data)] | length')"

# ---------------------------------------------------------------- flat VMDK
"$VDISK" convert -O vmdk -o subformat=monolithicFlat "$R" "$T/fl.vmdk"
assert_rc "flat vmdk: defrag" 0 "$VDISK" defrag "$T/fl.vmdk"
alloc=$(($(stat -c %b "$T/fl-flat.vmdk") * 512))
[ "$alloc" -ge $((64 * MiB)) ] && pass "flat vmdk: extent reallocated in full" || fail "flat vmdk: only $alloc bytes allocated"
assert_rc "flat vmdk: contents" 0 "$VDISK" compare "$R" "$T/fl.vmdk"
assert_eq "flat vmdk: files" "fl-flat.vmdk fl.vmdk" "$(cd "$T" && echo fl*.vmdk)"

# ---------------------------------------------------------------- convert
# convert writes fixed outputs the same way: in guest order into space
# reserved up front (fixed VDI at create; flat VMDK and raw with
# -o preallocation=falloc)
"$VDISK" convert -O vmdk -o subformat=monolithicFlat,preallocation=falloc "$R" "$T/pf.vmdk"
alloc=$(($(stat -c %b "$T/pf-flat.vmdk") * 512))
[ "$alloc" -ge $((64 * MiB)) ] && pass "convert flat vmdk falloc: extent fully allocated" ||
	fail "convert flat vmdk falloc: only $alloc bytes allocated"
assert_rc "convert flat vmdk falloc: contents" 0 "$VDISK" compare "$R" "$T/pf.vmdk"
assert_rc "convert flat vmdk falloc: descriptor has no preallocation key" 1 grep -q preallocation "$T/pf.vmdk"
assert_rc "convert sparse vmdk falloc: refused" 1 "$VDISK" convert -O vmdk -o preallocation=falloc "$R" "$T/pf2.vmdk"
assert_contains "convert sparse vmdk falloc: says why" "needs a flat subformat" "$T/.err"
assert_rc "convert vmdk preallocation=bogus: refused" 1 \
	"$VDISK" convert -O vmdk -o subformat=monolithicFlat,preallocation=bogus "$R" "$T/pf3.vmdk"
assert_eq "convert refusals: nothing left" "" "$(ls "$T"/pf2* "$T"/pf3* 2>/dev/null; tmp_files "$T")"
# the VMDK backend owns the option, so create takes it too
assert_rc "create flat vmdk falloc" 0 "$VDISK" create -O vmdk -o subformat=twoGbMaxExtentFlat,preallocation=falloc "$T/pc.vmdk" 8M
alloc=$(($(stat -c %b "$T/pc-f001.vmdk") * 512))
[ "$alloc" -ge $((8 * MiB)) ] && pass "create flat vmdk falloc: extent fully allocated" ||
	fail "create flat vmdk falloc: only $alloc bytes allocated"
if command -v filefrag >/dev/null && [ "$(summary "$T/pf.vmdk" host-map)" = fiemap ]; then
	frag=$(filefrag "$T/pf-flat.vmdk" | sed -E 's/.*: ([0-9]+) extents? found/\1/')
	[ "$frag" -le 2 ] && pass "convert flat vmdk falloc: $frag host extents" || fail "convert flat vmdk falloc: $frag host extents"
fi

# ---------------------------------------------------------------- refusals
"$VDISK" convert -O vmdk -o subformat=streamOptimized "$R" "$T/st.vmdk"
assert_rc "streamOptimized: refused" 1 "$VDISK" defrag "$T/st.vmdk"
assert_contains "streamOptimized: says why" "streamOptimized" "$T/.err"
assert_rc "missing file" 1 "$VDISK" defrag "$T/nope.vdi"
assert_rc "a directory" 1 "$VDISK" defrag "$T"
assert_contains "a directory: says so" "not a regular file" "$T/.err"
assert_rc "no argument: usage" 1 "$VDISK" defrag
assert_rc "--help" 0 "$VDISK" defrag --help
assert_contains "--help mentions fallocate" "fallocate" "$T/.out"
assert_eq "no temporary file anywhere" "" "$(tmp_files "$T")"
finish
