#!/usr/bin/env bash
# vdisk create --script/--part (vd_build) against truncate + sfdisk + dd +
# qemu-img convert:
#   the same inputs give the same guest disk in raw (byte-identical), VDI
#   dynamic/fixed and every VMDK subformat, and qemu-img check is clean
#   zero blocks of the inputs are not allocated in the output
#   --deterministic (and SOURCE_DATE_EPOCH) give identical bytes twice;
#   without it two runs differ, and only in identifiers (a rebuild with the
#   first run's identifiers given explicitly is byte-identical)
#   --output=json: offsets, sizes, the SHA-256 of every output file
#   SIZE omitted: the disk ends at the 1 MiB boundary after the last partition
#   the ext4 partition passes e2fsck -fn, through a loop device with offset
#   when there is one, and out of a streamOptimized VMDK
#   errors (file larger than its partition, overlap, unknown option,
#   unreadable input) exit 1, say why, and leave no output or temp file
. "$(dirname "$0")/../lib.sh"
need qemu-img sfdisk mkfs.ext4 mkfs.vfat e2fsck jq sha256sum cmp openssl

MiB=$((1 << 20))
cd "$T" || exit 1

# ---- inputs: a 20 MiB ext4 filled with mkfs.ext4 -d, an 8 MiB FAT (as VDI),
# a 1 MiB raw file with a hole and a zero-filled data block ----
mkdir root
rand_bytes ext4 3000000 >root/rand.bin
echo "hello from vdisk" >root/hello.txt
truncate -s 20M ext4.img
mkfs.ext4 -q -F -d root ext4.img || skip "mkfs.ext4 -d failed"
truncate -s 8M fat.img
mkfs.vfat -i 0badf00d fat.img >/dev/null
qemu-img convert -f raw -O vdi fat.img fat.vdi
truncate -s 1M small.raw
rand_bytes small 4096 | dd of=small.raw bs=4096 seek=100 conv=notrunc status=none
dd if=/dev/zero of=small.raw bs=4096 seek=10 count=4 conv=notrunc status=none

cat >script <<'EOF'
label: dos
label-id: 0x0badcafe
,20MiB,L,*,file=ext4.img
,,E
,8MiB,c, file="fat.vdi"
,4MiB,L
EOF

# ---- the reference: truncate + sfdisk + dd ----
truncate -s 64M ref.img
sed 's/, *file=.*//' script | sfdisk -q ref.img >/dev/null
start() { sfdisk -d ref.img | awk -v n="ref.img$1" '$1 == n { sub(",", "", $4); print $4 }'; }
dd if=ext4.img of=ref.img bs=512 seek="$(start 1)" conv=notrunc,sparse status=none
dd if=fat.img of=ref.img bs=512 seek="$(start 5)" conv=notrunc,sparse status=none
dd if=small.raw of=ref.img bs=512 seek="$(start 6)" conv=notrunc,sparse status=none

# ---- raw: byte for byte ----
"$VDISK" create -O raw --script script --part 6=small.raw v.img 64M >out.txt 2>err.txt ||
	fail "raw build: $(cat err.txt)"
if cmp -s ref.img v.img; then pass "raw: identical to truncate + sfdisk + dd"; else
	fail "raw: differs from the reference: $(cmp ref.img v.img 2>&1 | head -1)"; fi
assert_contains "human summary names the input" "from ext4.img" out.txt

