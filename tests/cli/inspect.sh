#!/usr/bin/env bash
# vdisk inspect without external references: a VDI whose blocks lie in the
# file in reverse guest order (written with convert -n, one more block per
# step) shows one discontinuity per block but the first, an in-order VDI
# shows none; JSON totals add up (runs cover the guest, data runs sum to the
# allocated bytes, seek marks count the host runs); the SVG is well-formed,
# has its legend and the JSON's numbers; a filesystem without FIEMAP is
# named; usage errors.
. "$(dirname "$0")/../lib.sh"
need jq openssl
MiB=$((1 << 20))

put() { rand_bytes "$3" "$2" | dd of="$1" bs=64K seek="$4" oflag=seek_bytes conv=notrunc status=none; }

# ---- usage
assert_rc "inspect --help" 0 "$VDISK" inspect --help
assert_contains "inspect --help usage line" "Usage: vdisk inspect" "$T/.out"
for o in --output svg --verbose --format --allow-devices; do
	assert_contains "inspect --help mentions $o" "$o" "$T/.out"
done
assert_rc "vdisk --help lists inspect" 0 "$VDISK" --help
assert_contains "vdisk --help lists inspect" "  inspect " "$T/.out"
assert_rc "inspect --output=bogus fails" 1 "$VDISK" inspect --output=bogus "$T/none"
assert_contains "inspect --output=bogus names the value" "bogus" "$T/.err"
assert_rc "inspect without image fails" 1 "$VDISK" inspect
assert_rc "inspect of a missing file fails" 1 "$VDISK" inspect "$T/none.vdi"

# ---- a VDI in reverse guest order: block i in slot N-1-i
N=8
"$VDISK" create -f vdi "$T/rev.vdi" 16M >/dev/null
: >"$T/src.raw"
truncate -s 16M "$T/src.raw"
for ((i = N - 1; i >= 0; i--)); do
	put "$T/src.raw" $MiB "blk$i" $((i * MiB))
	"$VDISK" convert -n -O vdi "$T/src.raw" "$T/rev.vdi" || fail "convert -n step $i"
done
assert_rc "reverse VDI has the source's contents" 0 "$VDISK" compare "$T/src.raw" "$T/rev.vdi"
"$VDISK" inspect --output=json "$T/rev.vdi" >"$T/rev.json" 2>"$T/rev.err" || fail "inspect --output=json rev.vdi: $(cat "$T/rev.err")"
jq . "$T/rev.json" >/dev/null 2>&1 || fail "inspect JSON does not parse"
sj() { jq -r ".summary.\"$1\"" "$T/rev.json"; }
assert_eq "reverse: discontinuities" $((N - 1)) "$(sj discontinuities)"
assert_eq "reverse: out-of-order blocks" $((N - 1)) "$(sj out-of-order-blocks)"
assert_eq "reverse: data blocks" $N "$(sj data-blocks)"
assert_eq "reverse: out-of-order share" "true" "$(jq '.summary."out-of-order-share" == 0.875' "$T/rev.json")"
assert_eq "reverse: allocated bytes" $((N * MiB)) "$(sj allocated-bytes)"
assert_eq "reverse: block size" $MiB "$(sj cluster-size)"
# file offsets: guest block i lives in slot N-1-i (slots follow each other)
first_slot=$(jq '[.runs[] | select(.kind == "data") | .offset] | min' "$T/rev.json")
want=$(for ((i = 0; i < N; i++)); do echo "$((i * MiB)) $((first_slot + (N - 1 - i) * MiB))"; done)
got=$(jq -r '.runs[] | select(.kind == "data") | "\(.start) \(.offset)"' "$T/rev.json" |
	awk -v M=$MiB '{ # pieces split at host extents: keep the block starts
		if ($1 % M == 0) print $1, $2 }')
assert_eq "reverse: each block in its reversed slot" "$want" "$got"
assert_eq "reverse: discontinuity marks" $((N - 1)) "$(jq '[.runs[] | select(.discontinuity)] | length' "$T/rev.json")"

# JSON totals add up
check_totals() { # WHAT JSON
	local j=$2
	assert_eq "$1: data runs sum to allocated_bytes" "$(jq '.summary."allocated-bytes"' "$j")" \
		"$(jq '[.runs[] | select(.kind == "data") | .length] | add // 0' "$j")"
	assert_eq "$1: runs cover the guest" "$(jq '.summary."virtual-size"' "$j")" \
		"$(jq '[.runs[] | .length] | add // 0' "$j")"
	assert_eq "$1: runs are consecutive" "true" \
		"$(jq '[.runs as $r | range(1; $r | length) | $r[.].start == $r[. - 1].start + $r[. - 1].length] | all' "$j")"
	assert_eq "$1: kinds add up" "$(jq '.summary."virtual-size"' "$j")" \
		"$(jq '.summary | ."allocated-bytes" + ."zero-bytes" + ."hole-bytes" + ."unallocated-bytes"' "$j")"
	assert_eq "$1: run count" "$(jq '.runs | length' "$j")" "$(jq '.summary."runs"' "$j")"
	assert_eq "$1: seek marks = host runs" "$(jq '.summary."host-runs"' "$j")" \
		"$(jq '[.runs[] | select(.seek)] | length' "$j")"
	assert_eq "$1: host run bytes = allocated" "$(jq '.summary."allocated-bytes"' "$j")" \
		"$(jq '.summary."host-run-bytes"' "$j")"
}
check_totals reverse "$T/rev.json"

