#!/usr/bin/env bash
# Cross-checks vdisk inspect against independent tools:
#   - the host extents it reports for a file equal filefrag -v's (same
#     count, same logical and physical ranges) on deliberately fragmented
#     files: two files written alternately in 64 KiB chunks, fsync after
#     each, on a local ext4 (or other FIEMAP-capable) filesystem;
#   - every data run's host position is where filefrag puts its file
#     offset; the host run count and median follow from filefrag's extents;
#   - the image-file offsets of the data equal qemu-img map --output=json's
#     for VDIs written in reverse, shuffled and sparse order by qemu-io;
#   - a split VMDK (twoGbMaxExtentSparse): runs name their extent files,
#     host extents cover every file.
. "$(dirname "$0")/../lib.sh"
need jq filefrag python3 openssl
MiB=$((1 << 20))

# A directory on a filesystem with FIEMAP: $T, else /var/tmp.
D=
for base in "$T" /var/tmp; do
	[ -d "$base" ] && [ -w "$base" ] || continue
	dd=$(mktemp -d "$base/vdisk-frag.XXXXXX") || continue
	head -c 8192 /dev/zero >"$dd/probe" && sync "$dd/probe" 2>/dev/null
	if filefrag -v "$dd/probe" >/dev/null 2>&1 && ! filefrag -v "$dd/probe" 2>&1 | grep -q 'FIBMAP\|not supported'; then
		D=$dd
		break
	fi
	rm -rf "$dd"
done
[ -n "$D" ] || skip "no writable filesystem with FIEMAP (tried $T, /var/tmp)"
[ "$D" = "${D#"$T"}" ] && on_exit "rm -rf '$D'"
echo "working in $D ($(stat -f -c %T "$D"))"

# append FILE SEED BYTES: append and fsync
append() { rand_bytes "$2" "$3" | dd of="$1" bs=64K oflag=append conv=notrunc,fsync status=none; }

# filefrag -v -b1 FILE -> "logical physical length" per extent, bytes
ff_extents() {
	filefrag -v -b1 "$1" | sed -n 's/^ *[0-9][0-9]*: *\([0-9]*\)\.\. *\([0-9]*\): *\([0-9]*\)\.\. *\([0-9]*\):.*/\1 \3 \2/p' |
		awk '{ print $1, $2, $3 - $1 + 1 }'
}
vd_extents() { jq -r '."host-extents"[] | "\(.logical) \(.physical) \(.length)"' "$1"; }

# ---- two files written alternately: both fragmented
# c.raw: 64 KiB chunks with 64 KiB holes between them (filefrag counts a
# hole followed by data where the hole would have ended as contiguous)
for i in $(seq 1 24); do
	append "$D/a.raw" "a$i" 65536
	append "$D/b.raw" "b$i" 65536
	rand_bytes "c$i" 65536 | dd of="$D/c.raw" bs=64K seek=$((2 * i)) conv=notrunc,fsync status=none
done
n_ff=$(ff_extents "$D/a.raw" | wc -l)
[ "$n_ff" -gt 1 ] || skip "the filesystem did not fragment the test file ($n_ff extent)"
for f in a b c; do
	"$VDISK" inspect --output=json "$D/$f.raw" >"$T/$f.json" || fail "inspect $f.raw"
	assert_eq "$f.raw: host_map" fiemap "$(jq -r '.summary."host-map"' "$T/$f.json")"
	ff_extents "$D/$f.raw" >"$T/$f.ff"
	vd_extents "$T/$f.json" >"$T/$f.vd"
	assert_eq "$f.raw: host extent count = filefrag's" "$(wc -l <"$T/$f.ff")" "$(jq '.summary."host-extents"' "$T/$f.json")"
	assert_eq "$f.raw: host extents (logical physical length) = filefrag -v" "$(cat "$T/$f.ff")" "$(cat "$T/$f.vd")"
	# filefrag's "N extents found" counts physically separate extents
	found=$(filefrag "$D/$f.raw" | sed -n 's/.*: \([0-9]*\) extents\{0,1\} found/\1/p')
	assert_eq "$f.raw: physically separate extents = filefrag's count" "$found" "$(jq '.summary."host-fragments"' "$T/$f.json")"