# ---- every format: qemu-img compare with qemu-img convert of the reference ----
formats=(
	"vdi||vdi|"
	"vdi|subformat=fixed|vdi|static=on"
	"vmdk||vmdk|"
	"vmdk|subformat=monolithicFlat|vmdk|subformat=monolithicFlat"
	"vmdk|subformat=twoGbMaxExtentSparse|vmdk|subformat=twoGbMaxExtentSparse"
	"vmdk|subformat=twoGbMaxExtentFlat|vmdk|subformat=twoGbMaxExtentFlat"
	"vmdk|subformat=streamOptimized|vmdk|subformat=streamOptimized"
)
# the files of an image: DST and its extents (NAME-flat, NAME-sNNN, NAME-fNNN)
files_of() { ls "$1" "${1%.*}"-*.vmdk 2>/dev/null; }
sums_of() { (cd "$(dirname "$1")" && for f in $(files_of "$(basename "$1")"); do sha256sum "$f"; done); }
for spec in "${formats[@]}"; do
	IFS='|' read -r fmt vopts qfmt qopts <<<"$spec"
	name="$fmt${vopts:+ $vopts}"
	rm -rf a b c && mkdir a b c
	ext=$fmt
	args=(-O "$fmt" ${vopts:+-o "$vopts"} --script script --part 6=small.raw)
	if ! "$VDISK" create "${args[@]}" --deterministic --output=json a/d.$ext 64M >a/json 2>err.txt; then
		fail "$name: build failed: $(cat err.txt)"; continue; fi
	qemu-img convert -f raw -O "$qfmt" ${qopts:+-o "$qopts"} ref.img "ref.$ext.$RANDOM"
	ref=$(ls ref.$ext.* | tail -1)
	if qemu-img compare -q "$ref" a/d.$ext; then pass "$name: equals qemu-img convert of the sfdisk+dd image"; else
		fail "$name: differs from qemu-img convert of the reference"; fi
	rc=0; qemu-img check -q a/d.$ext >check.txt 2>&1 || rc=$?
	# 0 clean; flat extents have nothing to check
	if [ $rc = 0 ] || { [ $rc = 63 ] && [[ $vopts == *Flat* ]]; }; then pass "$name: qemu-img check"; else
		fail "$name: qemu-img check exit $rc: $(head -c 300 check.txt)"; fi
	# JSON: the checksum of every file, the partition offsets
	assert_eq "$name: json sha256 of every file" "$(sums_of a/d.$ext | awk '{print $1}' | sort)" \
		"$(jq -r '.files[].sha256' a/json | sort)"
	assert_eq "$name: json offset of partition 5" "$(($(start 5) * 512))" \
		"$(jq '.partitions[] | select(.number == 5) | .offset' a/json)"
	# sparse: no more allocated than qemu-img convert allocates (-S 4k)
	alloc() { qemu-img map --output=json "$1" | jq '[.[] | select(.data and (.zero | not)) | .length] | add // 0'; }
	data=$(alloc a/d.$ext) refdata=$(alloc "$ref")
	if [[ $vopts == *Flat* ]] || [[ $vopts == *fixed* ]] ||
	   { [ "$data" -le "$refdata" ] && [ "$data" -lt $((16 * MiB)) ]; }; then
		pass "$name: zero blocks stay unallocated ($data bytes of data, qemu-img: $refdata)"; else
		fail "$name: $data bytes allocated, qemu-img convert allocates $refdata"; fi
	rm -f ref.$ext.* ref.$ext.*-*
	# determinism
	"$VDISK" create "${args[@]}" --deterministic b/d.$ext 64M >/dev/null 2>err.txt || fail "$name: second build: $(cat err.txt)"
	assert_eq "$name: --deterministic twice, identical bytes" "$(sums_of a/d.$ext)" "$(sums_of b/d.$ext)"
	SOURCE_DATE_EPOCH=1700000000 "$VDISK" create "${args[@]}" c/d.$ext 64M >/dev/null 2>err.txt ||
		fail "$name: SOURCE_DATE_EPOCH build: $(cat err.txt)"
	assert_eq "$name: SOURCE_DATE_EPOCH is --deterministic" "$(sums_of a/d.$ext)" "$(sums_of c/d.$ext)"
	# without it: different identifiers, nothing else
	rm -rf b c && mkdir b c
	"$VDISK" create "${args[@]}" --output=json b/d.$ext 64M >b/json 2>err.txt || fail "$name: random build: $(cat err.txt)"
	if [ "$(sums_of a/d.$ext)" != "$(sums_of b/d.$ext)" ]; then pass "$name: a run without --deterministic differs"; else
		fail "$name: a run without --deterministic gave the deterministic bytes"; fi
	ids=$(jq -r '[(if .uuid then "uuid=" + .uuid else empty end),
		      (if .["modification-uuid"] then "uuid_modify=" + .["modification-uuid"] else empty end)] |
		     join(",")' b/json)
	cid=$(jq -r '.cid // empty' b/json) # a number in the JSON, hex for -o cid=
	[ -n "$cid" ] && ids="${ids:+$ids,}cid=$(printf %08x "$cid")"
	"$VDISK" create -O "$fmt" -o "${vopts:+$vopts,}$ids" --script script --part 6=small.raw --deterministic \
		c/d.$ext 64M >/dev/null 2>err.txt || fail "$name: rebuild with $ids: $(cat err.txt)"
	assert_eq "$name: only the identifiers ($ids) differ" "$(sums_of b/d.$ext)" "$(sums_of c/d.$ext)"