# ---- the same contents in guest order: no discontinuity
"$VDISK" convert -O vdi "$T/src.raw" "$T/inorder.vdi"
"$VDISK" inspect --output=json "$T/inorder.vdi" >"$T/in.json"
assert_eq "in order: discontinuities" 0 "$(jq '.summary."discontinuities"' "$T/in.json")"
assert_eq "in order: out-of-order blocks" 0 "$(jq '.summary."out-of-order-blocks"' "$T/in.json")"
check_totals "in order" "$T/in.json"

# ---- a sparse raw file: holes are unallocated, never discontinuities
truncate -s 8M "$T/sparse.raw"
put "$T/sparse.raw" 65536 s1 0
put "$T/sparse.raw" 131072 s2 $((5 * MiB))
"$VDISK" inspect --output=json "$T/sparse.raw" >"$T/sparse.json"
assert_eq "sparse raw: allocated" 196608 "$(jq '.summary."allocated-bytes"' "$T/sparse.json")"
assert_eq "sparse raw: discontinuities" 0 "$(jq '.summary."discontinuities"' "$T/sparse.json")"
assert_eq "sparse raw: file offset = guest offset" "true" \
	"$(jq '[.runs[] | select(.offset != null) | .offset == .start] | all' "$T/sparse.json")"
check_totals "sparse raw" "$T/sparse.json"

# ---- human form: one screen, verbose lists every run
"$VDISK" inspect "$T/rev.vdi" >"$T/h.txt"
assert_contains "human: discontinuities" "$((N - 1)) discontinuities, 87.5% of blocks out of guest order" "$T/h.txt"
lines=$(wc -l <"$T/h.txt")
if [ "$lines" -le 24 ]; then pass "human form fits one screen ($lines lines)"; else fail "human form has $lines lines"; fi
"$VDISK" inspect -v "$T/rev.vdi" >"$T/v.txt"
assert_eq "verbose: one line per run" "$(jq '.summary."runs"' "$T/rev.json")" \
	"$(grep -cE '^ *[0-9]+: ' "$T/v.txt")"
assert_eq "verbose: discont flags" $((N - 1)) "$(grep -cE 'discont(,|$)' "$T/v.txt")"

# ---- SVG: well-formed, legend, the JSON's numbers
"$VDISK" inspect --output=svg "$T/rev.vdi" >"$T/rev.svg" || fail "inspect --output=svg"
if command -v xmllint >/dev/null; then
	assert_rc "SVG is well-formed (xmllint)" 0 xmllint --noout "$T/rev.svg"
elif command -v python3 >/dev/null; then
	assert_rc "SVG is well-formed (python3)" 0 python3 -c 'import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])' "$T/rev.svg"
else
	fail "neither xmllint nor python3 to check the SVG"
fi
assert_contains "SVG has a legend" 'id="legend"' "$T/rev.svg"
assert_contains "SVG legend names zero blocks" "zero block" "$T/rev.svg"
assert_contains "SVG legend names unallocated space" "unallocated" "$T/rev.svg"
svgval() { sed -n "s/.*id=\"$1\" data-value=\"\([^\"]*\)\".*/\1/p" "$T/rev.svg"; }
for k in virtual_size allocated_bytes discontinuities host_extents host_runs host_run_median; do
	assert_eq "SVG $k = JSON" "$(jq ".summary.\"${k//_/-}\"" "$T/rev.json")" "$(svgval $k)"
done
assert_eq "SVG: data and unallocated cells both drawn" "2" \
	"$(grep -oE 'class="(data|unallocated)"' "$T/rev.svg" | sort -u | wc -l)"
assert_eq "SVG: seek marks in the grid" "$(jq '.summary."host-runs"' "$T/rev.json")" \
	"$(grep -c 'class="seek"' "$T/rev.svg")"

# ---- a filesystem without FIEMAP is named, not an error
if [ -d /dev/shm ] && [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then
	S=$(mktemp -d /dev/shm/vdisk-test.XXXXXX)
	on_exit "rm -rf '$S'"
	cp "$T/rev.vdi" "$S/rev.vdi"
	assert_rc "inspect on tmpfs succeeds" 0 "$VDISK" inspect "$S/rev.vdi"
	assert_contains "tmpfs: says FIEMAP is not supported" "(tmpfs) does not support FIEMAP" "$T/.out"
	"$VDISK" inspect --output=json "$S/rev.vdi" >"$T/shm.json"
	assert_eq "tmpfs: host_map" "none" "$(jq -r '.summary."host-map"' "$T/shm.json")"
	assert_eq "tmpfs: discontinuities still counted" $((N - 1)) "$(jq '.summary."discontinuities"' "$T/shm.json")"
	assert_eq "tmpfs: image-file runs" "$N" "$(jq '.summary."host-runs"' "$T/shm.json")"
else
	echo "note: /dev/shm is not tmpfs, FIEMAP-less case not tested"
fi
finish
