#!/usr/bin/env bash
# vdisk rawvmdk on a loop device with an MBR (primaries 1, 2, extended 3,
# logicals 5, 6), each partition full of random bytes:
#  - the descriptor text matches tests/cli/expected/rawvmdk-*.txt (CID, UUID
#    and the loop device's name masked) for fullDevice, partitionedDevice with
#    primary and logical partitions, and --relative; REBASE=1 rewrites them;
#  - the -pt file holds the MBR area and each EBR area of the device;
#  - vdisk reads the descriptors back (--allow-devices) and they equal the
#    device (whole device, all partitions) or the device with the unselected
#    partitions zeroed (1,5);
#  - with createType monolithicFlat and the ZERO extents as FLAT extents on a
#    zero file, qemu-img reads them and agrees;
#  - --partition N[,N...] is repeatable; the former --partitions, -r and -a
#    write what --partition, --relative and --adapter write;
#  - rejections: extended or missing partition, no MBR, bad adapter, existing
#    OUT without --force, files left behind; DEVICE a regular file, a
#    character device, missing, or a missing LV (/dev/VG/LV, /dev/mapper/VG-LV:
#    "not active"); --relative without partition devices; --owner naming a
#    user or group that does not exist; --install without --owner;
#  - --owner prints the rule and installs nothing, and says the descriptor
#    must be readable by the user; --install (VDISK_UDEV_RULES_DIR, a stub
#    udevadm) writes the rule, runs udevadm control --reload (warns when
#    udevadm is missing) and chowns the device (given back in the trap).
. "$(dirname "$0")/../lib.sh"
need losetup openssl
[ "$(id -u)" = 0 ] || skip "needs root for loop devices"
EXP=$TOP/tests/cli/expected
MiB=$((1 << 20))

IMG=$T/disk.img
truncate -s 64M "$IMG"
printf 'label: dos\nlabel-id: 0x1234abcd\n,8MiB,83\n,8MiB,c\n,,E\n,8MiB,83\n,8MiB,82\n' |
	"$VDISK" mbr "$IMG" || fail "vdisk mbr"
# random bytes inside every partition (starts/sizes as vdisk mbr --dump says)
declare -A START SIZE
while read -r n s z; do START[$n]=$s; SIZE[$n]=$z; done < <("$VDISK" mbr --dump "$IMG" |
	sed -n 's/.*img\([0-9]*\) : start= *\([0-9]*\), size= *\([0-9]*\),.*/\1 \2 \3/p')
assert_eq "partition 5 starts at 36864" "36864" "${START[5]:-}"
for n in 1 2 5 6; do
	rand_bytes "part$n" $((SIZE[$n] * 512)) |
		dd of="$IMG" bs=512 seek="${START[$n]}" conv=notrunc status=none
done

L=$(losetup -P -f --show "$IMG" 2>/dev/null) || L=$(losetup -f --show "$IMG" 2>/dev/null) ||
	skip "no loop devices here"
on_exit "losetup -d $L"
# --relative needs the partition devices; where the kernel made none (no
# partition scanning in a container), stand-ins: a loop device on each
# partition's bytes, linked as ${L}pN
for n in 1 5; do
	[ -b "${L}p$n" ] && continue
	[ -e "${L}p$n" ] && skip "${L}p$n exists and is no block device"
	Lp=$(losetup -f --show -o $((START[$n] * 512)) --sizelimit $((SIZE[$n] * 512)) "$IMG") ||
		skip "no loop device for partition $n"
	on_exit "rm -f ${L}p$n; losetup -d $Lp"
	ln -s "$Lp" "${L}p$n"
done

mask() { sed -E "s/^CID=[0-9a-f]{8}\$/CID=<removed>/; s/(ddb.uuid.image=\")[^\"]*/\1<removed>/; s#$L#/dev/LOOP#g" "$1"; }
golden() { # NAME FILE
	mask "$2" >"$T/$1.txt"
	if [ "${REBASE:-0}" = 1 ]; then cp "$T/$1.txt" "$EXP/$1.txt"; pass "$1 rebased"; return; fi
	if diff -u "$EXP/$1.txt" "$T/$1.txt" >"$T/diff"; then pass "$1 matches expected/$1.txt"
	else fail "$1 differs from expected/$1.txt"; cat "$T/diff" >&2; fi
}