done

# raw has one identifier: the disk identifier
printf 'label: dos\n,20MiB,L,file=ext4.img\n' >noid
"$VDISK" create -O raw --script noid --output=json n1.img 32M >n1.json
"$VDISK" create -O raw --script noid --output=json n2.img 32M >n2.json
id1=$(jq -r '.["partition-table"].id' n1.json)
if ! cmp -s n1.img n2.img; then pass "raw: random disk identifiers differ"; else fail "raw: two random disk identifiers are equal"; fi
"$VDISK" create -O raw --script noid --label-id "${id1#0x}" n3.img 32M >/dev/null
if cmp -s n1.img n3.img; then pass "raw: only the disk identifier differs"; else fail "raw: more than the disk identifier differs"; fi
assert_eq "--label-id is written" "$id1" "$(sfdisk -d n3.img | awk '/^label-id:/ {print $2}')"
"$VDISK" create -O raw --script noid --deterministic d1.img 32M >/dev/null
"$VDISK" create -O raw --script noid --deterministic d2.img 32M >/dev/null
cmp -s d1.img d2.img && pass "raw: deterministic disk identifier" || fail "raw: deterministic disk identifiers differ"
# the identifiers depend on the contents: another ext4 gives another one
cp ext4.img ext4b.img
printf 'x' | dd of=ext4b.img bs=1 seek=$((15 * MiB)) conv=notrunc status=none
sed 's/ext4.img/ext4b.img/' noid >noidb
"$VDISK" create -O raw --script noidb --deterministic d3.img 32M >/dev/null
if [ "$(sfdisk -d d1.img | grep label-id)" != "$(sfdisk -d d3.img | grep label-id)" ]; then
	pass "deterministic identifiers follow the contents"; else fail "one changed byte kept the disk identifier"; fi

# ---- SIZE omitted ----
printf 'label: dos\nlabel-id: 0x00000001\n,20MiB,L,file=ext4.img\n,,c,file=fat.img\n' >nosize
"$VDISK" create -O raw --script nosize --output=json ns.img >ns.json 2>err.txt || fail "no SIZE: $(cat err.txt)"
assert_eq "no SIZE: 1 MiB + 20 MiB + 8 MiB" $((29 * MiB)) "$(stat -c %s ns.img 2>/dev/null)"
assert_eq "no SIZE: json size" $((29 * MiB)) "$(jq '."virtual-size"' ns.json)"
truncate -s 29M nsref.img
printf 'label: dos\nlabel-id: 0x00000001\n,20MiB,L\n,8MiB,c\n' | sfdisk -q nsref.img >/dev/null
dd if=ext4.img of=nsref.img bs=1M seek=1 conv=notrunc status=none
dd if=fat.img of=nsref.img bs=1M seek=21 conv=notrunc status=none
cmp -s nsref.img ns.img && pass "no SIZE: identical to sfdisk + dd" || fail "no SIZE: differs from sfdisk + dd"

# ---- filesystems survive: e2fsck, loop mounts ----
"$VDISK" convert -O raw a/d.vmdk back.raw 2>/dev/null || true # the last format built: streamOptimized
dd if=back.raw of=p1.img bs=512 skip="$(start 1)" count=40960 status=none
if e2fsck -fn p1.img >fsck.txt 2>&1; then pass "ext4 out of the streamOptimized VMDK: e2fsck -fn clean"; else
	fail "e2fsck -fn on partition 1: $(tail -3 fsck.txt)"; fi
