#!/usr/bin/env bash
# The descriptors of -o compat=esxi|workstation|virtualbox against what
# the products write (the real descriptors each rule comes from are named
# in formats/vmdk-desc.c and formats/vmdk-create.c):
#   every preset x subformat (and ESXi's vmfs pair): the exact descriptor
#   lines, the exact key set (a key missing, added or changed fails), then
#   qemu-img info (create type), check and compare against the raw source,
#   and vdisk's own read back;
#   random identifiers: ddb.uuid in VMware's 60 00 C2 range, a
#   longContentID whose last 8 hex digits are the CID;
#   copies keep the dialect: convert of an ESXi/Workstation image to VMDK,
#   compact of one; vmfs is read back (VMFS extent without offset).
. "$(dirname "$0")/../lib.sh"
need qemu-img openssl cmp

MiB=$((1 << 20))
RAW=$T/src.raw
rand_bytes compat $((3 * MiB)) >"$RAW"
head -c $((256 * 1024)) /dev/zero | dd of="$RAW" bs=64K seek=16 conv=notrunc status=none

# desc FILE: the descriptor text (embedded in a sparse file or the file)
desc() {
	local off size
	if [ "$(head -c 4 "$1")" = KDMV ]; then
		off=$(od -An -t u8 -j 28 -N 8 "$1" | tr -d ' ')
		size=$(od -An -t u8 -j 36 -N 8 "$1" | tr -d ' ')
		dd if="$1" bs=512 skip="$off" count="$size" status=none | tr -d '\0'
	else
		cat "$1"
	fi
}
keys() { sed -n 's/^\([A-Za-z.]*\) *=.*/\1/p' | sort; }

# check_desc WHAT FILE EXPECTED-LINES...: every line exactly, no other key
check_desc() {
	local what=$1 f=$2 d l
	shift 2
	d=$(desc "$f")
	for l in "$@"; do
		if grep -Fxq -- "$l" <<<"$d"; then pass "$what: $l"; else
			fail "$what: no line '$l' in: $(grep -F -- "${l%%[= ]*}" <<<"$d" | head -1)"; fi
	done
	assert_eq "$what: key set" "$(printf '%s\n' "$@" | keys)" "$(keys <<<"$d")"
}

cross() { # WHAT VMDK CREATETYPE
	assert_rc "$1: qemu-img info" 0 qemu-img info -f vmdk "$2"
	assert_contains "$1: qemu-img create type" "create type: $3" "$T/.out"
	assert_rc "$1: qemu-img check" 0 qemu-img check -f vmdk "$2"
	assert_rc "$1: qemu-img compare" 0 qemu-img compare -f raw -F vmdk "$RAW" "$2"
	assert_rc "$1: vdisk compare" 0 "$VDISK" compare "$RAW" "$2"
}

CID=0abc1234
UUID='ddb.uuid = "00 00 00 00 00 00 40 00-80 00 00 00 00 00 00 01"'
LONG='ddb.longContentID = "0000400080000000000000010abc1234"'
VBOX_UUIDS=('ddb.uuid.image = "00000000-0000-4000-8000-000000000001"'
	'ddb.uuid.parent = "00000000-0000-0000-0000-000000000000"'
	'ddb.uuid.modification = "00000000-0000-4000-8000-000000000002"'
	'ddb.uuid.parentmodification = "00000000-0000-0000-0000-000000000000"')
# 3 MiB = 6144 sectors: lsilogic below 1 GiB is 64 x 32 (3 cylinders),
# ide 16 x 63 (6 cylinders)
SCSI_GEO=('ddb.adapterType = "lsilogic"' 'ddb.geometry.cylinders = "3"'
	'ddb.geometry.heads = "64"' 'ddb.geometry.sectors = "32"')
IDE_GEO=('ddb.adapterType = "ide"' 'ddb.geometry.cylinders = "6"'
	'ddb.geometry.heads = "16"' 'ddb.geometry.sectors = "63"')

for preset in esxi workstation virtualbox; do
	for sub in monolithicSparse streamOptimized monolithicFlat twoGbMaxExtentSparse vmfs; do
		[ $sub = vmfs ] && [ $preset != esxi ] && continue
		rm -rf "$T/o" && mkdir "$T/o"
		V=$T/o/d.vmdk
		w="$preset $sub"
		assert_rc "$w: convert" 0 "$VDISK" convert --deterministic -O vmdk \
			-o compat=$preset,subformat=$sub,cid=$CID "$RAW" "$V" || continue
		case $sub in
		monolithicSparse) ext="RW 6144 SPARSE \"d.vmdk\"" ;;
		streamOptimized) ext="RDONLY 6144 SPARSE \"d.vmdk\"" ;;
		monolithicFlat) ext="RW 6144 FLAT \"d-flat.vmdk\" 0" ;;
		twoGbMaxExtentSparse) ext="RW 6144 SPARSE \"d-s001.vmdk\"" ;;
		vmfs) ext="RW 6144 VMFS \"d-flat.vmdk\"" ;;
		esac
		hw=7
		[ $sub = streamOptimized ] || [ $preset = virtualbox ] && hw=4
		common=(version=1 "CID=$CID" parentCID=ffffffff "createType=\"$sub\"" "$ext"
			"ddb.virtualHWVersion = \"$hw\"")
		case $preset in
		esxi)
			thin=()
			case $sub in monolithicSparse | twoGbMaxExtentSparse) thin=('ddb.thinProvisioned = "1"') ;; esac
			check_desc "$w" "$V" "${common[@]}" 'encoding="UTF-8"' "${SCSI_GEO[@]}" \
				"$UUID" "$LONG" "${thin[@]}" ;;
		workstation)
			check_desc "$w" "$V" "${common[@]}" 'encoding="UTF-8"' 'isNativeSnapshot="no"' \
				"${SCSI_GEO[@]}" "$UUID" "$LONG" 'ddb.deletable = "true"' 'ddb.toolsVersion = "1"' ;;
		virtualbox)
			check_desc "$w" "$V" "${common[@]}" "${IDE_GEO[@]}" "${VBOX_UUIDS[@]}" ;;
		esac
		cross "$w" "$V" $sub
		[ $sub = vmfs ] && assert_eq "$w: two files" "d-flat.vmdk d.vmdk" "$(cd "$T/o" && echo *)"
	done