# ---- fullDevice
assert_rc "rawvmdk whole device" 0 "$VDISK" rawvmdk "$L" "$T/full.vmdk"
golden rawvmdk-full "$T/full.vmdk"
assert_eq "fullDevice: no -pt file" "" "$(ls "$T" | grep -- -pt || true)"
uuid=$(sed -n 's/^ddb.uuid.image="\(.*\)"$/\1/p' "$T/full.vmdk")
[[ $uuid =~ ^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$ ]] &&
	pass "ddb.uuid.image is a random UUID" || fail "ddb.uuid.image '$uuid'"
assert_rc "fullDevice: vdisk info --allow-devices" 0 "$VDISK" info --allow-devices "$T/full.vmdk"
assert_contains "fullDevice: subformat" "subformat: fullDevice" "$T/.out"
assert_rc "fullDevice equals the device" 0 "$VDISK" compare --allow-devices "$T/full.vmdk" "$L"
assert_rc "without --allow-devices the device path is refused" 1 "$VDISK" info "$T/full.vmdk"
assert_contains "  ... and the message says so" "--allow-devices" "$T/.err"
"$VDISK" rawvmdk "$L" "$T/full2.vmdk"
[ "$(grep ^CID= "$T/full.vmdk")" != "$(grep ^CID= "$T/full2.vmdk")" ] && pass "CID differs between runs" ||
	fail "CID is the same twice"
"$VDISK" rawvmdk --deterministic "$L" "$T/det1.vmdk"; "$VDISK" rawvmdk --deterministic "$L" "$T/det2.vmdk"
cmp -s "$T/det1.vmdk" "$T/det2.vmdk" && pass "--deterministic: identical output" || fail "--deterministic differs"
assert_rc "--adapter lsilogic" 0 "$VDISK" rawvmdk --adapter lsilogic "$L" "$T/lsi.vmdk"
assert_contains "--adapter lsilogic in the DDB" 'ddb.adapterType="lsilogic"' "$T/lsi.vmdk"

# ---- partitionedDevice: primary 1 and logical 5
assert_rc "rawvmdk --partitions 1,5" 0 "$VDISK" rawvmdk --partitions 1,5 "$L" "$T/p15.vmdk"
golden rawvmdk-part-1-5 "$T/p15.vmdk"
pt=$T/p15-pt.vmdk
assert_eq "-pt file: MBR area + 2 EBR areas" $((3 * MiB)) "$(stat -c %s "$pt")"
cmp -s <(head -c $MiB "$pt") <(head -c $MiB "$IMG") && pass "-pt: MBR area" || fail "-pt: MBR area differs"
cmp -s <(tail -c +$((MiB + 1)) "$pt" | head -c $MiB) <(dd if="$IMG" bs=512 skip=34816 count=2048 status=none) &&
	pass "-pt: EBR of 5" || fail "-pt: EBR of 5 differs"
cmp -s <(tail -c +$((2 * MiB + 1)) "$pt") <(dd if="$IMG" bs=512 skip=53248 count=2048 status=none) &&
	pass "-pt: EBR of 6" || fail "-pt: EBR of 6 differs"
# the device with partitions 2 and 6 zeroed
cp "$IMG" "$T/ref15.img"
for n in 2 6; do
	dd if=/dev/zero of="$T/ref15.img" bs=512 seek="${START[$n]}" count="${SIZE[$n]}" conv=notrunc status=none
done
assert_rc "partitionedDevice 1,5 reads as the device without 2 and 6" 0 \
	"$VDISK" compare --allow-devices "$T/p15.vmdk" "$T/ref15.img"
assert_rc "  ... and differs from the device itself" 1 "$VDISK" compare --allow-devices "$T/p15.vmdk" "$L"
assert_rc "partitionedDevice: info" 0 "$VDISK" info --allow-devices "$T/p15.vmdk"
assert_contains "partitionedDevice: subformat" "subformat: partitionedDevice" "$T/.out"
assert_rc "rawvmdk --partitions 1,2,5,6" 0 "$VDISK" rawvmdk -P 1,2,5,6 "$L" "$T/all.vmdk"
assert_rc "all partitions: equals the device" 0 "$VDISK" compare --allow-devices "$T/all.vmdk" "$L"

