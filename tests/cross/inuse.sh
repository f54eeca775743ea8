#!/usr/bin/env bash
# The in-use guard, for every command that changes an image or a device:
# each writer (zerofree, check -r, mbr, compact, defrag, convert -n, convert
# onto a device) against each condition (a loop device at an offset with
# its filesystem mounted, a loop device attached, an active swap file,
# another vdisk holding the image, qemu-io holding it, a VMDK whose flat
# extent is loop-mounted, a device another process has open, a device
# holding a filesystem, a loop device backed by the source), checking the
# refusal message and that the image is byte-identical afterwards.  And the
# other way round: while vdisk changes an image, qemu-img and other vdisk
# processes are kept out.  Needs root, losetup and mount for most of it.
. "$(dirname "$0")/../lib.sh"
need qemu-img qemu-io mkfs.ext4 losetup sha256sum strace
[ "$(id -u)" -eq 0 ] || skip "needs root (loop devices, mount, swapon)"

sum() { sha256sum "$@" | awk '{print $1}' | tr '\n' ' '; }
LOOPS=()
MNT=$T/mnt
mkdir -p "$MNT"
on_exit 'umount "$MNT" 2>/dev/null; for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null; done; swapoff "$T/swap.img" 2>/dev/null'
loop() { # loop FILE [losetup options]: attach, print the device
	local f=$1 dev; shift
	dev=$(losetup -f --show "$@" "$f") || return 1
	LOOPS+=("$dev")
	echo "$dev"
}
unloop() { losetup -d "$1"; }

# A 48 MiB disk: one MBR partition at 1 MiB holding ext4 with a file.
truncate -s 48M "$T/d.raw"
printf 'label: dos\nstart=2048, type=83\n' | sfdisk -q "$T/d.raw"
truncate -s 47M "$T/p.ext4"
mkfs.ext4 -q -F "$T/p.ext4"
dd if="$T/p.ext4" of="$T/d.raw" bs=1M seek=1 conv=notrunc,sparse status=none
"$VDISK" convert -q -O vdi "$T/d.raw" "$T/d.vdi"
"$VDISK" convert -q -O vmdk -o subformat=monolithicFlat "$T/d.raw" "$T/f.vmdk"
FLAT=$(ls "$T"/f-flat.vmdk)
echo 'type=83' >"$T/mbr.txt"
cp "$T/d.raw" "$T/src0.raw"

# writers NAME IMAGE: run every writer on IMAGE, each must be refused with
# a message containing NEEDLE and leave every file of it unchanged.
writers() {
	local what=$1 img=$2 needle=$3; shift 3
	local files=("$img" "$@") before after
	before=$(sum "${files[@]}")
	assert_rc "$what: zerofree refused" 1 "$VDISK" zerofree "$img"
	assert_contains "$what: zerofree says why" "$needle" "$T/.err"
	assert_rc "$what: zerofree --force refused too" 1 "$VDISK" zerofree --force "$img"
	assert_contains "$what: zerofree --force says why" "$needle" "$T/.err"
	assert_rc "$what: check -r refused" 1 "$VDISK" check -r "$img"
	assert_contains "$what: check -r says why" "$needle" "$T/.err"
	assert_rc "$what: mbr refused" 1 "$VDISK" mbr --script "$T/mbr.txt" "$img"
	assert_contains "$what: mbr says why" "$needle" "$T/.err"
	assert_rc "$what: compact refused" 1 "$VDISK" compact "$img"
	assert_contains "$what: compact says why" "$needle" "$T/.err"
	assert_rc "$what: defrag refused" 1 "$VDISK" defrag "$img"
	assert_contains "$what: defrag says why" "$needle" "$T/.err"
	assert_rc "$what: convert -n refused" 1 "$VDISK" convert -n -O "${FMT:-raw}" "$T/src0.raw" "$img"
	assert_contains "$what: convert -n says why" "$needle" "$T/.err"
	after=$(sum "${files[@]}")
	assert_eq "$what: every file unchanged" "$before" "$after"
	ls -a "$T" | grep -q 'vdisk-tmp' && fail "$what: a temporary file was left" || true
}

