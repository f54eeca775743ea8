#!/usr/bin/env bash
# vdisk mbr / geometry / info against util-linux and libblkid:
#   util-linux's md5 vectors (one partition; empty table)
#   the same scripts through sfdisk and vdisk mbr give byte-identical images
#   (extended + logical, bootable, past cylinder 1023, legacy dumps,
#   --align cylinder vs sfdisk given the same sectors, kept boot code)
#   round trips: vdisk mbr -> sfdisk --dump, sfdisk -> vdisk mbr --dump/--json
#   fdisk -l / sfdisk -l agree with vdisk geometry
#   an MBR written into a VDI (and a VMDK, when that format is built in)
#   reads back through qemu-img convert + sfdisk
#   rejections exit 1 and leave the image byte-identical
#   vdisk info finds ext4, FAT, swap and XFS in raw, VDI (and VMDK) images,
#   as blkid does
. "$(dirname "$0")/../lib.sh"
need sfdisk fdisk jq cmp md5sum openssl

MiB=$((1 << 20))
cd "$T" || exit 1

fresh() { rm -f "$1"; truncate -s "$2" "$1"; }
# same_bytes A B: the whole images are equal (large sparse ones through
# qemu-img compare, which skips holes but compares every data byte)
same_bytes() {
	[ "$(stat -c %s "$1")" = "$(stat -c %s "$2")" ] || return 1
	if [ "$(stat -c %s "$1")" -gt $((256 * MiB)) ] && command -v qemu-img >/dev/null; then
		qemu-img compare -q -f raw -F raw "$1" "$2"
	else
		cmp -s "$1" "$2"
	fi
}
# a dump without the device line and with the partitions named P1, P2, ...
norm() { sed -E '/^device:/d; s/^[^ :]*[^0-9]([0-9]+) :/P\1 :/'; }

# same_as_sfdisk WHAT SIZE SCRIPT [VDISK-OPTIONS...]: sfdisk and vdisk mbr
# write the same bytes for SCRIPT onto zeroed images
same_as_sfdisk() {
	local what=$1 size=$2 script=$3; shift 3
	fresh s.img "$size"
	fresh v.img "$size"
	if ! printf '%b' "$script" | sfdisk -q s.img >/dev/null 2>"$T/sf.err"; then
		fail "$what: sfdisk refused the script: $(head -c 200 "$T/sf.err")"; return; fi
	if ! printf '%b' "$script" | "$VDISK" mbr "$@" v.img 2>"$T/v.err"; then
		fail "$what: vdisk mbr failed: $(head -c 300 "$T/v.err")"; return; fi
	if same_bytes s.img v.img; then pass "$what: identical to sfdisk"; else
		fail "$what: differs from sfdisk: $(cmp s.img v.img 2>&1 | head -1)"
		diff <(sfdisk -d s.img | tail -n +3) <(sfdisk -d v.img | tail -n +3) | sed 's/^/    /' >&2
	fi
}

# ---- util-linux's own vectors ----
fresh a.img 20M
printf 'label: dos\nlabel-id: 0x00000001\nunit: sectors\n\nstart=2048, size=6144, type=83\n' | "$VDISK" mbr a.img
assert_eq "util-linux md5: one type-83 partition at 2048..8191" e21e16b7452d82e2a2810a1de8c3db05 "$(md5sum <a.img | cut -d' ' -f1)"
fresh a.img 20M
printf 'label: dos\nlabel-id: 0x00000001\n' | "$VDISK" mbr a.img
assert_eq "util-linux md5: empty table" 4e23561dcb81678bb1bd678722c7cbb7 "$(md5sum <a.img | cut -d' ' -f1)"

# ---- byte-identical with sfdisk ----
same_as_sfdisk "one partition, rest of the disk" 64M 'label: dos\nlabel-id: 0x0badcafe\n,,83\n'
same_as_sfdisk "bootable primaries, extended, logicals" 100M \
	'label: dos\nlabel-id: 0x12345678\n\n,10M,83,*\n,50M,E\n,5M,83\n,5M,82\n,5M,L\n,,L\n'
