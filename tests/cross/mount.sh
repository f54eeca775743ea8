#!/usr/bin/env bash
# vdisk mount (FUSE) against independent tools:
#   raw, VDI, VMDK of an MBR disk with ext4: DIR/disk == qemu-img convert
#     -O raw, DIR/partN sizes == sfdisk's, e2fsck -fn DIR/part1 clean,
#     SEEK_DATA/SEEK_HOLE (xfs_io seek) == vdisk map's data ranges; a GPT disk
#   --rw VDI: mkfs + a file through losetup + mount on DIR/part2, unmount,
#     then qemu-img check, the partition cut out of qemu-img's raw passes
#     e2fsck and holds the file; fallocate --punch-hole reads zeros and
#     leaves the block unallocated; a second --rw mount and zerofree are
#     refused while mounted; --foreground + SIGTERM flushes and unmounts;
#     the image is free again as soon as vdisk umount returns
. "$(dirname "$0")/../lib.sh"
need qemu-img jq sfdisk mkfs.ext4 e2fsck debugfs xfs_io fusermount3 cmp
[ -c /dev/fuse ] || skip "no /dev/fuse"
MiB=$((1 << 20))

mounted=()
on_exit 'for d in "${mounted[@]}"; do fusermount3 -u "$d" 2>/dev/null; done'
mnt() { # IMAGE DIR [OPTS...]: mount, remember for the trap
	local img=$1 dir=$2; shift 2
	mkdir -p "$dir"
	"$VDISK" mount "$@" "$img" "$dir" || return 1
	mounted+=("$dir")
}
# data ranges "START END" merged: of vdisk map, of lseek on a file
map_data() {
	"$VDISK" map --output=json "$1" | jq -r '.[] | select(.data and (.zero | not)) | "\(.start) \(.start + .length)"' |
		awk 'NR > 1 && $1 == e {e = $2; next} NR > 1 {print s, e} {s = $1; e = $2} END {if (NR) print s, e}'
}
seek_data() {
	xfs_io -r -c "seek -a -r 0" "$1" | awk -v size="$(stat -c %s "$1")" '
		$1 == "DATA" {s = $2; d = 1} $1 == "HOLE" && d {print s, $2; d = 0}
		END {if (d) print s, size}'
}

# ---- an MBR disk: ext4 in part1 with a file, random data in part2
truncate -s 64M "$T/a.raw"
printf 'label: dos\n1MiB,20MiB,L\n,,L\n' | sfdisk -q "$T/a.raw"
mkfs.ext4 -q -F -E offset=$MiB "$T/a.raw" 20M
echo "inside part1" >"$T/f1"
debugfs -w -R "write $T/f1 f1" "$T/a.raw?offset=$MiB" >/dev/null 2>&1 ||
	{ e2cp=no; }
rand_bytes mnt 3145728 | dd of="$T/a.raw" bs=64K seek=$((40 * MiB)) oflag=seek_bytes conv=notrunc status=none

# a dry mount: FUSE may be unusable (container without privileges)
mkdir -p "$T/probe"
if ! "$VDISK" mount "$T/a.raw" "$T/probe" 2>"$T/probe.err"; then
	skip "cannot mount FUSE here: $(head -c 200 "$T/probe.err")"
fi
"$VDISK" umount "$T/probe"

qemu-img convert -O vdi "$T/a.raw" "$T/a.vdi"
qemu-img convert -O vmdk -o subformat=monolithicSparse "$T/a.raw" "$T/a.vmdk"
sizes=$(sfdisk --json "$T/a.raw" | jq -r '.partitiontable.partitions[].size * 512' | tr '\n' ' ')
for img in a.raw a.vdi a.vmdk; do
	d=$T/m-$img
	mnt "$T/$img" "$d" || { fail "$img: mount"; continue; }
	qemu-img convert -O raw "$T/$img" "$T/q.raw"
	if cmp -s "$d/disk" "$T/q.raw"; then pass "$img: DIR/disk == qemu-img convert -O raw"
	else fail "$img: DIR/disk differs from qemu-img's raw"; fi
	assert_eq "$img: files" "disk part1 part2" "$(ls "$d" | tr '\n' ' ' | sed 's/ $//')"
	assert_eq "$img: partition sizes == sfdisk" "$sizes" "$(stat -c %s "$d/part1" "$d/part2" | tr '\n' ' ')"
	cmp -s "$d/part2" <(tail -c +$((21 * MiB + 1)) "$T/q.raw") && pass "$img: part2 bytes" || fail "$img: part2 bytes"
	assert_rc "$img: e2fsck -fn DIR/part1" 0 e2fsck -fn "$d/part1"
	if [ "${e2cp:-}" != no ]; then
		assert_eq "$img: the file in part1" "inside part1" "$(debugfs -R 'cat f1' "$d/part1" 2>/dev/null)"
	fi
	assert_eq "$img: SEEK_DATA/SEEK_HOLE == vdisk map data ranges" "$(map_data "$T/$img")" "$(seek_data "$d/disk")"
	[ "$img" = a.raw ] || [ "$(stat -c %b "$d/disk")" -lt $((64 * MiB / 512)) ] &&
		pass "$img: st_blocks below the size" || fail "$img: st_blocks $(stat -c %b "$d/disk") not below the size"
	assert_rc "$img: read-only: writing fails" 1 dd if=/dev/zero of="$d/disk" bs=512 count=1 conv=notrunc status=none
	assert_rc "$img: vdisk umount" 0 "$VDISK" umount "$d"
	assert_eq "$img: unmounted" "" "$(grep -F " $d " /proc/mounts)"
