#!/usr/bin/env bash
# Cross-checks vdisk's VMDK support against qemu-img, in both directions,
# for every subformat over a tiny, an odd-sized, a mixed and a sparse 5 GiB
# image (3 extents when split):
#   raw -> VMDK (vdisk)     -> qemu-img check + compare, vdisk compare,
#                              VMDK -> raw (vdisk) byte-identical
#   split images            -> NAME-s001.vmdk / NAME-f001.vmdk ..., each
#                              extent but the last 4192256 sectors
#   raw -> VMDK (qemu-img)  -> vdisk convert to raw == qemu-img's own raw
#   vdisk map data ranges == qemu-img map's on sparse VMDKs (compressed
#                              grains have no offset)
#   VDI -> VMDK -> VDI round trip; no temporary files left behind
. "$(dirname "$0")/../lib.sh"
need qemu-img jq openssl cmp

MiB=$((1 << 20))
GiB=$((1 << 30))
SPLIT=4192256
SUBS="monolithicSparse monolithicFlat twoGbMaxExtentSparse twoGbMaxExtentFlat streamOptimized"

# put FILE OFFSET COUNT SEED|z
put() {
	local src
	if [ "$4" = z ]; then src="head -c $3 /dev/zero"; else src="rand_bytes $4 $3"; fi
	$src | dd of="$1" bs=64K seek="$2" oflag=seek_bytes iflag=fullblock conv=notrunc status=none
}
fsize() { stat -c %s "$1"; }

# same_content WHAT A B: equal size and equal bytes (qemu-img compare for
# large sparse files: it skips holes but compares every data byte)
same_content() {
	local sa sb
	sa=$(fsize "$2") sb=$(fsize "$3")
	if [ "$sa" != "$sb" ]; then fail "$1: sizes differ ($sa vs $sb)"; return; fi
	if [ "$sa" -le $((64 * MiB)) ]; then
		if cmp -s "$2" "$3"; then pass "$1"; else fail "$1: $(cmp "$2" "$3" 2>&1 | head -1)"; fi
	else
		if qemu-img compare -q -f raw -F raw "$2" "$3"; then pass "$1"; else
			fail "$1: $(qemu-img compare -f raw -F raw "$2" "$3" 2>&1 | head -1)"; fi
	fi
}

RANGES_JQ='[.[] | select(.data) | [.start, .length]] | sort
  | reduce .[] as $r ([]; if length > 0 and (.[length-1][0] + .[length-1][1]) == $r[0]
                          then .[length-1][1] += $r[1] else . + [$r] end)'
check_map() { # WHAT VMDK
	local v q
	"$VDISK" map --output=json "$2" >"$T/vmap.json" 2>"$T/map.err" ||
		{ fail "$1: vdisk map failed: $(head -c 300 "$T/map.err")"; return; }
	v=$(jq -c "$RANGES_JQ" "$T/vmap.json")
	q=$(qemu-img map -f vmdk --output=json "$2" | jq -c "$RANGES_JQ") || { fail "$1: qemu-img map failed"; return; }
	if [ -z "$q" ] || [ -z "$v" ]; then fail "$1: empty map (qemu '$q', vdisk '$v')"; return; fi
	assert_eq "$1: data ranges" "$q" "$v"
	if [ "$3" = stream ]; then
		assert_eq "$1: compressed grains have no offset" "false" \
			"$(jq '[.[] | select(.data) | has("offset")] | any' "$T/vmap.json")"
	elif [ "$v" != "[]" ]; then
		assert_eq "$1: data ranges have an offset" "true" \
			"$(jq '[.[] | select(.data) | has("offset")] | all' "$T/vmap.json")"
	fi
}

# the extent lines of descriptor text on stdin: "SECTORS FILE"
extents_of() { sed -n 's/^\(RW\|RDONLY\|NOACCESS\) \([0-9]*\) [A-Z]* "\([^"]*\)".*/\2 \3/p'; }