# ---------------------------------------------------------------- loops
if L=$(loop "$T/d.raw" -o 1048576 --sizelimit $((47 << 20))) && mount "$L" "$MNT" 2>/dev/null; then
	echo data >"$MNT/file"
	sync
	writers "raw, partition loop-mounted at an offset" "$T/d.raw" "is mounted on $MNT"
	assert_contains "raw, loop-mounted: names the loop device" "$L (a loop device backed by it)" "$T/.err"
	umount "$MNT"
	writers "raw, loop attached, not mounted" "$T/d.raw" "it backs loop device $L"
	unloop "$L"
	# defect 2: a VMDK whose flat extent is loop-mounted (the guard used
	# to look at the descriptor only, and zerofree --force zeroed live
	# filesystem blocks)
	L=$(loop "$FLAT" -o 1048576 --sizelimit $((47 << 20)))
	mount "$L" "$MNT"
	FMT=vmdk writers "VMDK, flat extent loop-mounted" "$T/f.vmdk" "$FLAT: in use: $L (a loop device backed by it) is mounted on $MNT" "$FLAT"
	umount "$MNT"
	unloop "$L"
	assert_rc "nothing in use any more: zerofree works" 0 "$VDISK" zerofree -q "$T/f.vmdk"
	assert_rc "nothing in use any more: check -r works" 0 "$VDISK" check -r "$T/d.raw"
else
	echo "SKIP: loop devices or mount not available"
fi

# ---------------------------------------------------------------- swap
dd if=/dev/zero of="$T/swap.img" bs=1M count=16 status=none
chmod 600 "$T/swap.img"
mkswap -q "$T/swap.img" >/dev/null 2>&1 || mkswap "$T/swap.img" >/dev/null
if swapon "$T/swap.img" 2>/dev/null; then
	writers "active swap file" "$T/swap.img" "it is an active swap file"
	swapoff "$T/swap.img"
	assert_rc "swap off: zerofree works" 0 "$VDISK" zerofree -q "$T/swap.img"
else
	echo "SKIP: swapon not available"
fi

# ---------------------------------------------------------------- another vdisk
# flock(1) takes the lock a vdisk writer holds
exec 8<"$T/d.vdi"
flock -n 8
FMT=vdi writers "locked by another vdisk" "$T/d.vdi" "in use by another vdisk process"
assert_rc "a reader is kept out while a writer holds it" 1 "$VDISK" info "$T/d.vdi"
assert_contains "the reader says why" "being changed by another vdisk process" "$T/.err"
exec 8<&-
# the lock goes with the last descriptor of it: wait until /proc/locks
# shows none on the image (a child of this shell may still be exiting)
ino=$(stat -c %i "$T/d.vdi")
for _ in $(seq 100); do grep -q "FLOCK.*:$ino " /proc/locks || break; sleep 0.05; done
grep "FLOCK.*:$ino " /proc/locks && fail "the flock on the image outlived its descriptor"
# a real vdisk writer, held inside its flush by strace (defect 1: zerofree
# and check -r on one image at the same time corrupted it)
# (LeakSanitizer cannot run under ptrace: off for the traced run)
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
strace -f -o /dev/null -e trace=fsync,fdatasync -e inject=fsync,fdatasync:delay_enter=8000000 \
	"$VDISK" mbr --script "$T/mbr.txt" "$T/d.vdi" >"$T/mbr.out" 2>&1 &
spid=$!
for _ in $(seq 100); do grep -q "FLOCK.*:$ino " /proc/locks && grep -q "OFDLCK.*:$ino " /proc/locks && break; sleep 0.1; done
assert_rc "qemu-img sees vdisk's lock" 1 qemu-img info "$T/d.vdi"
assert_contains "qemu-img says it is locked" "lock" "$T/.err"
assert_rc "zerofree while mbr runs: refused" 1 "$VDISK" zerofree "$T/d.vdi"
assert_contains "zerofree while mbr runs: says so" "in use by another vdisk process (PID" "$T/.err"
assert_rc "check -r while mbr runs: refused" 1 "$VDISK" check -r "$T/d.vdi"
assert_contains "check -r while mbr runs: says so" "in use by another vdisk process" "$T/.err"
wait "$spid"
rc=$?
assert_eq "the mbr run itself succeeded" 0 "$rc"
[ "$rc" = 0 ] || cat "$T/mbr.out"
assert_rc "after it: vdisk check clean" 0 "$VDISK" check "$T/d.vdi"
assert_rc "after it: qemu-img check clean" 0 qemu-img check -f vdi "$T/d.vdi"