# ---- --relative
assert_rc "rawvmdk --relative" 0 "$VDISK" rawvmdk -P 1,5 --relative "$L" "$T/rel.vmdk"
golden rawvmdk-part-1-5-relative "$T/rel.vmdk"
if [ -b "${L}p1" ] && [ -b "${L}p5" ]; then
	assert_rc "--relative: reads as the device without 2 and 6" 0 \
		"$VDISK" compare --allow-devices "$T/rel.vmdk" "$T/ref15.img"
else
	echo "note: no partition devices ${L}p1 (no udev here): --relative not read back"
fi

# ---- the spellings (vdisk(1) OPTIONS ACROSS COMMANDS): --partition N[,N...]
# repeatable; the former --partitions, -r (--relative) and -a (--adapter)
# still work and write the same descriptor
for sp in "--partition 1,5" "-P 1 -P 5" "--partition 1 --partition 5" "--partitions 1,5"; do
	# shellcheck disable=SC2086
	assert_rc "rawvmdk $sp" 0 "$VDISK" rawvmdk --deterministic $sp "$L" "$T/sp.vmdk"
	[ -f "$T/sp0.vmdk" ] || cp "$T/sp.vmdk" "$T/sp0.vmdk"
	cmp -s "$T/sp0.vmdk" "$T/sp.vmdk" && pass "rawvmdk $sp: the descriptor of --partition 1,5" ||
		fail "rawvmdk $sp: descriptor differs from --partition 1,5"
	cmp -s "$T/sp-pt.vmdk" "$pt" && pass "rawvmdk $sp: the -pt file of 1,5" || fail "rawvmdk $sp: -pt differs"
	rm -f "$T/sp.vmdk" "$T/sp-pt.vmdk"
done
assert_eq "--partition 1,5 lists partitions 1 and 5" 2 "$(grep -c "^RW .* FLAT \"$L\"" "$T/sp0.vmdk")"
fails_twice=0; "$VDISK" rawvmdk -P 1 -P 1 "$L" "$T/x.vmdk" 2>"$T/.err" || fails_twice=1
[ "$fails_twice" = 1 ] && pass "-P 1 -P 1: a partition named twice is refused" || fail "-P 1 -P 1 accepted"
# (one OUT name: the descriptor names its -pt file)
"$VDISK" rawvmdk --deterministic -P 1,5 --relative --adapter lsilogic "$L" "$T/rel-x.vmdk"
mv "$T/rel-x.vmdk" "$T/rel-new.vmdk"
"$VDISK" rawvmdk --deterministic --force -P 1,5 -r -a lsilogic "$L" "$T/rel-x.vmdk"
mv "$T/rel-x.vmdk" "$T/rel-old.vmdk"
cmp -s "$T/rel-new.vmdk" "$T/rel-old.vmdk" && pass "-r -a lsilogic: the descriptor of --relative --adapter lsilogic" ||
	fail "-r -a lsilogic differs from --relative --adapter lsilogic"
assert_contains "-a lsilogic in the DDB" 'ddb.adapterType="lsilogic"' "$T/rel-old.vmdk"
grep -q "${L}p1" "$T/rel-old.vmdk" && pass "-r: partition 1 through its own device" ||
	fail "-r: ${L}p1 not in the descriptor"
rm -f "$T"/rel-*.vmdk "$T"/rel-*-pt.vmdk "$T/x.vmdk" "$T/x-pt.vmdk"

# ---- qemu-img reads the same extents as monolithicFlat
if command -v qemu-img >/dev/null; then
	truncate -s 64M "$T/zero.bin"
	for d in full p15 all; do
		sed -e 's/^createType=.*/createType="monolithicFlat"/' \
		    -e 's/^RW \([0-9]*\) ZERO *$/RW \1 FLAT "zero.bin" 0/' "$T/$d.vmdk" >"$T/q-$d.vmdk"
		ln -sf "$T/$d-pt.vmdk" "$T/q-$d-pt.vmdk" 2>/dev/null
		ref=$L; [ $d = p15 ] && ref=$T/ref15.img
		assert_rc "qemu-img compare ($d as monolithicFlat)" 0 qemu-img compare -f vmdk -F raw "$T/q-$d.vmdk" "$ref"
	done
else
	echo "note: qemu-img not installed: monolithicFlat cross-check skipped"
