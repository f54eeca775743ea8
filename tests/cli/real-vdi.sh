#!/usr/bin/env bash
# The two real VirtualBox images kept in testdata/ (from pyVBox, Apache-2.0,
# see testdata/README.md): info, check, map and the guest contents' sha1.
# Always run (no external files needed).
. "$(dirname "$0")/../lib.sh"
need jq sha1sum
# sha1 of a file; openssl is about twice as fast as sha1sum on the 8 GiB images
sha1_of() {
	if command -v openssl >/dev/null; then openssl dgst -sha1 -r "$1" | cut -d' ' -f1
	else sha1sum "$1" | cut -d' ' -f1; fi
}

# FILE VIRTUAL-SIZE OFFSET-BLOCKS OFFSET-DATA BANNER CONTENT-SHA1 FILE-SHA256
images=(
	"TestHD-54ba812.vdi 4194304 512 1024 <<<_Sun_VirtualBox_Disk_Image_>>> 2BCCBD2F38F15C13EB7D5A89FD9D85F595E23BC3 6467eb88272713c9f366cbedddad14f0d5537478b406f65640e6fc5e940a2279"
	"TestHD.vdi 8589934592 4096 36864 <<<_Oracle_VM_VirtualBox_Disk_Image_>>> BCC8C0CA9E402EEE924A6046966D18B1F66EB577 6ea72a9f3f771ccc3407afbd7779b63c1299f56c0c4b682e11f93e83d7ebc601"
)
for line in "${images[@]}"; do
	set -- $line
	f=$1 vsize=$2 offb=$3 offd=$4 banner=${5//_/ } sha1=$6 sha256=$7
	img=$TESTDATA/$f
	if [ ! -f "$img" ]; then fail "$f: missing from testdata/"; continue; fi
	assert_eq "$f: file is the documented copy" "$sha256" "$(sha256sum <"$img" | cut -d' ' -f1)"
	# work on a copy: testdata must never be modified
	cp "$img" "$T/$f"
	img=$T/$f
	assert_rc "$f: info" 0 "$VDISK" info "$img"
	assert_contains "$f: info format" "file format: vdi" "$T/.out"
	assert_rc "$f: info --output=json" 0 "$VDISK" info --output=json "$img"
	assert_eq "$f: JSON" "vdi dynamic $vsize 1048576 1.1 $offb $offd 0 $banner" \
		"$(jq -r '[.format, .subformat, ."virtual-size", ."cluster-size", ."header-version",
			."format-specific".data."offset-blocks", ."format-specific".data."offset-data",
			."format-specific".data."blocks-allocated", ."format-specific".data.banner] | join(" ")' "$T/.out")"
	assert_rc "$f: check" 0 "$VDISK" check "$img"
	assert_contains "$f: check says no errors" "No errors" "$T/.out"
	assert_rc "$f: map --output=json" 0 "$VDISK" map --output=json "$img"
	assert_eq "$f: map: one unallocated range" "[[0,$vsize,false]]" \
		"$(jq -c '[.[] | [.start, .length, .data]]' "$T/.out")"
	assert_rc "$f: convert -O raw" 0 "$VDISK" convert -O raw "$img" "$T/$f.raw"
	assert_eq "$f: guest contents sha1" "${sha1,,}" "$(sha1_of "$T/$f.raw")"
	assert_rc "$f: compare with its raw copy" 0 "$VDISK" compare "$img" "$T/$f.raw"
	rm -f "$T/$f.raw"
	# these old images accept writes: a block written into them reads back,
	# with data placed at their (non-1 MiB-aligned) offData
	truncate -s "$vsize" "$T/patch.raw"
	rand_bytes "real-$f" 5000 | dd of="$T/patch.raw" bs=1 seek=1000000 conv=notrunc status=none
	assert_rc "$f: convert -n into it" 0 "$VDISK" convert -n --target-is-zero "$T/patch.raw" "$img"
	assert_rc "$f: written data reads back" 0 "$VDISK" compare "$T/patch.raw" "$img"
	assert_rc "$f: check after writing" 0 "$VDISK" check "$img"
	assert_eq "$f: one block allocated" 1 "$("$VDISK" info --output=json "$img" | jq '."format-specific".data."blocks-allocated"')"
	# the block starts at offData; its unwritten part is a host hole, which
	# map reports as data that reads as zeros
	assert_eq "$f: block placed at offData" "[0,$offd]" \
		"$("$VDISK" map --output=json "$img" | jq -c '[.[] | select(.data)][0] | [.start, .offset]')"
	assert_eq "$f: data ranges cover exactly one block" "[[0,1048576]]" \
		"$("$VDISK" map --output=json "$img" | jq -c '[.[] | select(.data)] | [[.[0].start, (.[-1].start + .[-1].length)]]')"
	if command -v qemu-img >/dev/null; then
		assert_rc "$f: qemu-img check after writing" 0 qemu-img check -f vdi "$img"
		assert_rc "$f: qemu-img compare after writing" 0 qemu-img compare -f raw -F vdi "$T/patch.raw" "$img"
	fi
	rm -f "$T/patch.raw" "$img"
done

finish
