#!/usr/bin/env bash
# GPT disks against util-linux, e2fsprogs and Debian's zerofree:
#  - a GPT built by sfdisk (three named partitions, a gap, a non-ASCII
#    name): vdisk info --output=json lists the same start, size, type GUID,
#    partition UUID and name as sfdisk --json, and the same disk GUID
#  - ext4 in partitions 1 and 3 (mkfs.ext4 -d, files deleted with debugfs:
#    stale data in free space), unknown data in partition 2; exported to
#    VDI and VMDK by qemu-img; vdisk zerofree on the whole disk and with
#    --partition N: e2fsck -fn clean on each extracted partition, remaining
#    files identical (debugfs cat), Debian zerofree -n finds no non-zero
#    free block (it found some before), partition 2 and the tables untouched;
#    --partition 3 leaves partition 1 alone
#  - vdisk compact --fs-aware: walks both ext4 partitions, gives a smaller
#    file than a plain compact, filesystems still clean and files intact
#  - a damaged primary header: info, zerofree and compact read the backup
#    and say so; both headers damaged: refused, image unchanged
#  - vdisk create --script refuses 'label: gpt'
. "$(dirname "$0")/../lib.sh"
need sfdisk qemu-img mkfs.ext4 e2fsck debugfs zerofree jq sha256sum
MiB=$((1 << 20))
cd "$T" || exit 1

sha() { sha256sum "$1" | cut -d' ' -f1; }
nonzero_free() { zerofree -n -v "$1" 2>&1 | tr '\r' '\n' | grep -E '^[0-9]+/[0-9]+/[0-9]+$' | tail -1 | cut -d/ -f1; }
# part RAW START_MIB SIZE_MIB OUT
part() { dd if="$1" of="$4" bs=1M skip="$2" count="$3" status=none; }

# ---- the disk: 1 MiB..41 MiB ext4 "root fs", gap, 49..65 MiB unknown
# data "swap é", 65..85 MiB ext4 "data" ----
truncate -s 96M disk.img
printf 'label: gpt\nstart=2048, size=40M, type=L, name="root fs"\nstart=100352, size=16M, type=S, name="swap \xc3\xa9"\nstart=133120, size=20M, type=L, name="data"\n' |
	sfdisk -q disk.img || fail "sfdisk refused the script"
# build_ext NAME SIZE: ext4 with 6 files of 2.5 MiB, two deleted
build_ext() {
	mkdir -p "src$1"
	for i in 1 2 3 4 5 6; do rand_bytes "$1$i" $((5 * MiB / 2)) >"src$1/f$i"; done
	mkfs.ext4 -q -F -d "src$1" "$1.img" "$2" >/dev/null 2>&1 || fail "$1: mkfs.ext4 -d failed"
	debugfs -w -R "rm f2" "$1.img" >/dev/null 2>&1
	debugfs -w -R "rm f5" "$1.img" >/dev/null 2>&1
	(cd "src$1" && sha256sum f1 f3 f4 f6) >"$1.sums"
}
build_ext p1 40M
build_ext p3 20M
[ "$(nonzero_free p1.img)" -gt 0 ] && [ "$(nonzero_free p3.img)" -gt 0 ] &&
	pass "deleted files leave stale data in free space" || fail "no stale data to begin with"
dd if=p1.img of=disk.img bs=1M seek=1 conv=notrunc,sparse status=none
rand_bytes other $((16 * MiB)) | dd of=disk.img bs=1M seek=49 conv=notrunc status=none
dd if=p3.img of=disk.img bs=1M seek=65 conv=notrunc,sparse status=none
p2sum=$(part disk.img 49 16 /dev/stdout | sha256sum | cut -d' ' -f1)

# ---- info against sfdisk ----
norm_sf='[.partitiontable.partitions[] | {start, size, type: (.type | ascii_downcase), uuid: (.uuid | ascii_downcase), name}]'
norm_vd='[.partitions[] | {start, size: .sectors, type, uuid, name}]'
parts=$(sfdisk --json disk.img | jq -c "$norm_sf")
"$VDISK" info --output=json disk.img >info.json 2>info.err || fail "info failed: $(cat info.err)"
assert_eq "info: partitions as sfdisk --json lists them" "$parts" "$(jq -c "$norm_vd" info.json)"
assert_eq "info: disk GUID as sfdisk's label-id" "$(sfdisk --json disk.img | jq -r '.partitiontable.id | ascii_downcase')" \
	"$(jq -r '.["partition-table"] | select(.type == "gpt") | .id' info.json)"
