#!/bin/bash
# The JSON of every command against the key lists of vdisk(1), JSON OUTPUT:
# runs each command's --output=json on representative images (raw, VDI
# dynamic, VMDK sparse, MBR and GPT disks, an MBR with overlapping
# partitions) and checks, for every run:
#   - the output is one non-empty JSON value;
#   - every key path it has is listed, with the listed type;
#   - every listed path that is not marked "optional" is there whenever its
#     parent is (an element of a non-empty array, an object that exists);
# and for every command, that each listed path that is not optional turned up
# in at least one run (no listed key that no command prints).
# JSON_DUMP=1 prints the paths and types seen, to write the list from.
. "$(dirname "$0")/../lib.sh"
need jq sfdisk mkswap openssl

MAN=$TOP/../man/vdisk.1
[ -f "$MAN" ] || MAN=$(dirname "$0")/../../man/vdisk.1
MiB=1048576

# ---- the lists, from the man page: ".SS CMD" then ".nf" PATH TYPE [optional] ".fi"
sed -n '/^\.SH JSON OUTPUT/,/^\.SH /p' "$MAN" |
	awk '/^\.SS / { cmd = $2; next }
	     /^\.nf/ { inlist = 1; next }
	     /^\.fi/ { inlist = 0; next }
	     inlist && cmd != "" && NF >= 2 { print cmd "\t" $1 "\t" $2 "\t" ($3 == "optional" ? "optional" : "") }' |
	sed 's/\\-/-/g; s/\\(dq/"/g; s/\\&//g' >"$T/doc.tsv"
[ -s "$T/doc.tsv" ] && pass "vdisk(1) JSON OUTPUT has key lists" || fail "no key lists in $MAN"

# every path with its type, one "PATH<TAB>TYPE" a line (arrays' indices as [])
paths_of() {
	jq -r 'paths as $p | [($p | map(if type == "number" then "[]" else . end) | join(".")), (getpath($p) | type)] | @tsv' "$1" |
		sed 's/\.\[\]/[]/g'
}

