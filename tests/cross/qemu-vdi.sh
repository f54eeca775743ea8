#!/usr/bin/env bash
# Cross-checks vdisk's VDI support against qemu-img, in both directions,
# over tiny, odd-sized, mixed and large sparse images:
#   raw -> VDI (vdisk, dynamic and fixed)  -> qemu-img check + compare
#   VDI -> raw (vdisk)                     -> byte-identical to the source
#   raw -> VDI (qemu-img, dynamic/static)  -> vdisk convert to raw is
#                                             byte-identical to qemu's raw
#   vdisk map data ranges == qemu-img map data ranges on every VDI
#   -S 0 allocates every block; -n into garbage targets zeroes what it must
#   vdisk create images pass qemu-img check with the same virtual size
. "$(dirname "$0")/../lib.sh"
need qemu-img jq openssl cmp

MiB=$((1 << 20))
GiB=$((1 << 30))

# put FILE OFFSET COUNT SEED|z: write COUNT pseudo-random bytes (or explicit
# zeros with z) at byte OFFSET without truncating FILE
put() {
	local src
	if [ "$4" = z ]; then src="head -c $3 /dev/zero"; else src="rand_bytes $4 $3"; fi
	$src | dd of="$1" bs=64K seek="$2" oflag=seek_bytes iflag=fullblock conv=notrunc status=none
}
round512() { echo $((($1 + 511) / 512 * 512)); }
fsize() { stat -c %s "$1"; }
alloc_bytes() { echo $(($(stat -c %b "$1") * $(stat -c %B "$1"))); }

# same_content WHAT A B: equal size and equal bytes.  Large (sparse) files
# go through qemu-img compare (sizes checked here), which skips holes but compares every data byte.
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

# data ranges [[start,length],...] of a map JSON on stdin, adjacent ones merged
RANGES_JQ='[.[] | select(.data) | [.start, .length]] | sort
  | reduce .[] as $r ([]; if length > 0 and (.[length-1][0] + .[length-1][1]) == $r[0]
                          then .[length-1][1] += $r[1] else . + [$r] end)'
vdisk_ranges() { "$VDISK" map --output=json "$1" | jq -c "$RANGES_JQ"; }
qemu_ranges() { qemu-img map -f vdi --output=json "$1" | jq -c "$RANGES_JQ"; }

check_map() { # WHAT VDI
	local v q
	v=$(vdisk_ranges "$2" 2>"$T/map.err") || { fail "$1: vdisk map failed: $(head -c 300 "$T/map.err")"; return; }
	q=$(qemu_ranges "$2") || { fail "$1: qemu-img map failed"; return; }
	if [ -z "$q" ]; then fail "$1: qemu-img map gave nothing"; return; fi
	assert_eq "$1" "$q" "$v"
}

# check_n_vdi WHAT VDI: after convert -n, VDI holds the source ($src, $size
# bytes); a sector-padded VDI must also read as zeros past the source end,
# like qemu-img (which sees a raw file padded to whole sectors) leaves it.
check_n_vdi() {
	if [ "$size" != "$vsize" ]; then
		qemu-img convert -f vdi -O raw "$2" "$T/n-check.raw"
		if cmp -s -n "$size" "$src" "$T/n-check.raw"; then pass "$1: source bytes copied"
		else fail "$1: source bytes differ: $(cmp -n "$size" "$src" "$T/n-check.raw" 2>&1 | head -1)"; fi
		assert_eq "$1: non-zero bytes in the partial last sector past the source end" 0 \
			"$(tail -c +$((size + 1)) "$T/n-check.raw" | tr -d '\0' | wc -c)"
		rm -f "$T/n-check.raw"
	else
		assert_rc "$1: qemu-img compare" 0 qemu-img compare -f raw -F vdi "$src" "$2"
	fi
	assert_rc "$1: vdisk compare" 0 "$VDISK" compare "$src" "$2"
	assert_rc "$1: qemu-img check" 0 qemu-img check -f vdi "$2"
}

vdi_json() { "$VDISK" info --output=json "$1" | jq -r "$2"; }

