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
#    OUT without --force, files left behind; --owner prints and installs nothing.
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
fails "no MBR with --partitions" "no MBR" "$VDISK" rawvmdk -P 1 "$T/nombr.img" "$T/x.vmdk"
[ -e "$T/x.vmdk" ] || [ -e "$T/x-pt.vmdk" ] && fail "a refused rawvmdk left files" || pass "refusals leave no files"
assert_eq "no temporary files left" "" "$(find "$T" -name '.*vdisk-tmp*')"

# ---- --owner: printed, not installed
assert_rc "--owner" 0 "$VDISK" rawvmdk --owner alice:kvm "$L" "$T/own.vmdk"
assert_contains "--owner: udev rule" "KERNEL==\"${L#/dev/}\", OWNER=\"alice\", GROUP=\"kvm\"" "$T/.out"
assert_contains "--owner: chown command" "chown alice:kvm $L" "$T/.out"
assert_eq "--owner installs nothing" "" "$(ls /etc/udev/rules.d/99-vdisk-* 2>/dev/null || true)"
fails "--owner with a quote" "--owner" "$VDISK" rawvmdk --owner 'a"b' "$L" "$T/x.vmdk"

finish