# run CMD WHAT ARGS...: vdisk CMD ARGS, whatever its exit status (check and
# compare report through it), then check its JSON against the list of CMD
runs=0
run() {
	local cmd=$1 what=$2 out; shift 2
	runs=$((runs + 1))
	out=$T/run$runs.json
	"$VDISK" "$cmd" "$@" >"$out" 2>"$T/run.err" || true
	if [ ! -s "$out" ]; then fail "$cmd $what: no output ($(head -c 200 "$T/run.err"))"; return; fi
	# jq 1.6 -e passes on empty input: the size is checked above
	if ! jq -e 'type == "object" or type == "array"' "$out" >/dev/null 2>&1; then
		fail "$cmd $what: not one JSON object or array: $(head -c 200 "$out")"; return; fi
	paths_of "$out" | sort -u >"$T/got.tsv"
	awk -F'\t' -v c="$cmd" '$1 == c { print $2 "\t" $3 "\t" $4 }' "$T/doc.tsv" >"$T/want.tsv"
	if [ "${JSON_DUMP:-}" = 1 ]; then sed "s/^/$cmd\t/" "$T/got.tsv" >>"$T/dump.tsv"; fi
	cut -f1 "$T/got.tsv" | sed "s/^/$cmd\t/" >>"$T/seen.tsv"
	# listed, with the listed type
	local bad
	bad=$(awk -F'\t' 'NR == FNR { t[$1] = $2; next }
		!($1 in t) { print "unlisted key " $1 " (" $2 ")"; next }
		{ n = split(t[$1], a, "|"); ok = 0; for (i = 1; i <= n; i++) if (a[i] == $2) ok = 1
		  if (!ok) print $1 " is " $2 ", listed as " t[$1] }' "$T/want.tsv" "$T/got.tsv")
	# present whenever the parent is
	bad+=$(awk -F'\t' 'NR == FNR { have[$1] = 1; if ($2 == "object" || $2 == "array") cont[$1] = 1; next }
		$3 != "optional" && $1 !~ /\[\]$/ { p = $1; sub(/(\[\]|\.?[^.[]+)$/, "", p)
		  if ((p == "" || (p in cont)) && !($1 in have)) print "\nmissing key " $1 }' "$T/got.tsv" "$T/want.tsv")
	if [ -z "$bad" ]; then pass "$cmd $what: keys and types as listed"; else
		fail "$cmd $what: $(echo "$bad" | grep . | head -8 | tr '\n' ';')"; fi
}

# ---- images
"$VDISK" create -O raw "$T/e.img" 8M
truncate -s 8M "$T/d.img"
rand_bytes a $MiB | dd of="$T/d.img" bs=1M seek=2 conv=notrunc status=none
"$VDISK" convert -O vdi "$T/d.img" "$T/d.vdi"
"$VDISK" convert -O vmdk "$T/d.img" "$T/d.vmdk"
# MBR: a swap partition (content), an empty one (no content), a logical one
truncate -s 16M "$T/swap.img"
mkswap -L sw "$T/swap.img" >/dev/null 2>&1
printf 'label: dos\nlabel-id: 0x1234abcd\n,16MiB,S,*,file=%s\n,4MiB,L\n,,E\n,2MiB,L\n' "$T/swap.img" >"$T/mbr.sf"
run create "MBR VMDK with a partition file" -O vmdk --script "$T/mbr.sf" --output=json "$T/mbr.vmdk" 32M
"$VDISK" convert -O raw "$T/mbr.vmdk" "$T/mbr.img"
"$VDISK" convert -O vdi "$T/mbr.vmdk" "$T/mbr.vdi"
# GPT
truncate -s 16M "$T/gpt.img"
printf 'label: gpt\nsize=4MiB, type=L, name=one\nsize=4MiB, type=S\n' | sfdisk -q "$T/gpt.img" >/dev/null 2>&1 ||
	fail "sfdisk could not write a GPT"
# MBR with two overlapping primaries (written by hand: the tools refuse it)
truncate -s 8M "$T/ov.img"
mbr_entry() { # N TYPE START SIZE
	local o=$((446 + 16 * ($1 - 1))) b
	b=$(printf '\\x00\\x00\\x00\\x00\\x%02x\\x00\\x00\\x00' "$2")
	for v in "$3" "$4"; do b+=$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $((v & 255)) $(((v >> 8) & 255)) $(((v >> 16) & 255)) $((v >> 24))); done
	printf "$b" | dd of="$T/ov.img" bs=1 seek=$o conv=notrunc status=none
}
mbr_entry 1 131 2048 4096
mbr_entry 2 131 4096 4096
printf '\x55\xaa' | dd of="$T/ov.img" bs=1 seek=510 conv=notrunc status=none

# ---- the commands
"$VDISK" convert -O vmdk -o subformat=monolithicFlat "$T/d.img" "$T/f.vmdk"
# a child (snapshot chain): info's backing keys
"$VDISK" create -O vmdk -B d.vmdk "$T/c.vmdk"
for f in e.img d.vdi d.vmdk f.vmdk c.vmdk swap.img mbr.img gpt.img ov.img; do
	run info "$f" --output=json "$T/$f"
	run map "$f" --output=json "$T/$f"
	run check "$f" --output=json "$T/$f"
	run inspect "$f" --output=json "$T/$f"
done
for f in mbr.img mbr.vdi gpt.img ov.img; do run geometry "$f" --output=json "$T/$f"; done
run geometry "a size" --output=json 10G
run mbr mbr.img --output=json "$T/mbr.img"
run compare "identical" --output=json "$T/d.img" "$T/d.vdi"
run compare "different" --output=json "$T/e.img" "$T/d.vdi"
run zerofree "mbr.vdi -n" -n --output=json "$T/mbr.vdi"
run zerofree "mbr.vdi" --output=json "$T/mbr.vdi"
run compact "d.vdi" --output=json "$T/d.vdi"
run compact "d.img (in place)" --output=json "$T/d.img"
run defrag "d.vmdk" --output=json "$T/d.vmdk"
"$VDISK" create -O vmdk -B d.vmdk "$T/c2.vmdk"
run commit "c2.vmdk" --output=json "$T/c2.vmdk"
"$VDISK" create -O vmdk -B d.vmdk "$T/c3.vmdk"
run rebase "c3.vmdk -u" -u -B d.vmdk --output=json "$T/c3.vmdk"

# ---- every listed key turned up somewhere, but for these (optional, and
# not printed for the images above: a VDI comment, FIEMAP-less host note)
untested='info format-specific.data.comment
inspect summary.host-note'
if [ "${JSON_DUMP:-}" = 1 ]; then sort -u "$T/dump.tsv"; fi
sort -u "$T/seen.tsv" >"$T/seen.u"
missing=$(awk -F'\t' 'NR == FNR { s[$1 "\t" $2] = 1; next } !(($1 "\t" $2) in s) { print $1 " " $2 }' \
	"$T/seen.u" "$T/doc.tsv" | grep -vxF "$untested")
assert_eq "every listed key is printed by some run" "" "$missing"
for c in info map check compare commit rebase geometry mbr inspect zerofree compact defrag create; do
	grep -q "^$c	" "$T/doc.tsv" && pass "vdisk(1) lists the keys of $c" || fail "vdisk(1) has no key list for $c"
done

# ---- qemu-img's names where users switch tools: the keys both print agree
if command -v qemu-img >/dev/null; then
	for f in d.vdi d.vmdk; do
		for c in info map check; do
			"$VDISK" $c --output=json "$T/$f" >"$T/v.json" 2>/dev/null || true
			qemu-img $c --output=json "$T/$f" >"$T/q.json" 2>/dev/null || true
			[ -s "$T/q.json" ] || continue
			common=$(jq -n --slurpfile v "$T/v.json" --slurpfile q "$T/q.json" \
				'[$q[0] | if type == "array" then .[0] else . end | paths(scalars) | map(tostring) | join(".")] as $qp |
				 [$v[0] | if type == "array" then .[0] else . end | paths(scalars) | map(tostring) | join(".")] as $vp |
				 [$qp[] | select(. as $k | $vp | index([$k]))] | length')
			[ "$common" -gt 0 ] && pass "$c $f: shares $common key paths with qemu-img" ||
				fail "$c $f: no key path in common with qemu-img $c"
		done
		# the values of the keys both print
		v=$(jq -c '[."virtual-size", .filename, .format, ."cluster-size"]' <("$VDISK" info --output=json "$T/$f"))
		q=$(jq -c '[."virtual-size", .filename, .format, ."cluster-size"]' <(qemu-img info --output=json "$T/$f"))
		assert_eq "info $f: virtual-size, filename, format, cluster-size as qemu-img" "$q" "$v"
	done
	assert_eq "info d.vmdk: cid, parent-cid, create-type as qemu-img" \
		"$(qemu-img info --output=json "$T/d.vmdk" | jq -c '."format-specific".data | [.cid, ."parent-cid", ."create-type"]')" \
		"$("$VDISK" info --output=json "$T/d.vmdk" | jq -c '."format-specific".data | [.cid, ."parent-cid", ."create-type"]')"
	assert_eq "check d.vdi: check-errors and format as qemu-img" \
		"$(qemu-img check --output=json "$T/d.vdi" | jq -c '[."check-errors", .format]')" \
		"$("$VDISK" check --output=json "$T/d.vdi" | jq -c '[."check-errors", .format]')"
	assert_eq "map d.vdi: start, length, depth, zero, data, offset as qemu-img" \
		"$(qemu-img map --output=json "$T/d.vdi" | jq -c '[.[] | [.start, .length, .depth, .zero, .data, .offset]]')" \
		"$("$VDISK" map --output=json "$T/d.vdi" | jq -c '[.[] | [.start, .length, .depth, .zero, .data, .offset]]')"
fi
finish
