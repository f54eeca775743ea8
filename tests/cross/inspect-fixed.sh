#!/usr/bin/env bash
# vdisk inspect on freshly converted fixed images: the zero ranges a
# sequential read skips (host holes, preallocated unwritten extents) do not
# cost a seek when the data after them lies where the file's layout puts
# it.  A raw image with alternating data and zero MiBs (and partly zero
# blocks) is converted to a fixed VDI and to monolithicFlat VMDKs (sparse
# and preallocation=falloc); the seeks vdisk counts equal the physical
# discontinuities filefrag -v shows inside the data area (filefrag's rule:
# an extent is contiguous with the previous one when it starts where the
# previous one, plus any hole between them, ends; written and unwritten
# neighbours merge).
. "$(dirname "$0")/../lib.sh"
need jq filefrag python3 openssl
MiB=$((1 << 20))

# A directory on a filesystem with FIEMAP: $T, else /var/tmp.
D=
for base in "$T" /var/tmp; do
	[ -d "$base" ] && [ -w "$base" ] || continue
	dd=$(mktemp -d "$base/vdisk-fixed.XXXXXX") || continue
	head -c 8192 /dev/urandom >"$dd/probe" && sync "$dd/probe" 2>/dev/null
	if filefrag -v "$dd/probe" >/dev/null 2>&1 && ! filefrag -v "$dd/probe" 2>&1 | grep -q 'FIBMAP\|not supported'; then
		D=$dd
		break
	fi
	rm -rf "$dd"
done
[ -n "$D" ] || skip "no writable filesystem with FIEMAP (tried $T, /var/tmp)"
[ "$D" = "${D#"$T"}" ] && on_exit "rm -rf '$D'"
echo "working in $D ($(stat -f -c %T "$D"))"

# 48 MiB: even MiBs data; every fourth odd MiB has 8 KiB of data in its middle
truncate -s 48M "$D/src.raw"
for ((i = 0; i < 48; i++)); do
	if ((i % 2 == 0)); then
		rand_bytes "m$i" $MiB | dd of="$D/src.raw" bs=1M seek=$i conv=notrunc status=none
	elif ((i % 8 == 1)); then
		rand_bytes "p$i" 8192 | dd of="$D/src.raw" bs=4K seek=$((i * 256 + 128)) conv=notrunc status=none
	fi
done

# expected_seeks JSON FILE: physical discontinuities in FILE (filefrag -v
# -b1) at file offsets strictly inside the range the data runs span
expected_seeks() {
	filefrag -v -b1 "$2" >"$T/ff.txt" || { echo "filefrag failed"; return; }
	python3 - "$1" "$T/ff.txt" <<'EOF'
import json, re, sys
j = json.load(open(sys.argv[1]))
data = [r for r in j["runs"] if r["kind"] == "data"]
lo = min(r["offset"] for r in data)
hi = max(r["offset"] + r["length"] for r in data)
ext = []
for l in open(sys.argv[2]):
    m = re.match(r"\s*\d+:\s*(\d+)\.\.\s*(\d+):\s*(\d+)\.\.\s*(\d+):\s*(\d+):", l)
    if m:
        a, b, p, q, n = map(int, m.groups())
        ext.append((a, p, b - a + 1))
n = 0
for (la, pa, na), (lb, pb, nb) in zip(ext, ext[1:]):
    if pb != pa + na + (lb - (la + na)) and lo < lb < hi:
        n += 1
print(n)
EOF
}

# check WHAT IMAGE DATAFILE
check() {
	local what=$1 img=$2 file=$3 want got
	"$VDISK" inspect --output=json "$img" >"$T/i.json" 2>"$T/i.err" || { fail "$what: inspect: $(cat "$T/i.err")"; return; }
	assert_eq "$what: host_map" fiemap "$(jq -r '.summary."host-map"' "$T/i.json")"
	assert_eq "$what: allocated = the source's data" $((24 * MiB + 6 * 8192)) "$(jq '.summary."allocated-bytes"' "$T/i.json")"
	want=$(expected_seeks "$T/i.json" "$file")
	got=$(jq '.summary.seeks' "$T/i.json")
	assert_eq "$what: seeks = filefrag's physical discontinuities in the data area" "$want" "$got"
	assert_eq "$what: seek marks = host runs" "$(jq '.summary."host-runs"' "$T/i.json")" \
		"$(jq '[.runs[] | select(.seek)] | length' "$T/i.json")"
	if [ "$got" -le 1 ]; then pass "$what: $got seeks (contiguous file)"; else
		echo "note: $what: the host fragmented the file ($got seeks, as filefrag)"; fi
	assert_rc "$what: contents" 0 "$VDISK" compare "$D/src.raw" "$img"
}

"$VDISK" convert -O vdi -o subformat=fixed "$D/src.raw" "$D/f.vdi" || fail "convert to fixed VDI"
check "fixed VDI" "$D/f.vdi" "$D/f.vdi"
"$VDISK" convert -O vmdk -o subformat=monolithicFlat,preallocation=falloc "$D/src.raw" "$D/p.vmdk" ||
	fail "convert to preallocated monolithicFlat"
check "monolithicFlat, preallocated" "$D/p.vmdk" "$D/p-flat.vmdk"
"$VDISK" convert -O vmdk -o subformat=monolithicFlat "$D/src.raw" "$D/s.vmdk" || fail "convert to monolithicFlat"
check "monolithicFlat, sparse" "$D/s.vmdk" "$D/s-flat.vmdk"
finish