same_as_sfdisk "extended first, logicals in it, then primaries" 100M \
	'label: dos\nlabel-id: 0x1\n,60M,5\n,10M\n,10M,c,*\n,5M\n,,82\n'
same_as_sfdisk "logical at an explicit start inside the extended" 100M \
	'label: dos\nlabel-id: 0x2\n,10M,83\n,50M,E\nstart=30000,size=5M,type=83\n,5M,L\n'
same_as_sfdisk "explicit sectors, unaligned starts, 0x0f extended" 5G \
	'label: dos\nlabel-id: 0xdeadbeef\nstart=16065,size=8000000,type=83\nstart=8016065,size=2000000,type=f\nstart=8032130,size=1000000,type=82\nstart=9048195,size=900000,type=83\n'
same_as_sfdisk "unit sizes (no oversize)" 100M 'label: dos\nlabel-id: 0x3\nstart=3000,size=1537K\n,1536K\n,3M,7\n'
same_as_sfdisk "small disk (no 1 MiB grain)" 4M 'label: dos\nlabel-id: 0x4\n,1M\n,\n'
same_as_sfdisk "partitions past cylinder 1023 (CHS fe ff ff)" 20G \
	'label: dos\nlabel-id: 0x5\n,9G,c,*\n,,E\n,3G,83\n,,82\n'
same_as_sfdisk "sizes in G and MiB, type aliases" 12G 'label: dos\nlabel-id: 0x6\n,512MiB,U,*\n,8G,L\n,,S\n'

# a legacy (cylinder) layout given as a dump: sfdisk puts the EBRs of
# logicals 6+ right before them, and so does vdisk
LEGACY='label: dos\nlabel-id: 0x7\nstart=63,size=16002,type=83\nstart=16065,size=1000000,type=5\nstart=16128,size=100002,type=83\nstart=116193,size=200000,type=83\nstart=316256,size=1000,type=83\n'
same_as_sfdisk "legacy layout from a dump" 1G "$LEGACY"

# kept boot code: both tools keep bytes 0..439 and rewrite 440..511
fresh s.img 64M
rand_bytes boot 512 >boot.bin
dd if=boot.bin of=s.img conv=notrunc status=none
cp s.img v.img
printf 'label: dos\nlabel-id: 0x8\n,10M,83,*\n' | sfdisk -q s.img >/dev/null
printf 'label: dos\nlabel-id: 0x8\n,10M,83,*\n' | "$VDISK" mbr v.img
if cmp -s s.img v.img; then pass "boot code kept, like sfdisk"; else fail "boot code: $(cmp s.img v.img 2>&1)"; fi
# --bootcode installs 440 bytes into a blank image: same as sfdisk after dd
fresh v.img 64M
printf 'label: dos\nlabel-id: 0x8\n,10M,83,*\n' | "$VDISK" mbr --bootcode boot.bin v.img
if cmp -s s.img v.img; then pass "--bootcode installs the first 440 bytes"; else fail "--bootcode: $(cmp s.img v.img 2>&1)"; fi
head -c 100 boot.bin >short.bin
assert_rc "--bootcode refuses a file shorter than 440 bytes" 1 "$VDISK" mbr --bootcode short.bin v.img </dev/null

# --align cylinder: vdisk lays out by cylinders; sfdisk given the same
# sectors writes the same bytes (primaries and the first logical)
fresh c.img 4141875200
printf 'label: dos\nlabel-id: 0x9\n,,83\n' | "$VDISK" mbr --align cylinder c.img
assert_eq "--align cylinder: the worked example" "63 8080632" \
	"$("$VDISK" mbr --output=json c.img | jq -r '.partitiontable.partitions[0] | "\(.start) \(.size)"')"
