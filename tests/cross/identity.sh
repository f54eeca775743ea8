#!/usr/bin/env bash
# compact and defrag keep the identity of the image they rewrite, byte for
# byte in the header fields, and qemu-img still accepts the results:
#  - VDI with a comment, legacy and LCHS geometry: the header bytes 84..387
#    (comment, offsets, geometry, cbDisk, cbBlock, cbBlockExtra, cBlocks)
#    and 392..471 (the four UUIDs, LCHS) unchanged; cBlocksAllocated is what
#    compact changes; a 2 MiB block size is kept;
#  - VMDK from qemu-img (embedded descriptor, lsilogic, hardware version 6,
#    toolsVersion, plus a longContentID and BIOS geometry poked in): every
#    ddb.* line of the source is in the result (the ddb.uuid.* lines vdisk
#    adds for a source without them are the only new ones), CID kept;
#  - split VMDK (text descriptor) the same;
#  - convert to the same format keeps the hardware description, not the
#    identifiers; -o adapter_type= wins and recomputes the geometry.
. "$(dirname "$0")/../lib.sh"
need qemu-img openssl jq od
MiB=$((1 << 20))

jinfo() { "$VDISK" info --output=json "$1"; }
zero_mib() { dd if=/dev/zero of="$1" bs=1M seek="$2" count="$3" conv=notrunc status=none; }
# the VDI header fields compact and defrag must keep, as hex
vdi_fields() { od -A d -t x1 -j 84 -N $((388 - 84)) "$1"; od -A d -t x1 -j 392 -N $((472 - 392)) "$1"; }
# the ddb.* lines of a VMDK descriptor (text file or embedded in the first 64 KiB)
ddb_lines() { head -c 65536 "$1" | tr -d '\0' | grep -a '^ddb\.' | sort; }
le32() { printf "\\x$(printf %02x $(($1 & 255)))\\x$(printf %02x $((($1 >> 8) & 255)))\\x00\\x00"; }
poke() { dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }

rand_bytes identity $((32 * MiB)) >"$T/data.raw"
zero_mib "$T/data.raw" 3 2
zero_mib "$T/data.raw" 17 1

# ---------------------------------------------------------------- VDI
for op in compact defrag; do
	V=$T/$op.vdi
	"$VDISK" convert -O vdi "$T/data.raw" "$V"
	"$VDISK" convert -n -S 0 "$T/data.raw" "$V"     # zeros stored as data
	printf 'kept by %s: comment' "$op" | poke "$V" 84
	{ le32 1040; le32 16; le32 63; } | poke "$V" 348 # legacy geometry
	{ le32 520; le32 32; le32 63; } | poke "$V" 456  # LCHS
	before=$(vdi_fields "$V")
	jb=$(jinfo "$V")
	assert_rc "vdi $op" 0 "$VDISK" $op "$V"
	assert_eq "vdi $op: header fields byte for byte" "$before" "$(vdi_fields "$V")"
	ja=$(jinfo "$V")
	assert_eq "vdi $op: the poked comment is what info shows" "\"kept by $op: comment\"" "$(echo "$ja" | jq -c '."format-specific".data.comment')"
	for k in uuid '"modification-uuid"' geometry '"cluster-size"' '"format-specific".data.comment'; do
		assert_eq "vdi $op: info $k kept" "$(echo "$jb" | jq -c ".$k")" "$(echo "$ja" | jq -c ".$k")"
	done
	assert_rc "vdi $op: qemu-img check" 0 qemu-img check "$V"
	assert_rc "vdi $op: qemu-img compare" 0 qemu-img compare -f raw -F vdi "$T/data.raw" "$V"
	assert_rc "vdi $op: vdisk check" 0 "$VDISK" check "$V"
done
[ "$(jinfo "$T/compact.vdi" | jq '."format-specific".data."blocks-allocated"')" -lt 32 ] &&
	pass "vdi compact: dropped the zero blocks" || fail "vdi compact: kept every block"

