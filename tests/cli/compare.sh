#!/usr/bin/env bash
# vdisk compare: exit 0 identical / 1 different / 2 error, the exact offset
# of the first difference, size differences (zero tail equal unless -s).
. "$(dirname "$0")/../lib.sh"
need jq
MiB=$((1 << 20))

A=$T/a.raw
rand_bytes cmpA $((4 * MiB)) >"$A"
truncate -s $((6 * MiB)) "$A" # 2 MiB zero tail
"$VDISK" convert -O vdi "$A" "$T/a.vdi" || fail "convert a.vdi"
"$VDISK" convert -O vdi -o subformat=fixed "$A" "$T/a-fixed.vdi" || fail "convert a-fixed.vdi"

assert_rc "raw vs itself" 0 "$VDISK" compare "$A" "$A"
assert_contains "identical message" "Images are identical." "$T/.out"
assert_rc "raw vs dynamic VDI" 0 "$VDISK" compare "$A" "$T/a.vdi"
assert_rc "fixed VDI vs dynamic VDI" 0 "$VDISK" compare "$T/a-fixed.vdi" "$T/a.vdi"
assert_rc "-f raw -F vdi" 0 "$VDISK" compare -f raw -F vdi "$A" "$T/a.vdi"
assert_rc "--output=json identical" 0 "$VDISK" compare --output=json "$A" "$T/a.vdi"
assert_eq "JSON identical" "true" "$(jq -c .identical "$T/.out")"
assert_rc "-p still compares" 0 "$VDISK" compare -p "$A" "$T/a.vdi"
# the VDI read as raw is a different image
assert_rc "-F raw on a VDI differs" 1 "$VDISK" compare -F raw "$A" "$T/a.vdi"
assert_contains "-F raw on a VDI: mismatch at 0" "Content mismatch at offset 0!" "$T/.out"