# ---------------------------------------------------------------- sources
# Each case: NAME SIZE then OFFSET:COUNT:SEED|z writes.
cases=(
	"tiny512 512 0:512:t1"
	"tiny1k 1024 0:100:t2 700:324:t3"
	"tiny4k 4096 0:512:t4 2048:1:t5 4095:1:t6"
	# 3 MiB + 12345: neither sector- nor block-aligned; data crosses the
	# first block boundary and ends exactly at EOF
	"odd3m $((3 * MiB + 12345)) 0:4096:o1 $((MiB - 700)):1400:o2 $((3 * MiB + 100)):12245:o3"
	# 5 MiB + 512: the last (partial) block holds one sector of data
	"odd5m $((5 * MiB + 512)) $((2 * MiB)):$MiB:o4 $((5 * MiB)):512:o5"
	# mixed 1 MiB blocks: full random, hole, partly random, random with a
	# 64K zero run, explicit zeros, one sector at the block end, hole,
	# random with a zero tail
	"mixed $((8 * MiB)) 0:$MiB:m1 $((2 * MiB)):4096:m2 $((3 * MiB)):$MiB:m3 $((3 * MiB + 256 * 1024)):65536:z $((4 * MiB)):$MiB:z $((6 * MiB - 512)):512:m4 $((7 * MiB)):$MiB:m5 $((8 * MiB - 4096)):4096:z"
	# 6 GiB sparse: data at the start, across the 1 GiB block boundary,
	# mid-block, across the 4 GiB (32-bit) boundary, explicit zeros, last block
	"big $((6 * GiB)) 0:$MiB:b1 $((GiB - 4096)):8192:b2 $((2 * GiB + 512 * 1024)):65536:b3 $((4 * GiB - 512)):1024:b4 $((5 * GiB)):$MiB:z $((6 * GiB - MiB)):$MiB:b5"
)
# garbage for the -n tests: small images are filled completely; the big one
# gets blobs where the source is zero, partly zero or explicitly zeroed
big_garbage="$((512 * MiB)):$MiB:g1 $((GiB + 4096)):65536:g2 $((3 * GiB)):$((2 * MiB)):g3 $((5 * GiB)):$MiB:g4 $((6 * GiB - 2 * MiB)):$((MiB + 4096)):g5 0:$MiB:g6"