done

# every data run sits where filefrag maps its file offset; host runs and
# their median follow from filefrag's extents merged where contiguous
# check_runs WHAT JSON FFLIST [NAME=FFLIST...]: FFLIST for the image file,
# NAME=FFLIST for the extent files of split images (by base name)
check_runs() {
	local out what=$1; shift
	out=$(python3 - "$@" <<'EOF'
import json, os, sys
j = json.load(open(sys.argv[1]))
def load(p):
    return [tuple(map(int, l.split())) for l in open(p) if l.strip()]
exts = {None: load(sys.argv[2])}
for a in sys.argv[3:]:
    name, p = a.split("=", 1)
    exts[name] = load(p)
bad = 0
for r in j["runs"]:
    if r["kind"] != "data":
        continue
    f, n = r["offset"], r["length"]
    ext = exts[os.path.basename(r["filename"]) if "filename" in r else None]
    hit = [e for e in ext if e[0] <= f and f + n <= e[0] + e[2]]
    if len(hit) != 1 or r.get("host-physical") != hit[0][1] + f - hit[0][0]:
        bad += 1
        print("run at guest %d (file %d+%d): host %s, filefrag %s" % (r["start"], f, n, r.get("host-physical"), hit), file=sys.stderr)
# sequential read of the guest: host positions in guest order, merged where
# contiguous; a range the read skips (not data) that follows the run in the
# same file moves the position where the run would continue by its length
# (filefrag's rule for holes)
runs = []
end = fend = fname = None
for r in j["runs"]:
    if r["kind"] != "data":
        if end is not None and r.get("offset") == fend and r.get("filename") == fname:
            end += r["length"]
            fend += r["length"]
        continue
    p = r["host-physical"]
    if end is not None and p == end:
        runs[-1] += r["length"]
    else:
        runs.append(r["length"])
    end = p + r["length"]
    fend, fname = r["offset"] + r["length"], r.get("filename")
s = sorted(runs)
n = len(s)
med = (s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) // 2) if n else 0
print(bad, n, med)
EOF
	) || { fail "$what: python check failed"; return; }
	read -r bad nruns med <<<"$out"
	assert_eq "$what: data runs at filefrag's physical offsets" 0 "$bad"
	assert_eq "$what: host runs of a sequential read" "$nruns" "$(jq '.summary."host-runs"' "$1")"
	assert_eq "$what: median host run" "$med" "$(jq '.summary."host-run-median"' "$1")"
}
check_runs a.raw "$T/a.json" "$T/a.ff"
check_runs c.raw "$T/c.json" "$T/c.ff"
# every extent of c.raw holds data: a sequential read costs one run per
# extent filefrag finds (its holes cost nothing where filefrag sees none)
assert_eq "c.raw: host runs = filefrag's extents found" \
	"$(filefrag "$D/c.raw" | sed -n 's/.*: \([0-9]*\) extents\{0,1\} found/\1/p')" "$(jq '.summary."host-runs"' "$T/c.json")"