fi

# ---- rejections and leftovers
fails() { # WHAT NEEDLE CMD...
	local what=$1 needle=$2 rc=0; shift 2
	"$@" >"$T/.out" 2>"$T/.err" || rc=$?
	if [ "$rc" = 0 ]; then fail "$what: exit 0"; return; fi
	assert_contains "$what (exit $rc)" "$needle" "$T/.err"
}
fails "extended partition refused" "extended partition" "$VDISK" rawvmdk -P 3 "$L" "$T/x.vmdk"
fails "missing partition refused" "no partition 9" "$VDISK" rawvmdk -P 1,9 "$L" "$T/x.vmdk"
fails "bad partition list" "--partition" "$VDISK" rawvmdk -P 1,,x "$L" "$T/x.vmdk"
fails "bad adapter" "adapter type 'scsi'" "$VDISK" rawvmdk --adapter scsi "$L" "$T/x.vmdk"
fails "--relative without --partitions" "--relative" "$VDISK" rawvmdk --relative "$L" "$T/x.vmdk"
fails "existing OUT without --force" "already exists" "$VDISK" rawvmdk "$L" "$T/full.vmdk"
assert_rc "existing OUT with --force" 0 "$VDISK" rawvmdk --force -P 1 "$L" "$T/p15.vmdk"
truncate -s 8M "$T/nombr.img"
L0=$(losetup -f --show "$T/nombr.img") || fail "losetup of an empty image"
on_exit "losetup -d $L0"
fails "no MBR with --partitions" "no MBR" "$VDISK" rawvmdk -P 1 "$L0" "$T/x.vmdk"
# DEVICE: a block device, else a message naming what it is
fails "a regular file as DEVICE" "a regular file, not a block device" "$VDISK" rawvmdk "$T/nombr.img" "$T/x.vmdk"
assert_contains "  ... suggests convert" "vdisk convert" "$T/.err"
assert_contains "  ... or a flat descriptor" "monolithicFlat" "$T/.err"
fails "a regular file as DEVICE (relative path)" "a regular file" \
	bash -c 'cd "$1" && "$2" rawvmdk nombr.img x.vmdk' - "$T" "$VDISK"
fails "a character device as DEVICE" "not a block device" "$VDISK" rawvmdk /dev/null "$T/x.vmdk"
fails "a missing device" "/dev/vdisk-no-such-disk: no such device" "$VDISK" rawvmdk /dev/vdisk-no-such-disk "$T/x.vmdk"
fails "a missing /dev/VG/LV" "looks like LVM logical volume vdisknovg/vm1, which is not active (lvchange -ay vdisknovg/vm1)" \
	"$VDISK" rawvmdk /dev/vdisknovg/vm1 "$T/x.vmdk"
fails "a missing /dev/mapper/VG-LV (doubled dashes)" "looks like LVM logical volume my-vg/lv-1, which is not active" \
	"$VDISK" rawvmdk /dev/mapper/my--vg-lv--1 "$T/x.vmdk"
fails "a missing /dev/disk/by-id/X is no LV" "no such device" "$VDISK" rawvmdk /dev/disk/by-id/vdisk-none "$T/x.vmdk"
grep -q "LVM" "$T/.err" && fail "/dev/disk/by-id/X called an LV" || pass "  ... and not called an LV"
# --relative: the partition devices must exist (a loop device without -P has none)
L2=$(losetup -f --show "$IMG") || fail "second losetup"
on_exit "losetup -d $L2"
if [ ! -e "${L2}p1" ]; then
	fails "--relative without partition devices" "--relative: partition 1 has no device ${L2}p1" \
		"$VDISK" rawvmdk -P 1,5 --relative "$L2" "$T/x.vmdk"
else
	echo "note: ${L2}p1 exists (partitions scanned): missing partition devices not tested"
fi
[ -e "$T/x.vmdk" ] || [ -e "$T/x-pt.vmdk" ] && fail "a refused rawvmdk left files" || pass "refusals leave no files"
assert_eq "no temporary files left" "" "$(find "$T" -name '.*vdisk-tmp*')"