CYL='label: dos\nlabel-id: 0xa\n,100M,83,*\n,100M\n,,E\n,200M,82\n'
fresh c.img 1G
printf '%b' "$CYL" | "$VDISK" mbr --align cylinder --dry-run c.img >cyl.txt
# starts mod 16065 of partitions 1, 2, 3, 5: 63, 0, 0, 63 (the logical's EBR
# is on the cylinder boundary, the partition one track later)
assert_eq "--align cylinder: cylinder boundaries" "63 0 0 63" \
	"$(sed -n 's/.*start= *\([0-9]*\),.*/\1/p' cyl.txt | awk '{printf "%s%d", (NR > 1 ? " " : ""), $1 % 16065}')"
assert_eq "--align cylinder: ends on cylinder boundaries" "0 0 0 0" \
	"$(sed -n 's/.*start= *\([0-9]*\), size= *\([0-9]*\),.*/\1 \2/p' cyl.txt | awk '{printf "%s%d", (NR > 1 ? " " : ""), ($1 + $2) % 16065}')"
same_as_sfdisk "--align cylinder vs sfdisk given the same sectors" 1G "$(cat cyl.txt)\n" --align cylinder

# ---- round trips ----
fresh v.img 100M
printf 'label: dos\nlabel-id: 0x12345678\n,10M,83,*\n,50M,E\n,5M,83\n,5M,82\n,5M,L\n,,L\n' | "$VDISK" mbr v.img
assert_eq "vdisk mbr -> sfdisk --dump == vdisk mbr --dump" "$(sfdisk --dump v.img)" "$("$VDISK" mbr --dump v.img)"
assert_eq "vdisk mbr --output=json == sfdisk --json" "$(sfdisk --json v.img)" "$("$VDISK" mbr --output=json v.img)"
fresh s.img 1G
printf '%b' "$LEGACY" | sfdisk -q s.img >/dev/null
assert_eq "sfdisk -> vdisk mbr --dump == sfdisk --dump" "$(sfdisk --dump s.img)" "$("$VDISK" mbr --dump s.img)"
fresh disk1 10M
printf 'label: dos\n,,83\n' | sfdisk -q disk1 >/dev/null
assert_eq "partition names of a path ending in a digit" "$(sfdisk --dump disk1)" "$("$VDISK" mbr --dump disk1)"
# a dump copies a layout: vdisk mbr --dump a | vdisk mbr b
fresh w.img 1G
"$VDISK" mbr --dump s.img | "$VDISK" mbr w.img
if cmp -s s.img w.img; then pass "vdisk mbr --dump a | vdisk mbr b copies the table"; else fail "dump copy: $(cmp s.img w.img 2>&1)"; fi
assert_eq "empty table: dump like sfdisk" "$(sfdisk --dump a.img | sed 's/^device: .*//')" "$("$VDISK" mbr --dump a.img | sed 's/^device: .*//')"

# ---- fdisk -l / sfdisk -l vs vdisk geometry ----
for img in v.img s.img; do
	g=$("$VDISK" geometry --output=json "$img" | jq -r '.partitions[] | "\(.start) \(.end) \(.sectors)"')
	sf=$(sfdisk -l -o Start,End,Sectors "$img" | awk '/^ *Start/ {on=1; next} on && NF == 3 {print $1, $2, $3}')
	fd=$(fdisk -l -o Start,End,Sectors "$img" | awk '/^ *Start/ {on=1; next} on && NF == 3 {print $1, $2, $3}')
	assert_eq "$img: sfdisk -l agrees with vdisk geometry" "$sf" "$g"
	assert_eq "$img: fdisk -l agrees with vdisk geometry" "$fd" "$g"
done
assert_eq "vdisk geometry: no CHS mismatch on sfdisk's table" "false" \
	"$("$VDISK" geometry --output=json v.img | jq '[.partitions[]."chs-mismatch"] | any')"