# check_files WHAT DIR STEM SUB VSIZE: the extent files are named as
# VMware names them, cover the disk as VMware splits it, and nothing else
# (no temporary files) is in DIR
check_files() {
	local what=$1 dir=$2 stem=$3 sub=$4 vsize=$5 desc want=() got i=0 sum=0 ok=1 sec f letter
	case $sub in
	monolithicSparse | streamOptimized) want=("$stem.vmdk") ;;
	monolithicFlat) want=("$stem.vmdk" "$stem-flat.vmdk") ;;
	*) want=("$stem.vmdk") ;;
	esac
	case $sub in twoGbMaxExtent*)
		letter=s; [ "$sub" = twoGbMaxExtentFlat ] && letter=f
		desc=$(extents_of <"$dir/$stem.vmdk")
		local n
		n=$(echo "$desc" | grep -c .)
		assert_eq "$what: extent count" $(((vsize / 512 + SPLIT - 1) / SPLIT)) "$n"
		while read -r sec f; do
			i=$((i + 1))
			sum=$((sum + sec))
			[ "$f" = "$(printf '%s-%s%03d.vmdk' "$stem" "$letter" "$i")" ] ||
				{ ok=0; fail "$what: extent $i is named '$f'"; }
			if [ "$i" -lt "$n" ] && [ "$sec" != "$SPLIT" ]; then
				ok=0; fail "$what: extent $i covers $sec sectors, expected $SPLIT"; fi
			if [ "$letter" = f ] && [ "$(fsize "$dir/$f")" != $((sec * 512)) ]; then
				ok=0; fail "$what: $f is $(fsize "$dir/$f") bytes, expected $((sec * 512))"; fi
			want+=("$f")
		done <<<"$desc"
		assert_eq "$what: extents cover the disk" $((vsize / 512)) "$sum"
		[ "$ok" = 1 ] && pass "$what: extent names and sizes"
		;;
	esac
	if [ "$sub" = monolithicFlat ]; then
		assert_eq "$what: monolithicFlat extent" "$vsize $stem-flat.vmdk" \
			"$(extents_of <"$dir/$stem.vmdk" | awk '{printf "%.0f %s\n", $1 * 512, $2}')"
	fi
	got=$(cd "$dir" && ls -A | sort | tr '\n' ' ')
	assert_eq "$what: files in the directory (no temporaries)" \
		"$(printf '%s\n' "${want[@]}" | sort | tr '\n' ' ')" "$got"
}

# ---------------------------------------------------------------- sources
cases=(
	"tiny $((64 * 1024)) 0:65536:t1"
	# 3 MiB + 512: not a multiple of the 64 KiB grain; the last partial
	# grain holds data
	"odd $((3 * MiB + 512)) 0:4096:o1 $((MiB - 700)):1400:o2 $((3 * MiB - 1000)):1512:o3"
	# mixed: random, hole, explicit zeros, a 64K zero run inside random
	"mixed $((6 * MiB)) 0:$MiB:m1 $((2 * MiB + 4096)):8192:m2 $((3 * MiB)):$MiB:z $((4 * MiB)):$MiB:m3 $((4 * MiB + 128 * 1024)):65536:z $((6 * MiB - 512)):512:m4"
	# 5 GiB sparse: data at the start, across the first extent boundary
	# (2047 MiB), across the 2 GiB and 4 GiB marks and the second extent
	# boundary, and at the end
	"big $((5 * GiB)) 0:$MiB:b1 $((SPLIT * 512 - 4096)):8192:b2 $((2 * GiB - 512)):1024:b3 $((2 * SPLIT * 512 - 65536)):131072:b4 $((4 * GiB)):65536:b5 $((5 * GiB - MiB)):$MiB:b6"
)