# ---- VDIs written by qemu-io in chosen block orders, on a fragmented file
if command -v qemu-io >/dev/null && command -v qemu-img >/dev/null; then
	# data ranges [[start,length,offset],...] merged where guest and file are contiguous
	MERGE_JQ='reduce .[] as $r ([]; if length > 0 and (.[length-1][0] + .[length-1][1]) == $r[0]
	                  and (.[length-1][2] + .[length-1][1]) == $r[2]
	          then .[length-1][1] += $r[1] else . + [$r] end)'
	# mkvdi NAME BLOCKS...: 1 MiB blocks written in that order, another file
	# grown with fsync between the writes so the VDI file fragments too
	mkvdi() {
		local name=$1 b; shift
		qemu-img create -q -f vdi "$D/$name.vdi" 32M
		for b in "$@"; do
			qemu-io -f vdi -c "write -P $((b + 1)) $((b * MiB)) 1M" -c flush "$D/$name.vdi" >/dev/null
			sync "$D/$name.vdi" 2>/dev/null
			append "$D/other-$name" "$name$b" 262144
		done
	}
	mkvdi reverse 9 8 7 6 5 4 3 2 1 0
	mkvdi shuffled 5 17 2 30 0 11 8 23 1
	mkvdi sparse 0 1 2 10 11 20 31
	for name in reverse shuffled sparse; do
		v="$D/$name.vdi"
		"$VDISK" inspect --output=json "$v" >"$T/$name.json" || { fail "inspect $name.vdi"; continue; }
		q=$(qemu-img map -f vdi --output=json "$v" | jq -c "[.[] | select(.data) | [.start, .length, .offset]] | $MERGE_JQ")
		w=$(jq -c "[.runs[] | select(.kind == \"data\") | [.start, .length, .offset]] | $MERGE_JQ" "$T/$name.json")
		if [ -z "$q" ] || [ "$q" = "[]" ]; then fail "$name: qemu-img map gave no data"; continue; fi
		assert_eq "$name.vdi: image-file offsets = qemu-img map" "$q" "$w"
		ff_extents "$v" >"$T/$name.ff"
		assert_eq "$name.vdi: host extents = filefrag -v" "$(cat "$T/$name.ff")" "$(vd_extents "$T/$name.json")"
		check_runs "$name.vdi" "$T/$name.json" "$T/$name.ff"
	done
	assert_eq "reverse.vdi: discontinuities" 9 "$(jq '.summary."discontinuities"' "$T/reverse.json")"
	# shuffled: guest blocks 0 1 2 5 8 11 17 23 30 sit in slots 4 8 2 0 6 5 1 7 3,
	# no block in the slot after its guest predecessor's
	assert_eq "shuffled.vdi: discontinuities" 8 "$(jq '.summary."discontinuities"' "$T/shuffled.json")"
	assert_eq "sparse.vdi: discontinuities (guest gaps are not file gaps)" 0 "$(jq '.summary."discontinuities"' "$T/sparse.json")"

	# a split VMDK: the runs name their extent file, host extents of all files
	if qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse "$D/split.vmdk" 5G 2>/dev/null &&
	   "$VDISK" info "$D/split.vmdk" >/dev/null 2>&1; then
		for w in "1 3072M" "2 0" "3 4100M"; do
			set -- $w
			qemu-io -f vmdk -c "write -P $1 $2 1M" "$D/split.vmdk" >/dev/null
			append "$D/other-split" "split$1" 262144
		done
		"$VDISK" inspect --output=json "$D/split.vmdk" >"$T/split.json" || fail "inspect split.vmdk"
		args=() nv=0 nf=0
		for f in "$D"/split*.vmdk; do
			b=$(basename "$f")
			ff_extents "$f" >"$T/$b.ff"
			nv=$((nv + $(wc -l <"$T/$b.ff")))
			nf=$((nf + $(filefrag "$f" | sed -n 's/.*: \([0-9]*\) extents\{0,1\} found/\1/p')))
			[ "$b" = split.vmdk ] || args+=("$b=$T/$b.ff")
		done
		assert_eq "split.vmdk: runs in 3 extent files" 3 \
			"$(jq '[.runs[] | select(.kind == "data") | .filename] | unique | length' "$T/split.json")"
		assert_eq "split.vmdk: host extents of all files = filefrag -v" "$nv" "$(jq '.summary."host-extents"' "$T/split.json")"
		assert_eq "split.vmdk: physically separate = filefrag's counts" "$nf" "$(jq '.summary."host-fragments"' "$T/split.json")"
		check_runs split.vmdk "$T/split.json" "$T/split.vmdk.ff" "${args[@]}"
		q=$(qemu-img map -f vmdk --output=json "$D/split.vmdk" | jq -c "[.[] | select(.data) | [.start, .length, .offset]] | $MERGE_JQ")
		w=$(jq -c "[.runs[] | select(.kind == \"data\") | [.start, .length, .offset]] | $MERGE_JQ" "$T/split.json")
		assert_eq "split.vmdk: extent-file offsets = qemu-img map" "$q" "$w"
	else
		echo "note: no split VMDK support (qemu-img or vdisk), split images not cross-checked"
	fi
else
	echo "note: qemu-io/qemu-img not installed, image-file offsets not cross-checked"
fi
finish