done

# ---- a GPT disk
truncate -s 40M "$T/g.raw"
printf 'label: gpt\n1MiB,16MiB,L\n,,L\n' | sfdisk -q "$T/g.raw"
mkfs.ext4 -q -F -E offset=$MiB "$T/g.raw" 16M
qemu-img convert -O vdi "$T/g.raw" "$T/g.vdi"
if mnt "$T/g.vdi" "$T/m-g"; then
	assert_eq "gpt: files" "disk part1 part2" "$(ls "$T/m-g" | tr '\n' ' ' | sed 's/ $//')"
	assert_rc "gpt: e2fsck -fn DIR/part1" 0 e2fsck -fn "$T/m-g/part1"
	"$VDISK" umount "$T/m-g"
else fail "gpt: mount"; fi

# ---- --rw: mkfs + a file through a loop device, then check with qemu-img
cp "$T/a.vdi" "$T/w.vdi"
d=$T/m-w
if mnt "$T/w.vdi" "$d" --rw; then
	mkdir -p "$T/m-w2"
	assert_rc "a second --rw mount is refused" 1 "$VDISK" mount --rw "$T/w.vdi" "$T/m-w2"
	assert_contains "the refusal says in use" "in use" "$T/.err"
	assert_rc "zerofree is refused while mounted --rw" 1 "$VDISK" zerofree "$T/w.vdi"
	# punch a hole into the random data: zeros, and the VDI block (1 MiB) released
	fallocate --punch-hole -o $((41 * MiB)) -l $MiB "$d/disk"
	assert_eq "punched: reads zeros" "$(head -c $MiB /dev/zero | md5sum)" \
		"$(dd if="$d/disk" bs=1M skip=41 count=1 status=none | md5sum)"
	# a loop device another process grabs meanwhile reports another size: skip that part then
	if [ "$(id -u)" = 0 ] && loop=$(losetup -f --show "$d/part2" 2>/dev/null) &&
	   [ "$(blockdev --getsize64 "$loop" 2>/dev/null)" = "$(stat -c %s "$d/part2")" ]; then
		mkfs.ext4 -q -F "$loop" && mkdir -p "$T/fs" && mount "$loop" "$T/fs" &&
			{ echo "written through FUSE" >"$T/fs/hello"; umount "$T/fs"; }
		losetup -d "$loop"
		looped=1
	fi
	assert_rc "vdisk umount (--rw)" 0 "$VDISK" umount "$d"
	assert_rc "the image is free right after vdisk umount" 0 "$VDISK" check "$T/w.vdi"
	assert_rc "qemu-img check after --rw" 0 qemu-img check "$T/w.vdi"
	qemu-img convert -O raw "$T/w.vdi" "$T/w.raw"
	map=$("$VDISK" map --output=json "$T/w.vdi" | jq -c --argjson o $((41 * MiB)) '.[] | select(.start <= $o and .start + .length > $o) | .data')
	assert_eq "punched block is not data" "false" "$map"
	if [ "${looped:-}" = 1 ]; then
		dd if="$T/w.raw" of="$T/p2" bs=1M skip=21 status=none
		assert_rc "e2fsck -fn on the partition mkfs'd through FUSE (qemu-img's raw)" 0 e2fsck -fn "$T/p2"
		assert_eq "the file written through losetup + mount" "written through FUSE" "$(debugfs -R 'cat hello' "$T/p2" 2>/dev/null)"
	else
		echo "note: losetup/mount part skipped (not root or no loop device)"
	fi
else fail "--rw mount"; fi

# ---- --foreground: SIGTERM flushes and unmounts
cp "$T/a.vdi" "$T/s.vdi"
mkdir -p "$T/m-s"
"$VDISK" mount --rw --foreground "$T/s.vdi" "$T/m-s" &
pid=$!
mounted+=("$T/m-s")
for _ in $(seq 100); do grep -qF " $T/m-s " /proc/mounts && break; sleep 0.05; done
printf 'SIGTERM-data' | dd of="$T/m-s/disk" bs=1 seek=$((50 * MiB)) conv=notrunc status=none
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
assert_eq "--foreground: exit 0 after SIGTERM" 0 "$rc"
assert_eq "--foreground: unmounted after SIGTERM" "" "$(grep -F " $T/m-s " /proc/mounts)"
assert_rc "qemu-img check after SIGTERM" 0 qemu-img check "$T/s.vdi"
qemu-img convert -O raw "$T/s.vdi" "$T/s.raw"
assert_eq "the write before SIGTERM is in the image" "SIGTERM-data" \
	"$(dd if="$T/s.raw" bs=1 skip=$((50 * MiB)) count=12 status=none)"