done

# the VMware header order: encoding after version, isNativeSnapshot before createType
rm -rf "$T/o" && mkdir "$T/o"
"$VDISK" create -O vmdk -o compat=workstation,subformat=vmfs "$T/o/w.vmdk" 1M 2>/dev/null &&
	fail "compat=workstation,subformat=vmfs accepted" || pass "vmfs needs compat=esxi"
"$VDISK" create --deterministic -O vmdk -o compat=workstation,cid=$CID "$T/o/w.vmdk" 1M
assert_eq "workstation: header order" \
	"$(printf '%s\n' '# Disk DescriptorFile' version=1 'encoding="UTF-8"' CID=$CID parentCID=ffffffff 'isNativeSnapshot="no"' 'createType="monolithicSparse"')" \
	"$(desc "$T/o/w.vmdk" | head -7)"

# random identifiers: VMware's UUID range, a longContentID ending in the CID
for preset in esxi workstation; do
	rm -rf "$T/o" && mkdir "$T/o"
	"$VDISK" create -O vmdk -o compat=$preset "$T/o/r.vmdk" 100M
	d=$(desc "$T/o/r.vmdk")
	assert_eq "$preset: random ddb.uuid is VMware's 60 00 C2 form" 1 \
		"$(grep -c '^ddb.uuid = "60 00 C2\( [0-9a-f][0-9a-f]\)\{5\}-[0-9a-f][0-9a-f]\( [0-9a-f][0-9a-f]\)\{7\}"$' <<<"$d")"
	cid=$(sed -n 's/^CID=//p' <<<"$d")
	assert_eq "$preset: longContentID ends in the CID" 1 \
		"$(grep -c "^ddb.longContentID = \"[0-9a-f]\{24\}$cid\"$" <<<"$d")"
	assert_eq "$preset: 100 MiB lsilogic is 64 x 32" 'ddb.geometry.heads = "64"' "$(grep '^ddb.geometry.heads' <<<"$d")"
done
# 1 GiB and above: 255 x 63 (the boundary itself is in tests/unit/test_vmdk_compat.c)
"$VDISK" create -O vmdk -o compat=esxi "$T/o/big.vmdk" 1G
assert_eq "esxi: 1 GiB lsilogic is 255 x 63" 'ddb.geometry.heads = "255"' "$(desc "$T/o/big.vmdk" | grep '^ddb.geometry.heads')"
"$VDISK" create -O vmdk -o compat=esxi,adapter_type=pvscsi "$T/o/pv.vmdk" 100M
assert_eq "esxi pvscsi: adapter" 'ddb.adapterType = "pvscsi"' "$(desc "$T/o/pv.vmdk" | grep '^ddb.adapterType')"
assert_eq "esxi pvscsi: 64 x 32" 'ddb.geometry.sectors = "32"' "$(desc "$T/o/pv.vmdk" | grep '^ddb.geometry.sectors')"

# copies keep the dialect; a convert gets new identifiers
rm -rf "$T/o" && mkdir "$T/o"
"$VDISK" convert -O vmdk -o compat=esxi,subformat=vmfs "$RAW" "$T/o/e.vmdk"
"$VDISK" convert -O vmdk -o subformat=vmfs "$T/o/e.vmdk" "$T/o/c.vmdk"
assert_eq "convert esxi vmfs -> vmfs: same key set" "$(desc "$T/o/e.vmdk" | keys)" "$(desc "$T/o/c.vmdk" | keys)"
[ "$(grep '^ddb.uuid' "$T/o/e.vmdk")" != "$(grep '^ddb.uuid' "$T/o/c.vmdk")" ] &&
	pass "convert: a new ddb.uuid" || fail "convert: the copy has the source's ddb.uuid"
cross "convert esxi vmfs" "$T/o/c.vmdk" vmfs
"$VDISK" convert -O vmdk -o compat=workstation "$RAW" "$T/o/w.vmdk"
"$VDISK" convert -O vmdk "$T/o/w.vmdk" "$T/o/w2.vmdk"
assert_eq "convert workstation sparse -> sparse: same key set" "$(desc "$T/o/w.vmdk" | keys)" "$(desc "$T/o/w2.vmdk" | keys)"
before=$(desc "$T/o/w.vmdk" | grep -v '^RW ')
assert_rc "compact workstation" 0 "$VDISK" compact "$T/o/w.vmdk"
assert_eq "compact workstation: descriptor kept" "$before" "$(desc "$T/o/w.vmdk" | grep -v '^RW ')"
# vmfs -> raw, byte for byte
assert_rc "vmfs -> raw" 0 "$VDISK" convert -O raw "$T/o/e.vmdk" "$T/o/back.raw"
assert_rc "vmfs -> raw: identical" 0 cmp "$RAW" "$T/o/back.raw"

finish