# a stored CHS that disagrees is flagged
cp v.img m.img
printf '\x00\x01\x00' | dd of=m.img bs=1 seek=$((446 + 1)) conv=notrunc status=none
assert_eq "vdisk geometry flags a CHS field that disagrees with the LBA" "1" \
	"$("$VDISK" geometry --output=json m.img | jq '[.partitions[] | select(."chs-mismatch")] | length')"
"$VDISK" geometry m.img >geo.txt
assert_contains "vdisk geometry: human output flags it" "CHS mismatch" geo.txt
"$VDISK" geometry 4141875200 >geo.txt
assert_contains "vdisk geometry: worked example cylinders" "cylinders: 503 (4137315840 usable bytes" geo.txt
assert_contains "vdisk geometry: worked example losetup" "losetup -o 32256 --sizelimit 4137283584" geo.txt
assert_contains "vdisk geometry: worked example mkfs" "mkfs ... 4040316" geo.txt
assert_rc "vdisk geometry: neither an image nor a size" 1 "$VDISK" geometry no-such-file
# MBR partitions get their losetup and mkfs numbers too (as GPT ones do):
# a primary, an extended and two logicals made by sfdisk, checked against
# sfdisk --json in the JSON (offset, bytes, blocks-1k) and in the text
fresh l.img 64M
printf 'label: dos\nlabel-id: 0x1badd00d\nstart=2048, size=20480, type=83\nstart=22528, type=5\nstart=24576, size=10240, type=83\nstart=36864, type=82\n' |
	sfdisk -q l.img >/dev/null || fail "sfdisk refused the logical-partition script"
