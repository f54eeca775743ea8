#!/usr/bin/env bash
# Optional: real VirtualBox images from the shared test-image collection
# ($TESTIMAGES, see its MANIFEST.txt).  Skipped when the collection is absent.
# For every .vdi in the MANIFEST: vdisk info and check succeed and the guest
# contents converted to raw have the MANIFEST's "virtual-content sha1".
# (The VMDK files there are not supported yet.)
. "$(dirname "$0")/../lib.sh"
need jq sha1sum
# sha1 of a file; openssl is about twice as fast as sha1sum on the 8 GiB images
sha1_of() {
	if command -v openssl >/dev/null; then openssl dgst -sha1 -r "$1" | cut -d' ' -f1
	else sha1sum "$1" | cut -d' ' -f1; fi
}

[ -d "$TESTIMAGES" ] || skip "no test images at $TESTIMAGES"
M=$TESTIMAGES/MANIFEST.txt
[ -f "$M" ] || skip "no MANIFEST.txt in $TESTIMAGES"

# "FILE dir/name.vdi  (N bytes)" followed (before the next FILE/DIR) by
# "  virtual-content sha1/sha256 (...): SHA1 / SHA256"
awk '
	/^FILE / { file = $2; next }
	/^(DIR|=====)/ { file = "" }
	file ~ /\.vdi$/ && /virtual-content sha1/ {
		sub(/.*\): */, ""); print file, $1; file = ""
	}' "$M" >"$T/list"

n=$(grep -c . "$T/list")
vdis=$(grep -c '^FILE .*\.vdi ' "$M")
assert_eq "every .vdi in the MANIFEST has a virtual-content sha1" "$vdis" "$n"
[ "$n" -gt 0 ] || fail "no .vdi images listed in $M"

while read -r f want; do
	img=$TESTIMAGES/$f
	if [ ! -f "$img" ]; then fail "$f: listed in the MANIFEST but missing"; continue; fi
	assert_rc "$f: vdisk info" 0 "$VDISK" info "$img"
	assert_contains "$f: info says vdi" "file format: vdi" "$T/.out"
	assert_rc "$f: vdisk info --output=json" 0 "$VDISK" info --output=json "$img"
	if command -v qemu-img >/dev/null; then
		assert_eq "$f: JSON virtual size matches qemu-img" \
			"$(qemu-img info -f vdi --output=json "$img" | jq '."virtual-size"')" \
			"$(jq '."virtual-size"' "$T/.out")"
	fi
	assert_rc "$f: vdisk check" 0 "$VDISK" check "$img"
	raw=$T/$(basename "$f").raw
	assert_rc "$f: vdisk convert -O raw" 0 "$VDISK" convert -O raw "$img" "$raw"
	got=$(sha1_of "$raw" 2>/dev/null)
	assert_eq "$f: virtual-content sha1" "${want,,}" "${got,,}"
	rm -f "$raw"
done <"$T/list"

finish
