#!/usr/bin/env bash
# The reproducible-build recipe of vdisk-create(1) (EXAMPLES, between the
# markers "BEGIN reproducible recipe" and "END reproducible recipe") really
# reproduces: its commands, taken from the man page source as printed, run
# twice on the same input directories whose files carry different
# modification times, a few seconds apart (FAT stores times in 2 s steps),
# give byte-identical efi.img, rootfs.img and disk.vmdk (SHA-256); the images
# are sound (fsck.vfat, e2fsck, qemu-img check) and hold the inputs.
. "$(dirname "$0")/../lib.sh"
need mkfs.vfat mcopy mtype mkfs.ext4 debugfs e2fsck sha256sum
MAN=$TOP/man/vdisk-create.1

# ---- the recipe as printed: roff escapes undone, "$ " commands and their
# continuation lines and here-documents kept, the output lines dropped
awk '/^\.\\" BEGIN reproducible recipe/ {f = 1; next} /^\.\\" END reproducible recipe/ {f = 0} f' "$MAN" |
	grep -v '^\.E[XE]$' |
	sed -e 's/\\-/-/g' -e 's/\\(aq/'"'"'/g' -e 's/\\(dq/"/g' -e 's/\\e/\\/g' >"$T/recipe.txt"
[ -s "$T/recipe.txt" ] || { fail "no recipe between the markers in $MAN"; finish; }
awk '
	heredoc != "" { print; if ($0 == heredoc) heredoc = ""; next }
	cont { print; cont = /\\$/; next }
	/^\$ / { line = substr($0, 3); print line; cont = /\\$/
		 if (match(line, /<<[A-Za-z_]+/)) heredoc = substr(line, RSTART + 2, RLENGTH - 2); next }
' "$T/recipe.txt" >"$T/recipe.sh"
grep -q '^vdisk create ' "$T/recipe.sh" && pass "the recipe ends in vdisk create" ||
	fail "no vdisk create in the recipe: $(cat "$T/recipe.sh")"
grep -q 'SOURCE_DATE_EPOCH' "$T/recipe.sh" && pass "the recipe sets SOURCE_DATE_EPOCH" ||
	fail "the recipe does not set SOURCE_DATE_EPOCH"

# ---- the inputs: the same names and contents, different times
inputs() { # DIR DATE
	mkdir -p "$1/efi/EFI/BOOT" "$1/rootfs/etc" "$1/rootfs/usr/bin" "$1/rootfs/var/empty"
	rand_bytes bootx64 40000 >"$1/efi/EFI/BOOT/BOOTX64.EFI"
	echo 'timeout 3' >"$1/efi/loader.conf"
	echo appliance >"$1/rootfs/etc/hostname"
	rand_bytes tool 150000 >"$1/rootfs/usr/bin/tool"
	chmod 755 "$1/rootfs/usr/bin/tool"
	ln -s ../usr/bin/tool "$1/rootfs/etc/tool-link"
	find "$1/efi" "$1/rootfs" -exec touch -h -d "$2" {} +
}
run() { # DIR
	(cd "$1" && PATH=$(dirname "$VDISK"):/usr/sbin:/sbin:$PATH bash -e "$T/recipe.sh") >"$1.log" 2>&1
}
inputs "$T/a" "2001-02-03 04:05:06"
run "$T/a" || fail "first run of the recipe: $(tail -5 "$T/a.log")"
sleep 2
inputs "$T/b" "2024-06-07 08:09:11"
run "$T/b" || fail "second run of the recipe: $(tail -5 "$T/b.log")"
for f in efi.img rootfs.img disk.sfdisk disk.vmdk; do
	[ -s "$T/a/$f" ] || { fail "the recipe made no $f"; continue; }
	assert_eq "$f: the same SHA-256 twice" "$(sha256sum <"$T/a/$f")" "$(sha256sum <"$T/b/$f")"
done

# ---- and what they hold
if command -v fsck.vfat >/dev/null; then
	assert_rc "efi.img: fsck.vfat -n" 0 fsck.vfat -n "$T/a/efi.img"
fi
assert_eq "efi.img: holds BOOTX64.EFI" "$(sha256sum <"$T/a/efi/EFI/BOOT/BOOTX64.EFI")" \
	"$(MTOOLS_SKIP_CHECK=1 mtype -i "$T/a/efi.img" ::/EFI/BOOT/BOOTX64.EFI | sha256sum)"
assert_rc "rootfs.img: e2fsck -fn" 0 e2fsck -fn "$T/a/rootfs.img"
debugfs -R "cat /usr/bin/tool" "$T/a/rootfs.img" 2>/dev/null >"$T/tool"
cmp -s "$T/tool" "$T/a/rootfs/usr/bin/tool" && pass "rootfs.img: holds usr/bin/tool" || fail "rootfs.img: usr/bin/tool differs"
assert_eq "rootfs.img: the change times are stamped" "" \
	"$(debugfs -R "stat /etc/hostname" "$T/a/rootfs.img" 2>/dev/null | grep -E '^ *ctime' | grep -v 0x6553f100)"
if command -v qemu-img >/dev/null; then
	assert_rc "disk.vmdk: qemu-img check" 0 qemu-img check "$T/a/disk.vmdk"
fi
assert_rc "disk.vmdk: vdisk check" 0 "$VDISK" check "$T/a/disk.vmdk"
finish