for c in "${cases[@]}"; do
	set -- $c
	n=$1 size=$2
	shift 2
	src=$T/$n.raw
	truncate -s "$size" "$src"
	for w in "$@"; do put "$src" ${w//:/ }; done
	echo "== $n: $size bytes"

	# --- vdisk writes, qemu-img reads
	for sub in $SUBS; do
		d=$T/v-$n-$sub
		mkdir "$d"
		v=$d/$n.vmdk
		what="$n: vdisk $sub"
		assert_rc "$what: convert raw->vmdk" 0 "$VDISK" convert -q -O vmdk -o subformat=$sub "$src" "$v"
		[ -f "$v" ] || { fail "$what: no image"; continue; }
		check_files "$what" "$d" "$n" "$sub" "$size"
		assert_rc "$what: qemu-img check" 0 qemu-img check -f vmdk "$v"
		assert_eq "$what: qemu-img create type" "$sub" \
			"$(qemu-img info -f vmdk --output=json "$v" | jq -r '."format-specific".data."create-type"')"
		assert_eq "$what: qemu-img virtual size" "$size" \
			"$(qemu-img info -f vmdk --output=json "$v" | jq '."virtual-size"')"
		assert_rc "$what: qemu-img compare" 0 qemu-img compare -f raw -F vmdk "$src" "$v"
		assert_rc "$what: vdisk compare" 0 "$VDISK" compare "$src" "$v"
		assert_rc "$what: convert vmdk->raw" 0 "$VDISK" convert -q -O raw "$v" "$T/back.raw"
		same_content "$what: round trip byte-identical" "$src" "$T/back.raw"
		rm -f "$T/back.raw"
		case $sub in
		*Sparse) check_map "$what: map" "$v" sparse ;;
		streamOptimized) check_map "$what: map" "$v" stream ;;
		esac
		rm -rf "$d"
	done

	# --- qemu-img writes, vdisk reads
	qemu-img convert -f raw -O raw "$src" "$T/qref.raw"
	for sub in "" $SUBS; do
		d=$T/q-$n-${sub:-default}
		mkdir "$d"
		q=$d/$n.vmdk
		what="$n: qemu-img ${sub:-default}"
		if ! qemu-img convert -f raw -O vmdk ${sub:+-o subformat=$sub} "$src" "$q" 2>"$T/q.err"; then
			fail "$what: qemu-img convert failed: $(head -c 300 "$T/q.err")"; rm -rf "$d"; continue
		fi
		qemu-img convert -f vmdk -O raw "$q" "$T/qraw.raw"
		assert_rc "$what: vdisk info" 0 "$VDISK" info "$q"
		assert_contains "$what: vdisk info says vmdk" "file format: vmdk" "$T/.out"
		assert_rc "$what: vdisk check" 0 "$VDISK" check "$q"
		assert_rc "$what: vdisk convert vmdk->raw" 0 "$VDISK" convert -q -O raw "$q" "$T/vraw.raw"
		same_content "$what: vdisk's raw == qemu-img's raw" "$T/qraw.raw" "$T/vraw.raw"
		assert_rc "$what: vdisk compare with the source" 0 "$VDISK" compare "$T/qref.raw" "$q"
		case $sub in
		"" | *Sparse) check_map "$what: map" "$q" sparse ;;
		streamOptimized) check_map "$what: map" "$q" stream ;;
		esac
		rm -rf "$d" "$T/qraw.raw" "$T/vraw.raw"
	done
	rm -f "$T/qref.raw"

	# --- VDI -> VMDK -> VDI
	if [ "$n" != big ]; then subs_vdi="monolithicSparse streamOptimized twoGbMaxExtentFlat"; else subs_vdi="twoGbMaxExtentSparse"; fi
	assert_rc "$n: raw->vdi" 0 "$VDISK" convert -q -O vdi "$src" "$T/$n.vdi"
	for sub in $subs_vdi; do
		d=$T/r-$n-$sub
		mkdir "$d"
		assert_rc "$n: vdi->vmdk $sub" 0 "$VDISK" convert -q -O vmdk -o subformat=$sub "$T/$n.vdi" "$d/$n.vmdk"
		assert_rc "$n: vmdk $sub->vdi" 0 "$VDISK" convert -q -O vdi "$d/$n.vmdk" "$d/back.vdi"
		assert_rc "$n: VDI->$sub->VDI vdisk compare" 0 "$VDISK" compare "$src" "$d/back.vdi"
		assert_rc "$n: VDI->$sub->VDI qemu-img compare" 0 qemu-img compare -f raw -F vdi "$src" "$d/back.vdi"
		assert_rc "$n: VDI->$sub qemu-img compare" 0 qemu-img compare -f vdi -F vmdk "$T/$n.vdi" "$d/$n.vmdk"
		rm -rf "$d"
	done
	rm -f "$T/$n.vdi" "$src"
done

# --- a difference must be found (the compares above can fail)
truncate -s $((2 * MiB)) "$T/d.raw"
put "$T/d.raw" 0 $MiB d1
"$VDISK" convert -q -O vmdk "$T/d.raw" "$T/d.vmdk"
put "$T/d.raw" $((MiB + 12345)) 1 d2
assert_rc "vdisk compare notices a one-byte difference" 1 "$VDISK" compare "$T/d.raw" "$T/d.vmdk"
assert_rc "qemu-img compare notices it too" 1 qemu-img compare -q -f raw -F vmdk "$T/d.raw" "$T/d.vmdk"

# grains other than 64 KiB: created, read by qemu-img, kept by compact and defrag
"$VDISK" convert -O vmdk -o grain_size=16K "$T/d.raw" "$T/g16.vmdk"
assert_eq "grain_size=16K: qemu-img's cluster size" 16384 "$(qemu-img info --output=json "$T/g16.vmdk" | jq '."cluster-size"')"
assert_rc "grain_size=16K: qemu-img check" 0 qemu-img check -q "$T/g16.vmdk"
assert_rc "grain_size=16K: qemu-img compare" 0 qemu-img compare -q "$T/g16.vmdk" "$T/d.raw"
"$VDISK" compact -q "$T/g16.vmdk" >/dev/null
"$VDISK" defrag -q "$T/g16.vmdk" >/dev/null
assert_eq "compact and defrag keep the 16 KiB grain" 16384 "$(qemu-img info --output=json "$T/g16.vmdk" | jq '."cluster-size"')"
assert_rc "and the contents" 0 qemu-img compare -q "$T/g16.vmdk" "$T/d.raw"
assert_rc "grain_size on a stream is refused" 1 "$VDISK" convert -O vmdk -o subformat=streamOptimized,grain_size=16K "$T/d.raw" "$T/g16s.vmdk"

finish