assert_eq "info: ext4 found in partitions 1 and 3" '["ext4",null,"ext4"]' "$(jq -c '[.partitions[].content.type]' info.json)"
assert_eq "info: no warning for a sound GPT" "" "$(cat info.err)"
"$VDISK" info disk.img >info.txt
assert_contains "info: human output names the type and the partition" \
	'type 0fc63daf-8483-4772-8e79-3d69d8477de4 (Linux filesystem), name "root fs"' info.txt

# ---- geometry: the GPT entries with their offsets, no CHS ----
"$VDISK" geometry --output=json disk.img >geo.json || fail "geometry failed"
assert_eq "geometry: GPT named" gpt "$(jq -r '."partition-table".type' geo.json)"
assert_eq "geometry: starts and sizes as sfdisk --json" \
	"$(sfdisk --json disk.img | jq -c '[.partitiontable.partitions[] | [.start, .size]]')" \
	"$(jq -c '[.partitions[] | [.start, .sectors]]' geo.json)"
assert_eq "geometry: byte offsets for losetup -o" \
	"$(sfdisk --json disk.img | jq -c '[.partitiontable.partitions[] | .start * 512]')" \
	"$(jq -c '[.partitions[].offset]' geo.json)"
assert_eq "geometry: no CHS fields for GPT partitions" "[]" "$(jq -c '[.partitions[] | keys[] | select(startswith("chs"))]' geo.json)"
"$VDISK" geometry disk.img >geo.txt
assert_contains "geometry: human output says GPT" "partitions (GPT: LBAs only, CHS does not apply" geo.txt
assert_eq "geometry: no CHS mismatch flagged on the protective MBR" "" "$(grep -i 'mismatch' geo.txt)"
assert_contains "geometry: the losetup line of partition 1" "losetup -o 1048576 --sizelimit" geo.txt

# check_disk WHAT RAW [SKIP]: partitions 1 and 3 clean, files intact, no
# stale free blocks; partition 2 untouched (SKIP: partition not zeroed)
check_disk() {
	local what=$1 raw=$2 p n
	for p in 1:1:40 3:65:20; do
		n=${p%%:*}
		part "$raw" "$(echo "$p" | cut -d: -f2)" "${p##*:}" x.p
		if e2fsck -fn x.p >fsck.out 2>&1; then pass "$what: partition $n: e2fsck -fn clean"; else
			fail "$what: partition $n: e2fsck: $(tail -3 fsck.out)"; fi
		local f want bad=0
		while read -r want f; do
			[ "$(debugfs -R "cat /$f" x.p 2>/dev/null | sha256sum | cut -d' ' -f1)" = "$want" ] || bad=1
		done <"p$n.sums"
		[ $bad = 0 ] && pass "$what: partition $n: remaining files identical" || fail "$what: partition $n: a file changed"
		if [ "${3:-}" = "$n" ]; then
			[ "$(nonzero_free x.p)" -gt 0 ] && pass "$what: partition $n left alone (stale data still there)" ||
				fail "$what: partition $n was zeroed"
		else
			assert_eq "$what: partition $n: Debian zerofree -n: no non-zero free blocks" 0 "$(nonzero_free x.p)"
		fi
	done
	assert_eq "$what: partition 2 (unknown content) untouched" "$p2sum" "$(part "$raw" 49 16 /dev/stdout | sha256sum | cut -d' ' -f1)"
	assert_eq "$what: sfdisk still reads the same table" "$parts" "$(sfdisk --json "$raw" 2>/dev/null | jq -c "$norm_sf")"
}

# ---- zerofree: VDI, whole disk ----
qemu-img convert -O vdi disk.img d.vdi
"$VDISK" zerofree -q --output=json d.vdi >z.json 2>z.err || fail "vdi: zerofree failed: $(cat z.err)"
assert_eq "vdi: partitions 1 and 3 walked, 2 left alone" '[[1,"ext4"],[2,true],[3,"ext4"]]' \
	"$(jq -c '[.filesystems[] | [.partition, (.type // .skipped)]]' z.json)"
qemu-img convert -O raw d.vdi x.raw
check_disk vdi x.raw
assert_rc "vdi: vdisk check clean after zerofree" 0 "$VDISK" check d.vdi
"$VDISK" zerofree d.vdi >z.txt 2>&1
assert_contains "vdi: human output names the GPT type" "partition 1 (type Linux filesystem, 40 MiB at 1048576): ext4" z.txt