# one changed byte, at various places: the exact offset is reported
flip() { # FILE OFFSET: invert the byte at OFFSET
	local b
	b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
	printf "$(printf '\\x%02x' $((255 - b)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
for off in 0 1 511 512 4095 4096 $((MiB - 1)) $MiB $((MiB + 12345)) $((2 * MiB + 3)) $((4 * MiB - 1)) $((4 * MiB)) $((5 * MiB + 777)) $((6 * MiB - 1)); do
	B=$T/b.raw
	cp --sparse=always "$A" "$B"
	flip "$B" "$off"
	assert_rc "byte $off changed: raw exits 1" 1 "$VDISK" compare "$A" "$B"
	assert_eq "byte $off changed: raw offset" "Content mismatch at offset $off!" "$(cat "$T/.out")"
	"$VDISK" convert -O vdi --force "$B" "$T/b.vdi" || fail "convert b.vdi"
	assert_rc "byte $off changed: VDI exits 1" 1 "$VDISK" compare "$T/a.vdi" "$T/b.vdi"
	assert_eq "byte $off changed: VDI offset" "Content mismatch at offset $off!" "$(cat "$T/.out")"
	assert_rc "byte $off changed: reversed order exits 1" 1 "$VDISK" compare "$T/b.vdi" "$A"
	assert_eq "byte $off changed: reversed offset" "Content mismatch at offset $off!" "$(cat "$T/.out")"
	assert_rc "byte $off changed: JSON exits 1" 1 "$VDISK" compare --output=json "$A" "$T/b.vdi"
	assert_eq "byte $off changed: JSON" "{\"identical\":false,\"offset\":$off}" "$(jq -c . "$T/.out")"
done
# data against an unallocated VDI block: the first non-zero byte is reported
Z=$T/z.raw
truncate -s $((3 * MiB)) "$Z"
printf '\x01' | dd of="$Z" bs=1 seek=$((2 * MiB + 777)) conv=notrunc status=none
"$VDISK" create -O vdi "$T/z.vdi" 3M || fail "create z.vdi"
assert_rc "data vs unallocated block exits 1" 1 "$VDISK" compare "$Z" "$T/z.vdi"
assert_eq "data vs unallocated block: offset" "Content mismatch at offset $((2 * MiB + 777))!" "$(cat "$T/.out")"
assert_rc "unallocated block vs data exits 1" 1 "$VDISK" compare "$T/z.vdi" "$Z"
assert_eq "unallocated block vs data: offset" "Content mismatch at offset $((2 * MiB + 777))!" "$(cat "$T/.out")"

# different sizes: equal when the extra part is zero, different with -s
L=$T/long.raw
cp --sparse=always "$A" "$L"
truncate -s $((9 * MiB + 512)) "$L"
assert_rc "longer with zero tail: identical" 0 "$VDISK" compare "$A" "$L"
assert_rc "longer with zero tail, reversed: identical" 0 "$VDISK" compare "$L" "$A"
assert_rc "longer with zero tail, -s: differ" 1 "$VDISK" compare -s "$A" "$L"
assert_contains "-s size mismatch message" "size mismatch" "$T/.out"
assert_rc "longer with zero tail, --strict reversed: differ" 1 "$VDISK" compare --strict "$L" "$A"
"$VDISK" convert -O vdi "$L" "$T/long.vdi" || fail "convert long.vdi"
assert_rc "longer VDI with zero tail: identical" 0 "$VDISK" compare "$T/a.vdi" "$T/long.vdi"
assert_rc "longer VDI with zero tail, -s: differ" 1 "$VDISK" compare -s "$T/a.vdi" "$T/long.vdi"
printf '\x07' | dd of="$L" bs=1 seek=$((8 * MiB + 100)) conv=notrunc status=none
assert_rc "longer with data in the tail: differ" 1 "$VDISK" compare "$A" "$L"
assert_eq "longer with data in the tail: offset" "Content mismatch at offset $((8 * MiB + 100))!" "$(cat "$T/.out")"
assert_rc "longer with data in the tail, reversed: differ" 1 "$VDISK" compare "$L" "$A"
assert_eq "longer with data in the tail, reversed: offset" "Content mismatch at offset $((8 * MiB + 100))!" "$(cat "$T/.out")"
# shorter with a difference before the end of the shorter one
S=$T/short.raw
head -c $((3 * MiB)) "$A" >"$S"
flip "$S" 1000
assert_rc "shorter and different: differ" 1 "$VDISK" compare "$A" "$S"
assert_eq "shorter and different: offset" "Content mismatch at offset 1000!" "$(cat "$T/.out")"
# a raw file that is not a whole number of sectors against its VDI (which is)
head -c 12345 "$A" >"$T/odd.raw"
"$VDISK" convert -O vdi "$T/odd.raw" "$T/odd.vdi" || fail "convert odd.vdi"
assert_rc "12345-byte raw vs its 12800-byte VDI: identical" 0 "$VDISK" compare "$T/odd.raw" "$T/odd.vdi"
assert_rc "12345-byte raw vs its VDI, -s: differ" 1 "$VDISK" compare -s "$T/odd.raw" "$T/odd.vdi"

# errors: 2
assert_rc "missing file: 2" 2 "$VDISK" compare "$A" "$T/missing.raw"
assert_rc "missing first file: 2" 2 "$VDISK" compare "$T/missing.raw" "$A"
cp "$T/a.vdi" "$T/bad.vdi"
printf '\x07\x00\x00\x00' | dd of="$T/bad.vdi" bs=1 seek=$((MiB)) conv=notrunc status=none # block 0 -> slot 7, past EOF
assert_rc "corrupt block map: 2" 2 "$VDISK" compare "$A" "$T/bad.vdi"
assert_contains "corrupt block map: message" "block map" "$T/.err"
assert_rc "unknown -F format: 2" 2 "$VDISK" compare -F nope "$A" "$A"
assert_rc "-f vdi on a raw file: 2" 2 "$VDISK" compare -f vdi "$A" "$A"
assert_rc "--output=xml: 2" 2 "$VDISK" compare --output=xml "$A" "$A"

finish