for c in "${cases[@]}"; do
	set -- $c
	n=$1 size=$2
	shift 2
	src=$T/$n.raw ref=$T/$n.ref
	vsize=$(round512 "$size")
	truncate -s "$size" "$src"
	for w in "$@"; do put "$src" ${w//:/ }; done
	# what a VDI of this source reads back as: the source padded to a sector
	cp --sparse=always "$src" "$ref"
	truncate -s "$vsize" "$ref"
	echo "== $n: $size bytes"

	# --- vdisk writes, qemu-img reads
	for sub in dynamic fixed; do
		v=$T/$n.vdisk-$sub.vdi
		assert_rc "$n: vdisk convert raw->vdi $sub" 0 "$VDISK" convert -O vdi -o subformat=$sub "$src" "$v"
		assert_rc "$n: qemu-img check ($sub, vdisk-written)" 0 qemu-img check -f vdi "$v"
		assert_rc "$n: qemu-img compare src vs $sub VDI" 0 qemu-img compare -f raw -F vdi "$src" "$v"
		assert_eq "$n: qemu-img virtual size ($sub)" "$vsize" \
			"$(qemu-img info -f vdi --output=json "$v" | jq '."virtual-size"')"
		assert_rc "$n: vdisk compare src vs $sub VDI" 0 "$VDISK" compare "$src" "$v"
		out=$T/$n.vdisk-$sub.raw
		assert_rc "$n: vdisk convert $sub vdi->raw" 0 "$VDISK" convert -O raw "$v" "$out"
		same_content "$n: vdisk $sub VDI -> raw == source" "$ref" "$out"
		check_map "$n: map data ranges (vdisk $sub VDI)" "$v"
		rm -f "$out"
	done
	# a vdisk fixed VDI is really allocated
	v=$T/$n.vdisk-fixed.vdi
	a=$(alloc_bytes "$v") s=$(fsize "$v")
	if [ $((a * 100)) -ge $((s * 99)) ]; then pass "$n: vdisk fixed VDI is allocated ($a of $s bytes)"
	else fail "$n: vdisk fixed VDI is sparse: $a of $s bytes allocated"; fi
	rm -f "$v"

	# --- qemu-img writes, vdisk reads
	for sub in dynamic static; do
		q=$T/$n.qemu-$sub.vdi
		opt=(); [ $sub = static ] && opt=(-o static=on)
		qemu-img convert -f raw -O vdi "${opt[@]}" "$src" "$q" || fail "$n: qemu-img convert -O vdi $sub"
		qemu-img convert -f vdi -O raw "$q" "$T/$n.qemu-$sub.qraw" || fail "$n: qemu-img convert $sub vdi->raw"
		assert_rc "$n: vdisk convert qemu $sub vdi->raw" 0 "$VDISK" convert -O raw "$q" "$T/$n.qemu-$sub.raw"
		same_content "$n: vdisk raw of qemu $sub VDI == qemu-img raw" "$T/$n.qemu-$sub.qraw" "$T/$n.qemu-$sub.raw"
		same_content "$n: vdisk raw of qemu $sub VDI == source" "$ref" "$T/$n.qemu-$sub.raw"
		assert_rc "$n: vdisk compare qemu $sub VDI vs src" 0 "$VDISK" compare "$q" "$src"
		assert_rc "$n: vdisk check qemu $sub VDI" 0 "$VDISK" check "$q"
		assert_eq "$n: vdisk virtual size of qemu $sub VDI" "$vsize" "$(vdi_json "$q" '."virtual-size"')"
		check_map "$n: map data ranges (qemu $sub VDI)" "$q"
		rm -f "$T/$n.qemu-$sub.qraw" "$T/$n.qemu-$sub.raw"
	done
	# VDI -> VDI: qemu's dynamic VDI copied by vdisk allocates the same blocks
	assert_rc "$n: vdisk convert qemu VDI -> VDI" 0 "$VDISK" convert -O vdi "$T/$n.qemu-dynamic.vdi" "$T/$n.vv.vdi"
	assert_rc "$n: VDI -> VDI: qemu-img check" 0 qemu-img check -f vdi "$T/$n.vv.vdi"
	assert_rc "$n: VDI -> VDI: qemu-img compare with the source" 0 qemu-img compare -f raw -F vdi "$src" "$T/$n.vv.vdi"
	assert_eq "$n: VDI -> VDI: same blocks allocated" \
		"$(qemu_ranges "$T/$n.qemu-dynamic.vdi")" "$(qemu_ranges "$T/$n.vv.vdi")"
	rm -f "$T/$n.vv.vdi"
	# both tools allocate the same blocks of a dynamic VDI
	assert_eq "$n: vdisk and qemu-img allocate the same blocks" \
		"$(qemu_ranges "$T/$n.qemu-dynamic.vdi")" "$(qemu_ranges "$T/$n.vdisk-dynamic.vdi")"
	if [ "$n" = odd5m ] || [ "$n" = big ]; then
		# only two (odd5m) or a few (big) data blocks: qemu's static=on stays sparse
		q=$T/$n.qemu-static.vdi
		a=$(alloc_bytes "$q") s=$(fsize "$q")
		if [ $((a * 2)) -lt "$s" ]; then pass "$n: qemu static=on VDI is sparse ($a of $s bytes)"
		else fail "$n: qemu static=on VDI unexpectedly allocated ($a of $s)"; fi
	fi
	rm -f "$T/$n.qemu-static.vdi" "$T/$n.qemu-dynamic.vdi"

	# --- -S 0 allocates every block (not for big: that would write 6 GiB)
	if [ "$n" != big ]; then
		v=$T/$n.s0.vdi
		assert_rc "$n: vdisk convert -S 0" 0 "$VDISK" convert -S 0 -O vdi "$src" "$v"
		assert_eq "$n: -S 0 allocates every block" "$(vdi_json "$v" '."format-specific".data.blocks')" \
			"$(vdi_json "$v" '."format-specific".data."blocks-allocated"')"
		assert_eq "$n: -S 0 map is one data range" "[[0,$vsize]]" "$(vdisk_ranges "$v")"
		assert_rc "$n: qemu-img check -S 0 VDI" 0 qemu-img check -f vdi "$v"
		assert_rc "$n: qemu-img compare -S 0 VDI" 0 qemu-img compare -f raw -F vdi "$src" "$v"
		assert_rc "$n: vdisk compare -S 0 VDI" 0 "$VDISK" compare "$src" "$v"
		rm -f "$v"
	fi

	# --- -n into existing targets full of garbage
	g=$T/$n.garbage
	truncate -s "$vsize" "$g"
	if [ "$n" = big ]; then
		for w in $big_garbage; do put "$g" ${w//:/ }; done
	else
		put "$g" 0 "$vsize" "garbage-$n"
	fi
	# raw target of exactly the source size
	cp --sparse=always "$g" "$T/$n.nraw"
	truncate -s "$size" "$T/$n.nraw"
	assert_rc "$n: convert -n into garbage raw" 0 "$VDISK" convert -n -O raw "$src" "$T/$n.nraw"
	same_content "$n: -n garbage raw == source" "$src" "$T/$n.nraw"
	rm -f "$T/$n.nraw"
	qemu-img convert -f raw -O vdi "$g" "$T/$n.nvdi" || fail "$n: qemu-img convert garbage"
	assert_rc "$n: convert -n into garbage dynamic VDI" 0 "$VDISK" convert -n -O vdi "$src" "$T/$n.nvdi"
	check_n_vdi "$n: -n garbage dynamic VDI" "$T/$n.nvdi"
	rm -f "$T/$n.nvdi"
	if [ "$n" != big ]; then
		# (zeroing a 6 GiB fixed image would really write 6 GiB)
		"$VDISK" convert -O vdi -o subformat=fixed "$g" "$T/$n.nfvdi" || fail "$n: vdisk convert garbage fixed"
		assert_rc "$n: convert -n into garbage fixed VDI" 0 "$VDISK" convert -n "$src" "$T/$n.nfvdi"
		check_n_vdi "$n: -n garbage fixed VDI" "$T/$n.nfvdi"
		assert_eq "$n: -n garbage fixed VDI stays fixed" fixed "$(vdi_json "$T/$n.nfvdi" .subformat)"
		rm -f "$T/$n.nfvdi"
	fi
	rm -f "$g"
	# --target-is-zero onto a freshly created VDI
	"$VDISK" create -O vdi "$T/$n.zvdi" "$vsize" || fail "$n: vdisk create for --target-is-zero"
	assert_rc "$n: convert -n --target-is-zero" 0 "$VDISK" convert -n --target-is-zero "$src" "$T/$n.zvdi"
	assert_rc "$n: --target-is-zero: qemu-img compare" 0 qemu-img compare -f raw -F vdi "$src" "$T/$n.zvdi"
	rm -f "$T/$n.zvdi" "$T/$n.vdisk-dynamic.vdi" "$src" "$ref"
done

# ---------------------------------------------------------------- create
echo "== vdisk create -O vdi"
for size in 512 1024 4096 $((3 * MiB + 12345)) $((5 * MiB + 512)) 4141875200 $((6 * GiB)) 10G; do
	want=$size
	[ "$size" = 10G ] && want=$((10 * GiB))
	want=$(round512 "$want")
	subs="dynamic"
	[ "$want" -le $((8 * MiB)) ] && subs="dynamic fixed"
	for sub in $subs; do
		v=$T/create-$size-$sub.vdi
		assert_rc "create $size $sub" 0 "$VDISK" create -O vdi -o subformat=$sub "$v" "$size"
		assert_rc "create $size $sub: qemu-img check" 0 qemu-img check -f vdi "$v"
		assert_eq "create $size $sub: qemu-img virtual size" "$want" \
			"$(qemu-img info -f vdi --output=json "$v" | jq '."virtual-size"')"
		assert_eq "create $size $sub: vdisk virtual size" "$want" "$(vdi_json "$v" '."virtual-size"')"
		assert_eq "create $size $sub: qemu-img map of the empty image" \
			"$([ $sub = fixed ] && echo "[[0,$want]]" || echo "[]")" "$(qemu_ranges "$v")"
		check_map "create $size $sub: map data ranges" "$v"
		if [ $sub = fixed ]; then
			a=$(alloc_bytes "$v") s=$(fsize "$v")
			if [ $((a * 100)) -ge $((s * 99)) ]; then pass "create $size fixed: allocated"
			else fail "create $size fixed: only $a of $s bytes allocated"; fi
		fi
		rm -f "$v"
	done
done

finish