# a block size other than QEMU's 1 MiB (vdisk check only: qemu opens 1 MiB only)
B=$T/b2m.vdi
"$VDISK" convert -O vdi -o block_size=2M "$T/data.raw" "$B"
for op in compact defrag; do
	assert_rc "vdi 2M blocks: $op" 0 "$VDISK" $op "$B"
	assert_eq "vdi 2M blocks: $op keeps the block size" 2097152 "$(jinfo "$B" | jq '."cluster-size"')"
	assert_rc "vdi 2M blocks: $op: contents" 0 "$VDISK" compare "$T/data.raw" "$B"
done

# convert VDI -> VDI: geometry and comment kept, UUIDs new
assert_rc "vdi convert" 0 "$VDISK" convert -O vdi "$T/compact.vdi" "$T/copy.vdi"
assert_eq "vdi convert: LCHS and legacy geometry kept" \
	"$(od -A n -t x1 -j 348 -N 12 "$T/compact.vdi"; od -A n -t x1 -j 456 -N 12 "$T/compact.vdi")" \
	"$(od -A n -t x1 -j 348 -N 12 "$T/copy.vdi"; od -A n -t x1 -j 456 -N 12 "$T/copy.vdi")"
assert_eq "vdi convert: comment kept" "$(jinfo "$T/compact.vdi" | jq '."format-specific".data.comment')" \
	"$(jinfo "$T/copy.vdi" | jq '."format-specific".data.comment')"
[ "$(jinfo "$T/compact.vdi" | jq -r .uuid)" != "$(jinfo "$T/copy.vdi" | jq -r .uuid)" ] &&
	pass "vdi convert: a new UUID" || fail "vdi convert: the copy has the source's UUID"
assert_rc "vdi convert: qemu-img check" 0 qemu-img check "$T/copy.vdi"