# ---------------------------------------------------------------- QEMU
(sleep 6 | qemu-io -f vdi "$T/d.vdi" >/dev/null 2>&1) &
qpid=$!
for _ in $(seq 50); do grep -q "OFDLCK.*:$ino " /proc/locks && break; sleep 0.1; done
FMT=vdi writers "held by qemu-io" "$T/d.vdi" "in use by QEMU"
kill "$qpid" 2>/dev/null; pkill -f "qemu-io -f vdi $T/d.vdi" 2>/dev/null; wait "$qpid" 2>/dev/null

# ---------------------------------------------------------------- devices
truncate -s 64M "$T/dev.img"
if D=$(loop "$T/dev.img"); then
	exec 7<"$D"
	before=$(sum "$T/dev.img")
	assert_rc "device open by another process: refused" 1 "$VDISK" convert -O raw "$T/d.raw" "$D"
	assert_contains "device open: names the process" "process $$ (bash) has $D open" "$T/.err"
	assert_eq "device open: unchanged" "$before" "$(sum "$T/dev.img")"
	assert_rc "device open: --force writes anyway" 0 "$VDISK" convert --force -O raw "$T/d.raw" "$D"
	assert_contains "device open: --force warns, naming the process" "warning: $D: process $$ (bash) has $D open" "$T/.err"
	exec 7<&-
	# the copy put a partition table on it: a second copy is refused
	before=$(sum "$T/dev.img")
	assert_rc "device with a partition table: refused" 1 "$VDISK" convert -O raw "$T/d.raw" "$D"
	assert_contains "device with a signature: says what" "holds a dos partition table; --force overwrites it" "$T/.err"
	assert_eq "device with a partition table: unchanged" "$before" "$(sum "$T/dev.img")"
	mkfs.ext4 -q -F "$D"
	before=$(sum "$T/dev.img")
	assert_rc "device with ext4: refused" 1 "$VDISK" convert -O raw "$T/d.raw" "$D"
	assert_contains "device with ext4: says so" "holds a ext4 signature" "$T/.err"
	assert_eq "device with ext4: unchanged" "$before" "$(sum "$T/dev.img")"
	if mount "$D" "$MNT" 2>/dev/null; then
		assert_rc "device mounted: refused" 1 "$VDISK" convert --force -O raw "$T/d.raw" "$D"
		assert_contains "device mounted: --force does not override" "is mounted on $MNT" "$T/.err"
		umount "$MNT"
	fi
	unloop "$D"
	# a loop device backed by the source itself: always refused
	cp "$T/d.raw" "$T/src.raw"
	S=$(loop "$T/src.raw")
	before=$(sum "$T/src.raw")
	assert_rc "loop device backed by the source: refused" 1 "$VDISK" convert --force -O raw "$T/src.raw" "$S"
	assert_contains "loop on the source: says so" "a loop device backed by $T/src.raw, which this command has open" "$T/.err"
	assert_eq "loop on the source: unchanged" "$before" "$(sum "$T/src.raw")"
	unloop "$S"
fi

# ---------------------------------------------------------------- one file, two names
# flock is per inode: a hard link is the same image
ln "$T/d.vdi" "$T/link.vdi"
exec 8<"$T/link.vdi"
flock -n 8
assert_rc "hard link locked: zerofree through the other name refused" 1 "$VDISK" zerofree "$T/d.vdi"
assert_contains "hard link: says so" "in use by another vdisk process" "$T/.err"
exec 8<&-
assert_rc "convert -n onto its own source: refused" 1 "$VDISK" convert -n -O vdi "$T/d.vdi" "$T/link.vdi"
assert_contains "convert -n onto its source: says so" "the same file is already open in this command" "$T/.err"

# ---------------------------------------------------------------- FIFOs (defect 4)
mkfifo "$T/fifo"
printf '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 2048 FLAT "fifo" 0\n' >"$T/fifo.vmdk"
assert_rc "extent that is a FIFO: info fails at once" 1 timeout 10 "$VDISK" info "$T/fifo.vmdk"
assert_contains "extent that is a FIFO: says so" "extent file \"fifo\" is not a regular file" "$T/.err"
assert_rc "extent that is a FIFO: check fails at once" 1 timeout 10 "$VDISK" check "$T/fifo.vmdk"
assert_rc "a FIFO as the image: info fails at once" 1 timeout 10 "$VDISK" info "$T/fifo"
assert_contains "a FIFO as the image: says so" "not a regular file or block device" "$T/.err"
finish