# ---- --owner: printed, not installed; --install writes and chowns
id nobody >/dev/null 2>&1 || skip "no user nobody for --owner"
OU=nobody OG=$(id -gn nobody)
assert_rc "--owner" 0 "$VDISK" rawvmdk --owner $OU:$OG "$L" "$T/own.vmdk"
assert_contains "--owner: udev rule" "KERNEL==\"${L#/dev/}\", OWNER=\"$OU\", GROUP=\"$OG\"" "$T/.out"
assert_contains "--owner: chown command" "chown $OU:$OG $L" "$T/.out"
assert_contains "--owner: the descriptor must be readable by the user" \
	"the descriptor must be readable by $OU too (VirtualBox opens it as that user): $T/own.vmdk is readable" "$T/.out"
assert_eq "--owner installs nothing" "" "$(ls /etc/udev/rules.d/99-vdisk-* 2>/dev/null || true)"
assert_eq "--owner does not chown" "root" "$(stat -c %U "$L")"
assert_rc "--owner, descriptor mode 0600 (umask 077)" 0 bash -c 'umask 077; exec "$@"' - \
	"$VDISK" rawvmdk --force --owner $OU:$OG "$L" "$T/own.vmdk"
assert_contains "  ... says it is not readable by the user" "is not readable by them" "$T/.out"
assert_contains "  ... and how to fix it" "chown $OU:$OG $T/own.vmdk" "$T/.out"
fails "--owner with a quote" "--owner" "$VDISK" rawvmdk --owner 'a"b' "$L" "$T/x.vmdk"
fails "--owner: a user that does not exist" "no user 'vdisk-no-such-user'" \
	"$VDISK" rawvmdk --owner vdisk-no-such-user "$L" "$T/x.vmdk"
fails "--owner: a group that does not exist" "no group 'vdisk-no-such-group'" \
	"$VDISK" rawvmdk --owner $OU:vdisk-no-such-group "$L" "$T/x.vmdk"
fails "--install without --owner" "--install needs --owner" "$VDISK" rawvmdk --install "$L" "$T/x.vmdk"
[ -e "$T/x.vmdk" ] && fail "a refused --owner wrote the descriptor" || pass "refused --owner: nothing written"

RULES=$T/rules.d BIN=$T/bin
mkdir -p "$RULES" "$BIN"
printf '#!/bin/sh\necho "$*" >>"%s/udevadm.log"\n' "$T" >"$BIN/udevadm"
chmod +x "$BIN/udevadm"
on_exit "chown $(stat -c %u:%g "$L") $L"
assert_rc "--install" 0 env VDISK_UDEV_RULES_DIR="$RULES" PATH="$BIN:$PATH" \
	"$VDISK" rawvmdk --owner $OU:$OG --install "$L" "$T/inst.vmdk"
rule=$RULES/99-vdisk-${L#/dev/}.rules
[ -f "$rule" ] && pass "--install: the rule file is written" || fail "--install: no $rule ($(ls "$RULES"))"
assert_contains "--install: the rule" "SUBSYSTEM==\"block\", KERNEL==\"${L#/dev/}\", OWNER=\"$OU\", GROUP=\"$OG\", MODE=\"0660\"" "$rule"
assert_contains "--install: says where" "installed udev rule $rule" "$T/.out"
assert_eq "--install: udevadm control --reload" "control --reload" "$(cat "$T/udevadm.log" 2>/dev/null)"
assert_eq "--install: the device is chowned" "$OU:$OG" "$(stat -c %U:%G "$L")"
assert_contains "--install: the descriptor note" "the descriptor must be readable by $OU" "$T/.out"
assert_eq "--install: no temporary file in the rules directory" "" "$(find "$RULES" -name '.*')"
chown root:root "$L"
assert_rc "--install without udevadm: still done" 0 env VDISK_UDEV_RULES_DIR="$RULES" PATH=/nonexistent \
	"$VDISK" rawvmdk --force --owner $OU:$OG --install "$L" "$T/inst.vmdk"
assert_contains "  ... with a warning" "warning: udevadm not found" "$T/.err"
assert_eq "  ... and the device chowned" "$OU:$OG" "$(stat -c %U:%G "$L")"
fails "--install into a missing directory" "$T/no-such-dir" env VDISK_UDEV_RULES_DIR="$T/no-such-dir" \
	"$VDISK" rawvmdk --force --owner $OU:$OG --install "$L" "$T/inst.vmdk"
finish