# ---- a 2-deep snapshot chain (a qemu-img VMDK delta): DIR/disk is the
# flattened view, and --rw writes go into the child, never the parent
qemu-img create -q -f vmdk "$T/cb.vmdk" 8M
qemu-io -c 'write -P 0xaa 0 4M' "$T/cb.vmdk" >/dev/null
qemu-img create -q -f vmdk -b cb.vmdk -F vmdk "$T/cc.vmdk"
qemu-io -c 'write -P 0xcc 1M 64k' -c 'write -z 2M 64k' "$T/cc.vmdk" >/dev/null
qemu-img convert -O raw "$T/cc.vmdk" "$T/cc.raw"
psum=$(sha256sum <"$T/cb.vmdk")
if mnt "$T/cc.vmdk" "$T/m-c" --rw; then
	cmp -s "$T/m-c/disk" "$T/cc.raw" && pass "a chain's disk reads as qemu-img flattens it" ||
		fail "the mounted chain differs from qemu-img convert"
	printf 'chain-write' | dd of="$T/m-c/disk" bs=1 seek=$((3 * MiB + 100)) conv=notrunc status=none
	"$VDISK" umount "$T/m-c"
	printf 'chain-write' | dd of="$T/cc.raw" bs=1 seek=$((3 * MiB + 100)) conv=notrunc status=none
	assert_rc "the written child passes qemu-img check" 0 qemu-img check -q "$T/cc.vmdk"
	assert_rc "the child reads as expected after the write (qemu-img compare)" 0 qemu-img compare -q "$T/cc.vmdk" "$T/cc.raw"
	[ "$(sha256sum <"$T/cb.vmdk")" = "$psum" ] && pass "the parent is untouched by writes through the mount" ||
		fail "writing through the mount changed the parent"
else
	fail "mount of a chain"
fi

# ---- the daemon killed (SIGKILL) before its Nth change to the image while
# writes come through DIR/disk: the VDI passes qemu-img check and vdisk
# check, and every 64 KiB piece written reads as before or as written
qemu-img create -q -f vdi "$T/k.vdi" 16M
qemu-io -c 'write -P 0x11 0 16M' "$T/k.vdi" >/dev/null
rand_bytes kdata $((4 * MiB)) >"$T/kdata"
qemu-img convert -O raw "$T/k.vdi" "$T/kold.raw"
bad=0 n=0 hit=0
for kill in 0 1 2 3 5 8 13 21 34; do
	cp "$T/k.vdi" "$T/kk.vdi"
	mkdir -p "$T/m-k"
	VDISK_TEST_KILL_AFTER=$kill "$VDISK" mount --rw "$T/kk.vdi" "$T/m-k" 2>/dev/null || continue
	n=$((n + 1))
	# 64 pieces of 64 KiB, every other one, written one by one
	for ((i = 0; i < 64; i += 2)); do
		dd if="$T/kdata" of="$T/m-k/disk" bs=64K skip=$i seek=$((i * 3)) count=1 conv=notrunc,fsync status=none 2>/dev/null || break
	done
	fusermount3 -u "$T/m-k" 2>/dev/null || fusermount3 -uz "$T/m-k" 2>/dev/null
	for ((j = 0; j < 100; j++)); do "$VDISK" check "$T/kk.vdi" >/dev/null 2>&1 && break; sleep 0.05; done
	[ "$i" -lt 64 ] && hit=$((hit + 1))
	qemu-img check -q "$T/kk.vdi" >/dev/null 2>&1 || { bad=1; fail "mount killed after $kill changes: qemu-img check fails"; continue; }
	"$VDISK" check "$T/kk.vdi" >/dev/null 2>&1 || { bad=1; fail "mount killed after $kill changes: vdisk check fails"; continue; }
	qemu-img convert -O raw "$T/kk.vdi" "$T/knew.raw"
	for ((i = 0; i < 64; i += 2)); do
		o=$((i * 3 * 65536))
		got=$(dd if="$T/knew.raw" bs=64K skip=$((i * 3)) count=1 status=none | sha256sum)
		[ "$got" = "$(dd if="$T/kold.raw" bs=64K skip=$((i * 3)) count=1 status=none | sha256sum)" ] ||
		[ "$got" = "$(dd if="$T/kdata" bs=64K skip=$i count=1 status=none | sha256sum)" ] ||
			{ bad=1; fail "mount killed after $kill changes: the piece at $o is neither old nor new"; break; }
	done
done
[ "$bad" = 0 ] && [ "$n" -ge 5 ] && pass "mount --rw killed at $n points: the VDI valid, each piece old or new" ||
	{ [ "$bad" = 0 ] && fail "mount --rw kill points: only $n mounts came up"; }
[ "$hit" -ge 3 ] && pass "the kills landed while writing ($hit of $n runs cut short)" ||
	fail "the kills did not interrupt the writes ($hit of $n runs cut short): the test proves little"

# ---- usage errors
assert_rc "mount without DIR" 1 "$VDISK" mount "$T/a.raw"
assert_rc "mount of a missing image" 1 "$VDISK" mount "$T/none.vdi" "$T/probe"
finish