want=$(sfdisk --json l.img | jq -r '.partitiontable.partitions[] |
	"\(.node | sub("^.*[^0-9]"; "")) \(.start) \(.start * 512) \(.size * 512) \((.size / 2) | floor) \(.type)"')
got=$("$VDISK" geometry --output=json l.img | jq -r '.partitions[] |
	"\(.number) \(.start) \(.offset) \(.bytes) \(."blocks-1k") \(.type)"')
assert_eq "MBR with logicals: geometry JSON offsets, bytes, blocks-1k as sfdisk --json" "$want" "$got"
assert_eq "MBR with logicals: 4 partitions (1, 2 extended, 5, 6)" "1 2 5 6" \
	"$(echo "$got" | awk '{print $1}' | tr '\n' ' ' | sed 's/ $//')"
"$VDISK" geometry l.img >geo.txt
sfdisk --json l.img | jq -r '.partitiontable.partitions[] | select(.type != "5") |
	"losetup -o \(.start * 512) --sizelimit \(.size * 512); mkfs ... \((.size / 2) | floor)"' >want.txt
[ "$(wc -l <want.txt)" = 3 ] || fail "expected 3 non-extended partitions from sfdisk"
while read -r line; do
	assert_contains "MBR text: $line" "$line" geo.txt
done <want.txt
assert_eq "MBR text: one losetup line per non-extended partition" 3 "$(grep -c 'losetup -o .*; mkfs' geo.txt)"
assert_contains "MBR text: the extended partition has none" "extended: holds the logical partitions" geo.txt

# ---- rejections: exit 1, image unchanged ----
fresh r.img 100M
printf 'label: dos\nlabel-id: 0x77\n,10M\n,10M\n' | "$VDISK" mbr r.img
rand_bytes data 65536 | dd of=r.img bs=64K seek=1 conv=notrunc status=none
cp r.img r0.img
rej() { # WHAT SCRIPT
	local rc=0
	printf '%b' "$2" | "$VDISK" mbr r.img >/dev/null 2>"$T/rej.err" || rc=$?
	if [ "$rc" = 1 ] && cmp -s r.img r0.img && [ -s "$T/rej.err" ]; then
		pass "rejects $1 ($(head -c 120 "$T/rej.err"))"
	else fail "$1: exit $rc, image $(cmp -s r.img r0.img && echo unchanged || echo CHANGED)"; fi
}
rej "overlapping partitions" 'start=2048,size=4096\nstart=4000,size=100\n'
rej "a partition past the end" 'start=2048,size=300000\n'
rej "a start past the end" 'start=300000,size=10\n'
rej "5 primary partitions" ',1M\n,1M\n,1M\n,1M\n,1M\n'
rej "a bad type" ',1M,xyz\n'
rej "type 0" ',1M,0\n'
rej "a GPT label" 'label: gpt\n,1M\n'
rej "two extended partitions" ',10M,E\n,10M,E\n'
rej "logical without extended" 'r.img5 : start=4096,size=100\n'
rej "an unknown field" ',1M,83,bootable,foo=1\n'

# ---- VDI: write the MBR through the block-I/O layer ----
if command -v qemu-img >/dev/null; then
	"$VDISK" create -O vdi d.vdi 100M
	printf 'label: dos\nlabel-id: 0x12345678\n,10M,83,*\n,50M,E\n,5M,83\n,5M,82\n,5M,L\n,,L\n' | "$VDISK" mbr d.vdi
	qemu-img convert -f vdi -O raw d.vdi d.raw
	fresh s.img 100M
	printf 'label: dos\nlabel-id: 0x12345678\n,10M,83,*\n,50M,E\n,5M,83\n,5M,82\n,5M,L\n,,L\n' | sfdisk -q s.img >/dev/null
	if cmp -s s.img d.raw; then pass "VDI: MBR + EBRs via qemu-img convert identical to sfdisk's"; else fail "VDI: $(cmp s.img d.raw 2>&1)"; fi
	assert_eq "VDI: sfdisk --dump of the converted image" "$(sfdisk --dump s.img | norm)" "$(sfdisk --dump d.raw | norm)"
	assert_eq "VDI: vdisk mbr --dump reads the table in the VDI" "$(sfdisk --dump s.img | norm)" "$("$VDISK" mbr --dump d.vdi | norm)"
	# VMDK, once the backend is registered
	if "$VDISK" create -O vmdk d.vmdk 100M 2>/dev/null; then
		printf 'label: dos\nlabel-id: 0x12345678\n,10M,83,*\n,50M,E\n,5M,83\n,5M,82\n,5M,L\n,,L\n' | "$VDISK" mbr d.vmdk
		qemu-img convert -f vmdk -O raw d.vmdk dk.raw
		if cmp -s s.img dk.raw; then pass "VMDK: MBR + EBRs via qemu-img convert identical to sfdisk's"; else fail "VMDK: $(cmp s.img dk.raw 2>&1)"; fi
		assert_eq "VMDK: sfdisk --dump of the converted image" "$(sfdisk --dump s.img | norm)" "$(sfdisk --dump dk.raw | norm)"
	else
		echo "SKIP (part): no vmdk format, VMDK checks skipped"
	fi
else
	echo "SKIP (part): qemu-img not installed, VDI checks skipped"
fi

# ---- content: ext4, FAT, swap, XFS found as blkid finds them ----
if command -v mkfs.ext4 >/dev/null && command -v mkfs.vfat >/dev/null && command -v mkswap >/dev/null &&
	command -v blkid >/dev/null; then
	fresh fs.img 400M
	printf 'label: dos\nlabel-id: 0x99\n,16M,83\n,16M,c\n,8M,82\n,,83\n' | "$VDISK" mbr fs.img
	offs=($("$VDISK" mbr --output=json fs.img | jq -r '.partitiontable.partitions[] | "\(.start) \(.size)"' | tr '\n' ' '))
	# ext4 straight into the image at its offset
	mkfs.ext4 -q -F -L rootfs -E offset=$((offs[0] * 512)) fs.img $((offs[1] / 2))k >/dev/null 2>&1 ||
		fail "mkfs.ext4 -E offset"
	# FAT and swap on partition-sized files, then dd into place
	fresh p2 $((offs[3] * 512)); mkfs.vfat -n BOOTFAT p2 >/dev/null
	dd if=p2 of=fs.img bs=512 seek="${offs[2]}" conv=notrunc,sparse status=none
	fresh p3 $((offs[5] * 512)); mkswap -L swp p3 >/dev/null 2>&1
	dd if=p3 of=fs.img bs=512 seek="${offs[4]}" conv=notrunc,sparse status=none
	if command -v mkfs.xfs >/dev/null; then
		fresh p4 $((offs[7] * 512))
		mkfs.xfs -q -L xfsdata p4 2>/dev/null || fail "mkfs.xfs"
		dd if=p4 of=fs.img bs=64K seek=$((offs[6] / 128)) conv=notrunc,sparse status=none
		want_xfs=1
	else
		echo "SKIP (part): mkfs.xfs not installed"; want_xfs=0
	fi
	expect_blkid() { # IMAGE FORMAT-NAME: vdisk info agrees with blkid -p of each partition
		local j n i dev want got
		j=$("$VDISK" info --output=json "$1")
		for n in 1 2 3 4; do
			[ "$n" = 4 ] && [ "$want_xfs" = 0 ] && continue
			i=$((n - 1))
			dev=$T/part$n
			dd if=fs.img of="$dev" bs=512 skip="${offs[$((2 * i))]}" count="${offs[$((2 * i + 1))]}" conv=sparse status=none 2>/dev/null
			want=$(blkid -p -o export "$dev" | grep -E '^(TYPE|LABEL|UUID)=' | sort | tr '\n' ' ')
			got=$(jq -r --argjson n "$n" '.partitions[] | select(.number == $n) | .content | "LABEL=\(.label)\nTYPE=\(.type)\nUUID=\(.uuid)"' <<<"$j" | grep -v '=$' | sort | tr '\n' ' ')
			rm -f "$dev"
			if [ -n "$want" ] && [ "$want" = "$got" ]; then pass "$2: partition $n: $got"; else
				fail "$2: partition $n: blkid says '$want', vdisk info '$got'"; fi
		done
	}
	expect_blkid fs.img raw
	"$VDISK" convert -O vdi fs.img fs.vdi
	expect_blkid fs.vdi vdi
	if "$VDISK" convert -O vmdk fs.img fs.vmdk 2>/dev/null; then
		expect_blkid fs.vmdk vmdk
	else
		echo "SKIP (part): no vmdk format, VMDK content checks skipped"
	fi
	"$VDISK" info fs.vdi >info.txt
	assert_contains "info (human): ext4 label" 'content: ext4 (filesystem), version 1.0, label "rootfs"' info.txt
	assert_contains "info (human): FAT" 'content: vfat (filesystem)' info.txt
	assert_contains "info (human): swap" 'content: swap (other)' info.txt
	# an unpartitioned disk: the content object of the whole disk
	fresh whole.img 32M
	mkfs.ext4 -q -F -L whole whole.img >/dev/null 2>&1
	"$VDISK" convert -O vdi whole.img whole.vdi
	for f in whole.img whole.vdi; do
		assert_eq "$f: whole-disk content" "ext4 whole $(blkid -p -o value -s UUID whole.img)" \
			"$("$VDISK" info --output=json "$f" | jq -r '.content | "\(.type) \(.label) \(.uuid)"')"
	done
	assert_eq "a whole-disk FAT boot sector is not a partition table" "vfat null" \
		"$(fresh wf.img 16M; mkfs.vfat wf.img >/dev/null; "$VDISK" info --output=json wf.img | jq -r '"\(.content.type) \(.partitions)"')"
else
	echo "SKIP (part): mkfs tools or blkid missing, content checks skipped"
fi

finish