# ---- zerofree: VMDK, --partition 3 then --partition 1 ----
qemu-img convert -O vmdk disk.img d.vmdk
"$VDISK" zerofree -q --partition 3 --output=json d.vmdk >z.json 2>z.err || fail "vmdk: --partition 3 failed: $(cat z.err)"
assert_eq "vmdk: --partition 3 walks only partition 3" '[3]' "$(jq -c '[.filesystems[].partition]' z.json)"
qemu-img convert -O raw d.vmdk x.raw
check_disk "vmdk --partition 3" x.raw 1
"$VDISK" zerofree -q --partition 1 d.vmdk >/dev/null 2>z.err || fail "vmdk: --partition 1 failed: $(cat z.err)"
qemu-img convert -O raw d.vmdk x.raw
check_disk "vmdk --partition 1" x.raw
qemu-img check -q d.vmdk && pass "vmdk: qemu-img check" || fail "vmdk: qemu-img check"
assert_rc "--partition 2 (unknown content) is an error" 1 "$VDISK" zerofree --partition 2 d.vmdk
assert_rc "--partition 4 (unused entry) is an error" 1 "$VDISK" zerofree --partition 4 d.vmdk
assert_contains "the message says where it looked" "no partition 4 in the GPT" "$T/.err"
rm -f d.vmdk d.vdi

# ---- compact --fs-aware ----
qemu-img convert -O vdi disk.img c.vdi
cp c.vdi plain.vdi
"$VDISK" compact -q plain.vdi >/dev/null 2>&1 || fail "plain compact failed"
"$VDISK" compact -q --fs-aware --output=json c.vdi >c.json 2>c.err || fail "compact --fs-aware failed: $(cat c.err)"
note=$(jq -r .note c.json)
case $note in
*"partition 1: ext4"*"partition 2: no filesystem"*"partition 3: ext4"*) pass "compact --fs-aware: walks both ext4 partitions, leaves 2 alone" ;;
*) fail "compact --fs-aware note: $note" ;;
esac
[ "$(stat -c %s c.vdi)" -lt "$(stat -c %s plain.vdi)" ] && pass "compact --fs-aware: smaller than a plain compact" ||
	fail "compact --fs-aware: $(stat -c %s c.vdi) bytes, plain $(stat -c %s plain.vdi)"
qemu-img convert -O raw c.vdi x.raw
for p in 1:1:40 3:65:20; do
	part x.raw "$(echo "$p" | cut -d: -f2)" "${p##*:}" x.p
	e2fsck -fn x.p >/dev/null 2>&1 && pass "compact: partition ${p%%:*}: e2fsck -fn clean" || fail "compact: partition ${p%%:*}: e2fsck"
	bad=0
	while read -r w f; do [ "$(debugfs -R "cat /$f" x.p 2>/dev/null | sha256sum | cut -d' ' -f1)" = "$w" ] || bad=1; done <"p${p%%:*}.sums"
	[ $bad = 0 ] && pass "compact: partition ${p%%:*}: files identical" || fail "compact: partition ${p%%:*}: a file changed"
done
rm -f c.vdi plain.vdi

# ---- a damaged primary header: the backup ----
cp --sparse=always disk.img b.img
printf '\xff' | dd of=b.img bs=1 seek=$((512 + 16)) conv=notrunc status=none   # header CRC
"$VDISK" info --output=json b.img >info.json 2>info.err || fail "backup: info failed"
assert_eq "backup: info lists the same partitions" "$parts" "$(jq -c "$norm_vd" info.json)"
assert_contains "backup: info warns" "using the backup at LBA $((96 * 2048 - 1))" info.err
assert_eq "backup: header used" $((96 * 2048 - 1)) "$(jq '.["partition-table"]["header-lba"]' info.json)"
"$VDISK" zerofree -q b.img >z.txt 2>z.err || fail "backup: zerofree failed: $(cat z.err)"
assert_contains "backup: zerofree warns" "header CRC32" z.err
part b.img 1 40 x.p
e2fsck -fn x.p >/dev/null 2>&1 && pass "backup: partition 1: e2fsck -fn clean" || fail "backup: partition 1: e2fsck"
assert_eq "backup: partition 1 zeroed through the backup table" 0 "$(nonzero_free x.p)"
qemu-img convert -O vdi b.img b.vdi
"$VDISK" compact -q --fs-aware --output=json b.vdi >c.json 2>c.err || fail "backup: compact failed: $(cat c.err)"
assert_contains "backup: compact says so in its note" "using the backup" c.json
rm -f b.img b.vdi