loop_check() {
	local dev mnt=$T/mnt
	[ "$(id -u)" = 0 ] || { echo "SKIP: loop mounts need root"; return; }
	dev=$(losetup -f --show -r -o $(($(start 1) * 512)) --sizelimit $((20 * MiB)) v.img 2>/dev/null) ||
		{ echo "SKIP: no loop devices"; return; }
	on_exit "losetup -d $dev 2>/dev/null"
	if e2fsck -fn "$dev" >fsck.txt 2>&1; then pass "loop device at partition 1: e2fsck -fn clean"; else
		fail "loop e2fsck: $(tail -3 fsck.txt)"; fi
	mkdir -p "$mnt"
	if mount -o ro "$dev" "$mnt" 2>/dev/null; then
		on_exit "umount $mnt 2>/dev/null"
		cmp -s root/rand.bin "$mnt/rand.bin" && pass "ext4 partition mounts, file contents intact" ||
			fail "ext4 partition: rand.bin differs"
		umount "$mnt"
	else
		echo "SKIP: mount not permitted"
	fi
	losetup -d "$dev"
	dev=$(losetup -f --show -r -o $(($(start 5) * 512)) --sizelimit $((8 * MiB)) v.img 2>/dev/null) || return
	on_exit "losetup -d $dev 2>/dev/null"
	if command -v fsck.vfat >/dev/null; then
		fsck.vfat -n "$dev" >/dev/null 2>&1 && pass "FAT partition (from a VDI input): fsck.vfat -n clean" ||
			fail "FAT partition: fsck.vfat -n found problems"
	fi
	losetup -d "$dev"
}
loop_check

# ---- errors: message, exit 1, nothing left behind (outputs go to e/) ----
mkdir e
nothing_left() {
	local left
	left=$(ls -A e)
	if [ -z "$left" ]; then pass "$1: nothing left behind"; else fail "$1: left $left"; rm -rf e/* e/.??*; fi
}
refuse() {
	local what=$1 msg=$2; shift 2
	assert_rc "$what: exit 1" 1 "$VDISK" create "$@"
	assert_contains "$what: says why" "$msg" "$T/.err"
	nothing_left "$what"
}
printf 'label: dos\n,4MiB,L,file=ext4.img\n' >big
refuse "file larger than its partition" "do not fit partition 1" -O vmdk -o subformat=streamOptimized --script big e/out.vmdk 64M
refuse "--part larger than its partition" "do not fit partition 6" -O vdi --script script --part 6=ext4.img e/out.vdi 64M
printf 'label: dos\nstart=2048, size=8192, type=83\nstart=4096, size=8192, type=83\n' >overlap
refuse "overlapping partitions" "inside partition 1" -O raw --script overlap e/out.img 64M
refuse "unknown format option" "bogus" -O vmdk -o bogus=1 --script script e/out.vmdk 64M
printf 'label: dos\n,8MiB,L,file=missing.img\n' >missing
refuse "missing input" "missing.img" -O vdi --script missing e/out.vdi 64M
mkdir dir.img
printf 'label: dos\n,8MiB,L,file=dir.img\n' >dirin
refuse "a directory as input" "dir.img" -O vmdk -o subformat=twoGbMaxExtentFlat --script dirin e/out.vmdk 64M
refuse "partition number not in the table" "partition 3 is not in the table" -O raw --script script --part 3=small.raw e/out.img 64M
refuse "content for the extended partition" "extended partition" -O raw --script script --part 2=small.raw e/out.img 64M
refuse "two contents for one partition" "two contents" -O raw --script script --part 1=small.raw e/out.img 64M
printf 'label: dos\n,,L\n' >noid2
refuse "no SIZE, no sizes" "no size and no file" -O raw --script noid2 e/out.img
refuse "--uuid for raw" "no image UUID" -O raw --script script --uuid 6f1c1f4e-1b1a-4b5e-9c1e-0e7f3c2a9d10 e/out.img 64M
touch e/out.vdi
refuse_existing() {
	assert_rc "existing output without --force: exit 1" 1 "$VDISK" create -O vdi --script script e/out.vdi 64M
	assert_eq "existing output is untouched" 0 "$(stat -c %s e/out.vdi)"
	rm -f e/out.vdi
	nothing_left "existing output"
}
refuse_existing
"$VDISK" create -O vdi e/out.vdi 1M && "$VDISK" info e/out.vdi >/dev/null &&
	pass "plain create (no script) still works" || fail "plain create broke"
rm -f e/out.vdi

finish