# ---------------------------------------------------------------- VMDK, embedded descriptor
# replace the embedded descriptor of $1 (sector 1, $2 sectors) by the text on stdin
put_desc() {
	local f=$1 n=$2 text
	text=$(cat)
	[ ${#text} -lt $((n * 512)) ] || { fail "descriptor too long for $f"; return; }
	{ printf '%s\n' "$text"; head -c $((n * 512 - ${#text} - 1)) /dev/zero; } |
		dd of="$f" bs=512 seek=1 conv=notrunc status=none
}
for op in compact defrag; do
	Q=$T/q-$op.vmdk
	qemu-img create -q -f vmdk -o adapter_type=lsilogic,hwversion=6,toolsversion=10304 "$Q" 32M
	qemu-img convert -n -f raw -O vmdk "$T/data.raw" "$Q"
	# qemu-img convert -n leaves zero runs unallocated: store some zeros as data
	"$VDISK" convert -n -S 0 "$T/data.raw" "$Q"
	dsec=$(od -A n -t u8 -j 36 -N 8 "$Q" | tr -d ' ')
	head -c $((512 + dsec * 512)) "$Q" | tail -c $((dsec * 512)) | tr -d '\0' |
		sed '/^ddb.toolsVersion/a ddb.longContentID = "0123456789abcdef0123456789abcdef"\nddb.geometry.biosCylinders = "520"\nddb.geometry.biosHeads = "32"\nddb.geometry.biosSectors = "63"' |
		put_desc "$Q" "$dsec"
	assert_eq "vmdk $op: longContentID poked" 1 "$(ddb_lines "$Q" | grep -c longContentID)"
	before=$(ddb_lines "$Q")
	# the value, not its spelling: qemu-img writes CID=%x, VMware and vdisk %08x
	cid=$(head -c 65536 "$Q" | tr -d '\0' | grep -a '^CID=' | sed 's/CID=/0x/' | xargs printf '%d')
	assert_rc "vmdk $op" 0 "$VDISK" $op "$Q"
	after=$(ddb_lines "$Q")
	assert_eq "vmdk $op: every ddb line kept" "" "$(comm -23 <(echo "$before") <(echo "$after"))"
	assert_eq "vmdk $op: only ddb.uuid.* added" "" "$(comm -13 <(echo "$before") <(echo "$after") | grep -v '^ddb\.uuid\.')"
	assert_eq "vmdk $op: CID kept" "$cid" "$(head -c 65536 "$Q" | tr -d '\0' | grep -a '^CID=' | sed 's/CID=/0x/' | xargs printf '%d')"
	assert_rc "vmdk $op: qemu-img check" 0 qemu-img check "$Q"
	assert_rc "vmdk $op: qemu-img compare" 0 qemu-img compare -f raw -F vmdk "$T/data.raw" "$Q"
	assert_rc "vmdk $op: qemu-img info" 0 qemu-img info "$Q"
	# and a second round keeps what the first wrote, uuid lines included
	before=$(ddb_lines "$Q")
	assert_rc "vmdk $op again" 0 "$VDISK" $op "$Q"
	assert_eq "vmdk $op again: ddb lines identical" "$before" "$(ddb_lines "$Q")"
done

# ---------------------------------------------------------------- VMDK, text descriptor (split)
S=$T/s.vmdk
"$VDISK" convert -O vmdk -o subformat=twoGbMaxExtentSparse,adapter_type=buslogic,hwversion=11 "$T/data.raw" "$S"
"$VDISK" convert -n -S 0 "$T/data.raw" "$S"
printf '%s\n' 'ddb.toolsVersion = "12352"' 'ddb.longContentID = "fedcba9876543210fedcba9876543210"' \
	'ddb.geometry.biosCylinders = "1024"' 'ddb.geometry.biosHeads = "255"' 'ddb.geometry.biosSectors = "63"' >>"$S"
for op in compact defrag; do
	before=$(ddb_lines "$S")
	cid=$(grep '^CID=' "$S")
	assert_rc "split $op" 0 "$VDISK" $op "$S"
	assert_eq "split $op: ddb lines identical" "$before" "$(ddb_lines "$S")"
	assert_eq "split $op: CID kept" "$cid" "$(grep '^CID=' "$S")"
	assert_rc "split $op: qemu-img check" 0 qemu-img check "$S"
	assert_rc "split $op: qemu-img compare" 0 qemu-img compare -f raw -F vmdk "$T/data.raw" "$S"
done

# ---------------------------------------------------------------- convert VMDK -> VMDK
C=$T/c.vmdk
assert_rc "vmdk convert" 0 "$VDISK" convert -O vmdk "$S" "$C"
for k in adapterType virtualHWVersion toolsVersion geometry.cylinders geometry.heads geometry.biosHeads; do
	assert_eq "vmdk convert: ddb.$k kept" "$(ddb_lines "$S" | grep "^ddb\.$k ")" "$(ddb_lines "$C" | grep "^ddb\.$k ")"
done
assert_eq "vmdk convert: no longContentID (an identifier)" "" "$(ddb_lines "$C" | grep longContentID)"
[ "$(grep '^CID=' "$S")" != "$(head -c 65536 "$C" | tr -d '\0' | grep -a '^CID=')" ] &&
	pass "vmdk convert: a new CID" || fail "vmdk convert: the copy has the source's CID"
[ "$(ddb_lines "$S" | grep uuid.image)" != "$(ddb_lines "$C" | grep uuid.image)" ] &&
	pass "vmdk convert: a new image UUID" || fail "vmdk convert: the copy has the source's UUID"
assert_rc "vmdk convert: qemu-img compare" 0 qemu-img compare -f raw -F vmdk "$T/data.raw" "$C"
assert_rc "vmdk convert -o adapter_type=ide" 0 "$VDISK" convert -O vmdk -o adapter_type=ide "$S" "$T/ide.vmdk"
assert_eq "vmdk convert -o: adapter from the option" 'ddb.adapterType = "ide"' "$(ddb_lines "$T/ide.vmdk" | grep adapterType)"
assert_eq "vmdk convert -o: geometry for IDE" 'ddb.geometry.heads = "16"' "$(ddb_lines "$T/ide.vmdk" | grep 'geometry.heads')"
assert_eq "vmdk convert -o: hardware version still kept" 'ddb.virtualHWVersion = "11"' "$(ddb_lines "$T/ide.vmdk" | grep virtualHW)"
# another format: its defaults
assert_rc "convert vmdk -> vdi" 0 "$VDISK" convert -O vdi "$S" "$T/x.vdi"
assert_eq "convert vmdk -> vdi: no LCHS from the VMDK" "00 00 00 00 00 00 00 00 00 00 00 00" \
	"$(od -A n -t x1 -j 456 -N 12 "$T/x.vdi" | xargs)"
finish