# ---- both headers damaged: refused, unchanged ----
cp --sparse=always disk.img bad.img
printf 'X' | dd of=bad.img bs=1 seek=512 conv=notrunc status=none
printf 'X' | dd of=bad.img bs=1 seek=$(((96 * 2048 - 1) * 512)) conv=notrunc status=none
before=$(sha bad.img)
assert_rc "both headers damaged: zerofree refuses" 1 "$VDISK" zerofree bad.img
assert_contains "the message names both headers" "GPT header at LBA 1: signature 58" "$T/.err"
assert_contains "and the backup" "backup GPT header at LBA $((96 * 2048 - 1))" "$T/.err"
assert_eq "both headers damaged: zerofree changed nothing" "$before" "$(sha bad.img)"
assert_rc "both headers damaged: zerofree --partition 1 refuses" 1 "$VDISK" zerofree --partition 1 bad.img
assert_rc "both headers damaged: compact --fs-aware refuses" 1 "$VDISK" compact --fs-aware bad.img
assert_eq "both headers damaged: compact changed nothing" "$before" "$(sha bad.img)"
"$VDISK" info bad.img >/dev/null 2>info.err
assert_contains "both headers damaged: info says why" "backup GPT header" info.err

# ---- writing GPT is not supported ----
printf 'label: gpt\nsize=1M\n' >gpt.script
assert_rc "create --script refuses label: gpt" 1 "$VDISK" create -O raw --script gpt.script new.img 8M
assert_contains "the message says vdisk writes MBRs" "label 'gpt' is not supported" "$T/.err"
[ ! -e new.img ] && pass "create --script: nothing created" || fail "create --script: new.img exists"

# ---- MBR-only views of a GPT disk say so ----
"$VDISK" mbr --list disk.img >list.txt 2>list.err || fail "mbr --list failed"
assert_contains "mbr --list on a GPT disk: notes the protective MBR" "is a GPT disk and this is its protective MBR" list.err
if dev=$(losetup -f --show disk.img 2>/dev/null); then
	# detach only what is still backed by this file (the number may be reused)
	on_exit "losetup -n -O NAME -j '$PWD/disk.img' | xargs -r -n1 losetup -d"
	assert_rc "rawvmdk --partitions on a GPT disk: refused" 1 "$VDISK" rawvmdk --partitions 1 "$dev" raw.vmdk
	assert_contains "rawvmdk --partitions on a GPT disk: says why" "a GPT disk" "$T/.err"
	[ ! -e raw.vmdk ] && [ ! -e raw-pt.vmdk ] && pass "rawvmdk on a GPT disk: nothing written" || fail "rawvmdk wrote files"
	losetup -d "$dev"
else
	echo "no loop device: the rawvmdk check is skipped"
fi

# ---- vdisk mbr over a GPT disk: refused, or replaced with --wipe-gpt ----
truncate -s 64M w.img
printf 'label: gpt\nsize=10M, name=one\nsize=20M\n' | sfdisk -q w.img
qemu-img convert -O vdi w.img w.vdi
before=$(sha w.vdi)
printf 'start=2048, size=10000, type=83\n' >mbr.script
assert_rc "mbr on a GPT disk: refused" 1 "$VDISK" mbr --script mbr.script w.vdi
assert_contains "mbr on a GPT disk: says why and what to pass" "holds a GPT partition table" "$T/.err"
assert_contains "mbr on a GPT disk: names --wipe-gpt" "--wipe-gpt" "$T/.err"
assert_eq "mbr on a GPT disk: image unchanged" "$before" "$(sha w.vdi)"
assert_rc "mbr --dry-run on a GPT disk: refused too" 1 "$VDISK" mbr -n --script mbr.script w.vdi
assert_rc "mbr --wipe-gpt: replaces the GPT" 0 "$VDISK" mbr --wipe-gpt --script mbr.script w.vdi
qemu-img convert -O raw w.vdi w.raw
assert_eq "after --wipe-gpt: sfdisk reads a dos label" "dos" "$(sfdisk --json w.raw | jq -r .partitiontable.label)"
assert_eq "after --wipe-gpt: the MBR partition" "2048 10000" "$(sfdisk --json w.raw | jq -r '.partitiontable.partitions[0] | "\(.start) \(.size)"')"
if command -v wipefs >/dev/null; then
	assert_eq "after --wipe-gpt: wipefs finds no GPT signature" "" "$(wipefs -n w.raw 2>/dev/null | grep -i gpt)"
fi
assert_eq "after --wipe-gpt: no EFI PART in sector 1" "" "$(dd if=w.raw bs=512 skip=1 count=1 status=none | grep -a 'EFI PART')"
assert_eq "after --wipe-gpt: no EFI PART in the last sector" "" "$(tail -c 512 w.raw | grep -a 'EFI PART')"
assert_eq "after --wipe-gpt: vdisk reads a dos table" "dos" "$("$VDISK" info --output=json w.vdi | jq -r '."partition-table".type')"
rm -f w.img w.vdi w.raw

finish
