#!/usr/bin/env bash
# Optional: the real VMware, ESXi, VirtualBox, vmdktool and QEMU VMDK files
# of the shared test-image collection ($TESTIMAGES, see its MANIFEST.txt).
# Skipped when the collection is absent.
#   every .vmdk/.img with a "virtual-content sha1" in the MANIFEST: vdisk
#     info and check succeed and vdisk convert -O raw has that SHA1;
#   the descriptors whose flat extents were reconstructed (xz) read back
#     with their known SHA1;
#   iotest-version3.vmdk's byte pattern reads back;
#   VMware's images converted to VMDK keep their descriptor's key set;
#   afl9.vmdk and vmdk-invalid.img are refused with clear messages; the
#     VMFSSPARSE snapshot (COWD is read now) is refused because the
#     collection lacks its -delta.vmdk, and the message names that file.
. "$(dirname "$0")/../lib.sh"
need sha1sum xz
sha1_of() { sha1sum "$1" | cut -d' ' -f1; }

[ -d "$TESTIMAGES" ] || skip "no test images at $TESTIMAGES"
M=$TESTIMAGES/MANIFEST.txt
[ -f "$M" ] || skip "no MANIFEST.txt in $TESTIMAGES"

# copy the VMDK files (the collection is read-only) and decompress the
# reconstructed extents next to their descriptors, as the MANIFEST says
I=$T/img
mkdir "$I"
(cd "$TESTIMAGES" && find . -type f \( -name '*.vmdk' -o -name '*.img' -o -name '*.vmdk.xz' \) -print0) |
	while IFS= read -r -d '' f; do
		mkdir -p "$I/$(dirname "$f")"
		cp "$TESTIMAGES/$f" "$I/$f"
		chmod u+w "$I/$f"
	done
for x in "$I"/strozfriedberg_vmdk-rs/reconstructed/*.xz; do
	[ -e "$x" ] || { fail "no reconstructed extents in the collection"; break; }
	xz -dc "$x" >"$I/strozfriedberg_vmdk-rs/$(basename "${x%.xz}")"
done

# "FILE dir/name  (N bytes)" then "  virtual-content sha1/sha256 (via qemu-img convert -O raw): SHA1 / SHA256"
awk '
	/^FILE / { file = $2; next }
	/^(DIR|=====)/ { file = "" }
	file ~ /\.(vmdk|img)$/ && /virtual-content sha1/ {
		sub(/.*\(via qemu-img convert -O raw\): */, ""); sub(/ \/.*/, ""); print file, $1; file = ""
	}' "$M" >"$T/list"
# the descriptors whose extents were reconstructed: known SHA1s
cat >>"$T/list" <<'EOF'
strozfriedberg_vmdk-rs/monolithicFlat.vmdk DD2FADE471D68658B2EBBFF7474F5D0A99DA8989
strozfriedberg_vmdk-rs/twoGbMaxExtentFlat.vmdk DD2FADE471D68658B2EBBFF7474F5D0A99DA8989
strozfriedberg_vmdk-rs/vmfs_thick.vmdk 17EAF058191C5F2639D8F983CA7633E4F47087D1
EOF
sort -u -o "$T/list" "$T/list"
n=$(grep -c . "$T/list")
echo "$n images with a known SHA1"
assert_eq "at least 15 VMDK images with a known SHA1" 1 "$((n >= 15))"
for must in strozfriedberg_vmdk-rs/streamOptimizedWithMarkers.vmdk qemu_iotests_sample_images/iotest-version3.vmdk \
	glennmatthews_cot/ubuntu.2.0-disk1.vmdk strozfriedberg_vmdk-rs/twoGbMaxExtentSparse.vmdk; do
	grep -q "^$must " "$T/list" && pass "listed: $must" || fail "not listed from the MANIFEST: $must"
done

while read -r f want; do
	img=$I/$f
	if [ ! -f "$img" ]; then fail "$f: listed in the MANIFEST but missing"; continue; fi
	case $f in
	strozfriedberg_vmdk-rs/vmfs_thick-flat.vmdk) fmt=(-f raw) ;; # a bare flat extent
	*) fmt=() ;;
	esac
	assert_rc "$f: vdisk info" 0 "$VDISK" info "${fmt[@]}" "$img"
	[ ${#fmt[@]} = 0 ] && assert_contains "$f: info says vmdk" "file format: vmdk" "$T/.out"
	assert_rc "$f: vdisk check" 0 "$VDISK" check "${fmt[@]}" "$img"
	raw=$T/out.raw
	rm -f "$raw"
	assert_rc "$f: vdisk convert -O raw" 0 "$VDISK" convert -q "${fmt[@]}" -O raw "$img" "$raw"
	# hashing the 8 and 16 GiB images costs a minute on this machine: when
	# qemu-img is there, large images are compared with qemu-img's own raw
	# conversion instead (which is where the MANIFEST's SHA1 comes from);
	# VDISK_TEST_FULL=1 hashes everything
	if [ "$(stat -c %s "$raw")" -gt $((256 << 20)) ] && [ -z "${VDISK_TEST_FULL:-}" ] &&
		command -v qemu-img >/dev/null && [ ${#fmt[@]} = 0 ]; then
		rm -f "$T/q.raw"
		qemu-img convert -O raw "$img" "$T/q.raw"
		assert_eq "$f: same size as qemu-img's raw" "$(stat -c %s "$T/q.raw")" "$(stat -c %s "$raw")"
		assert_rc "$f: same contents as qemu-img's raw (qemu-img compare)" 0 qemu-img compare -q -f raw -F raw "$T/q.raw" "$raw"
		rm -f "$T/q.raw"
	else
		got=$(sha1_of "$raw" 2>/dev/null)
		assert_eq "$f: virtual-content sha1" "${want,,}" "${got,,}"
	fi
	if command -v qemu-img >/dev/null && [ ${#fmt[@]} = 0 ] && qemu-img info "$img" >/dev/null 2>&1; then
		assert_eq "$f: virtual size matches qemu-img" \
			"$(qemu-img info --output=json "$img" | jq '."virtual-size"')" \
			"$("$VDISK" info --output=json "$img" | jq '."virtual-size"')"
	fi
	rm -f "$raw"
done <"$T/list"

# what info shows of a few
assert_rc "vmfs_thick.vmdk: info" 0 "$VDISK" info "$I/strozfriedberg_vmdk-rs/vmfs_thick.vmdk"
assert_contains "vmfs_thick.vmdk: createType vmfs" "vmfs" "$T/.out"
assert_contains "vmfs_thick.vmdk: the VMFS extent (no offset)" 'vmfs_thick-flat.vmdk' "$T/.out"
assert_rc "monolithicSparse.vmdk: info" 0 "$VDISK" info "$I/strozfriedberg_vmdk-rs/monolithicSparse.vmdk"
assert_contains "monolithicSparse.vmdk: adapter buslogic" "buslogic" "$T/.out"
assert_contains "monolithicSparse.vmdk: geometry 301/4/17" "301/4/17" "$T/.out"
assert_rc "twoGbMaxExtentSparse.vmdk: info" 0 "$VDISK" info "$I/strozfriedberg_vmdk-rs/twoGbMaxExtentSparse.vmdk"
assert_contains "twoGbMaxExtentSparse.vmdk: its extent" 'twoGbMaxExtentSparse-s001.vmdk' "$T/.out"

# iotest-version3.vmdk: byte 0x30+(i%10) at i*655360+i*512 (qemu-iotests 059),
# for the offsets below its capacity
v3=$I/qemu_iotests_sample_images/iotest-version3.vmdk
if assert_rc "iotest-version3: convert -O raw" 0 "$VDISK" convert -q -O raw "$v3" "$T/v3.raw"; then
	cap=$(stat -c %s "$T/v3.raw")
	assert_eq "iotest-version3: 16 GiB" $((16 << 30)) "$cap"
	bad=0 checked=0
	for i in 0 1 2 3 5 7 9 10 11 42 98 99; do
		off=$((i * 655360 + i * 512))
		[ "$off" -lt "$cap" ] || continue
		checked=$((checked + 1))
		# 512 bytes of 0x30+(i%10), zeros on either side
		got=$(dd if="$T/v3.raw" bs=512 skip=$((off / 512 - (i > 0))) count=$((2 + (i > 0))) status=none | od -An -v -tu1 | tr -s ' \n' ' ' | sed 's/^ //; s/ $//')
		want=$( { [ "$i" -gt 0 ] && printf '0 %.0s' $(seq 512); printf "$((0x30 + i % 10)) %.0s" $(seq 512); printf '0 %.0s' $(seq 512); } | sed 's/ $//')
		[ "$got" = "$want" ] || { bad=$((bad + 1)); fail "iotest-version3: pattern $i at $off does not read back: $(echo "$got" | tr ' ' '\n' | sort | uniq -c | tr -s ' \n' ' ')"; }
	done
	assert_eq "iotest-version3: pattern offsets checked" 12 "$checked"
	assert_eq "iotest-version3: pattern reads back" 0 "$bad"
	# nothing else: the non-zero bytes are exactly the 100 written sectors
	nz=$(head -c $((100 * 655872)) "$T/v3.raw" | tr -d '\0' | wc -c)
	assert_eq "iotest-version3: non-zero bytes in the first 64 MiB" $((100 * 512)) "$nz"
	rm -f "$T/v3.raw"
fi

# VMware's own images converted to VMDK keep VMware's descriptor: the same
# key set (values differ: a copy gets new identifiers).  vdiskmanager's
# ddb.encoding is written as the header's encoding= (where ESXi and later
# Workstation put it).
desc_text() { # FILE: the descriptor (embedded in a sparse file, or the file)
	local off size
	if [ "$(head -c 4 "$1")" = KDMV ]; then
		off=$(od -An -t u8 -j 28 -N 8 "$1" | tr -d ' ')
		size=$(od -An -t u8 -j 36 -N 8 "$1" | tr -d ' ')
		dd if="$1" bs=512 skip="$off" count="$size" status=none | tr -d '\0'
	else
		cat "$1"
	fi
}
keyset() { sed -n 's/^ddb\.encoding *=.*/encoding=/; s/^\([A-Za-z.]*\) *=.*/\1/p' | sort -u | tr '\n' ' '; }
for f in vmfs_thick monolithicSparse twoGbMaxExtentSparse monolithicFlat twoGbMaxExtentFlat streamOptimized; do
	src=$I/strozfriedberg_vmdk-rs/$f.vmdk
	ct=$(sed -n 's/^createType="\(.*\)"/\1/p' <<<"$(desc_text "$src")")
	rm -rf "$T/kc" && mkdir "$T/kc"
	assert_rc "$f.vmdk -> vmdk ($ct)" 0 "$VDISK" convert -q -O vmdk -o subformat="$ct" "$src" "$T/kc/$f.vmdk" || continue
	assert_eq "$f.vmdk -> vmdk: the key set of VMware's descriptor" \
		"$(desc_text "$src" | keyset)" "$(desc_text "$T/kc/$f.vmdk" | keyset)"
	command -v qemu-img >/dev/null &&
		assert_rc "$f.vmdk -> vmdk: qemu-img compare" 0 qemu-img compare -f vmdk -F vmdk "$src" "$T/kc/$f.vmdk"
done
rm -rf "$T/kc"

# rejections
rej() { # WHAT NEEDLE(regex) FILE
	local rc=0
	"$VDISK" info "$3" >"$T/.out" 2>"$T/.err" || rc=$?
	if [ "$rc" -ne 0 ] && [ "$rc" -lt 128 ]; then pass "$1: refused (exit $rc)"; else fail "$1: vdisk info exit $rc"; fi
	if grep -qiE -- "$2" "$T/.err"; then pass "$1: message matches /$2/"; else fail "$1: message '$(head -c 300 "$T/.err")' does not match /$2/"; fi
	rc=0
	"$VDISK" convert -q -O raw "$3" "$T/rej.raw" >/dev/null 2>&1 || rc=$?
	if [ "$rc" -ne 0 ] && [ "$rc" -lt 128 ]; then pass "$1: convert refused"; else fail "$1: convert exit $rc"; fi
	[ -e "$T/rej.raw" ] && { fail "$1: convert left its target"; rm -f "$T/rej.raw"; }
}
rej "afl9.vmdk" "newline|capacity" "$I/qemu_iotests_sample_images/afl9.vmdk"
rej "vmdk-invalid.img" "truncated" "$I/masahiro331_go-vmdk-parser/vmdk-invalid.img"
rej "vmfs_thick-000001.vmdk (VMFSSPARSE snapshot, delta absent)" "vmfs_thick-000001-delta\\.vmdk: No such file" "$I/strozfriedberg_vmdk-rs/vmfs_thick-000001.vmdk"
# a bare SPARSE extent of a split image is readable on its own (no descriptor)
assert_rc "twoGbMaxExtentSparse-s001.vmdk on its own: info" 0 "$VDISK" info "$I/strozfriedberg_vmdk-rs/twoGbMaxExtentSparse-s001.vmdk"

finish
