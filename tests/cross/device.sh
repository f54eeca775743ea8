#!/usr/bin/env bash
# vdisk convert onto block devices (loop devices), checked with qemu-img:
#  - a device full of random garbage, then a sparse VDI and a sparse VMDK
#    converted onto it (plain, --direct, --verify, --direct --verify): the
#    first image-size bytes equal `qemu-img convert -O raw` of the source (no
#    stale data anywhere) and the rest of the device is unchanged; the summary
#    says what was written, zeroed and kept;
#  - --target-is-zero really skips the zero ranges (the garbage stays there);
#  - a device that is too small, mounted, or held with O_EXCL by another
#    process is refused and stays byte for byte unchanged;
#  - SIGTERM / SIGINT during a copy: exit 143 / 130 and the partial-write
#    message;
#  - a block device as SRC (no --allow-devices), output kept sparse;
#  - --lv with stand-in lvs/vgs/lvcreate on PATH: created with the size
#    rounded up to the extent size, reused when it exists, lvcreate's output
#    shown on failure; --rawvmdk and --owner after a copy.
. "$(dirname "$0")/../lib.sh"
need losetup qemu-img openssl
[ "$(id -u)" = 0 ] || skip "needs root for loop devices"
MiB=$((1 << 20))
sha1_of() { openssl dgst -sha1 -r "$1" | cut -d' ' -f1; }

LOOPS=()
mkloop() { # FILE -> device name on stdout
	local d
	d=$(losetup -f --show "$1" 2>/dev/null) || return 1
	echo "$d"
}
detach_all() { local d; for d in $(cat "$T/loops" 2>/dev/null); do losetup -d "$d" 2>/dev/null; done; }
on_exit detach_all
loop() { # FILE -> sets DEV
	DEV=$(mkloop "$1") || skip "no loop devices here"
	echo "$DEV" >>"$T/loops"
}

# ---- sources: sparse raw -> VDI and VMDK, reference raw from qemu-img
IMGSIZE=$((40 * MiB))
truncate -s $IMGSIZE "$T/src.raw"
rand_bytes a $((3 * MiB)) | dd of="$T/src.raw" bs=1M seek=2 conv=notrunc status=none
rand_bytes b 4096 | dd of="$T/src.raw" bs=4096 seek=$((20 * 256 + 3)) conv=notrunc status=none
rand_bytes c $((5 * MiB)) | dd of="$T/src.raw" bs=1M seek=33 conv=notrunc status=none
"$VDISK" convert -q -O vdi "$T/src.raw" "$T/src.vdi" || fail "make src.vdi"
"$VDISK" convert -q -O vmdk "$T/src.raw" "$T/src.vmdk" || fail "make src.vmdk"
for s in vdi vmdk; do qemu-img convert -O raw "$T/src.$s" "$T/ref-$s.raw"; done
cmp -s "$T/ref-vdi.raw" "$T/src.raw" && pass "qemu-img reads src.vdi as src.raw" || fail "qemu-img src.vdi"

# ---- the target: 64 MiB of garbage
DEVSIZE=$((64 * MiB))
rand_bytes garbage $DEVSIZE >"$T/garbage.bin"
cp "$T/garbage.bin" "$T/dev.img"
loop "$T/dev.img"
D=$DEV
refill() { dd if="$T/garbage.bin" of="$D" bs=4M oflag=direct status=none && sync; }

tail_unchanged() { # WHAT
	cmp -s <(dd if="$D" bs=1M skip=$((IMGSIZE / MiB)) iflag=direct status=none) \
		<(tail -c +$((IMGSIZE + 1)) "$T/garbage.bin") &&
		pass "$1: the device past the image is unchanged" || fail "$1: the tail of the device changed"
}
for s in vdi vmdk; do
	for opts in "" "--direct" "--verify" "--direct --verify"; do
		what="$s onto garbage${opts:+ ($opts)}"
		refill
		assert_rc "$what" 0 "$VDISK" convert -q $opts "$T/src.$s" "$D"
		cp "$T/.out" "$T/summary"
		cmp -s -n $IMGSIZE <(dd if="$D" bs=1M iflag=direct status=none) "$T/ref-$s.raw" &&
			pass "$what: device = qemu-img convert -O raw" || fail "$what: device differs from qemu-img's raw"
		tail_unchanged "$what"
		assert_contains "$what: summary: data written" "written:  8 MiB (8392704 bytes)" "$T/summary"
		assert_contains "$what: summary: zeroed" "zeroed:   32 MiB (33550336 bytes)" "$T/summary"
		assert_contains "$what: summary: tail kept" "the last 24 MiB (25165824 bytes) of the device" "$T/summary"
		assert_contains "$what: summary: time and rate" "/s (data" "$T/summary"
		case $opts in *--verify*) assert_contains "$what: verified" "verified: the device holds the image" "$T/summary" ;; esac
	done
done
grep "time:" "$T/summary" | sed 's/^ */note: rate (last case): /'

# --target-is-zero trusts the user: zero ranges are not touched
refill
assert_rc "--target-is-zero" 0 "$VDISK" convert -q --target-is-zero "$T/src.vdi" "$D"
cmp -s <(dd if="$D" bs=1M count=2 iflag=direct status=none) <(head -c $((2 * MiB)) "$T/garbage.bin") &&
	pass "--target-is-zero: zero ranges left as they were" || fail "--target-is-zero: zero ranges were written"
cmp -s <(dd if="$D" bs=1M skip=2 count=3 iflag=direct status=none) <(head -c $((5 * MiB)) "$T/src.raw" | tail -c $((3 * MiB))) &&
	pass "--target-is-zero: data written" || fail "--target-is-zero: data missing"
assert_contains "--target-is-zero: nothing zeroed" "zeroed:   0 B" "$T/.out"

# --verify detects a difference: not testable without a faulty device; a
# device exactly the size of the image keeps no tail
truncate -s $IMGSIZE "$T/exact.img"
loop "$T/exact.img"
E=$DEV
assert_rc "device of exactly the image size" 0 "$VDISK" convert -q --verify "$T/src.vmdk" "$E"
grep -q "kept:" "$T/.out" && fail "exact device: summary mentions a kept tail" || pass "exact device: no kept tail"

# ---- a block device as the source, without --allow-devices
assert_rc "device as SRC" 0 "$VDISK" convert -q -O vdi "$E" "$T/back.vdi"
assert_rc "device as SRC: contents" 0 qemu-img compare "$T/back.vdi" "$T/src.raw"
alloc=$("$VDISK" info --output=json "$T/back.vdi" | sed -n 's/.*"allocated-bytes": *\([0-9]*\).*/\1/p')
alloc=${alloc:-$("$VDISK" info "$T/back.vdi" | sed -n 's/^allocated: .*(\([0-9]*\) bytes)/\1/p')}
[ -n "$alloc" ] && [ "$alloc" -le $((10 * MiB)) ] && pass "device as SRC: output stays sparse ($alloc bytes)" ||
	fail "device as SRC: allocated '$alloc'"

# ---- refusals leave the device unchanged
refused() { # WHAT NEEDLE DEVICE-FILE CMD...
	local what=$1 needle=$2 dev=$3 before rc=0; shift 3
	before=$(sha1_of "$dev")
	"$@" >"$T/.out" 2>"$T/.err" || rc=$?
	[ "$rc" != 0 ] && pass "$what: refused (exit $rc)" || fail "$what: exit 0"
	assert_contains "$what: message" "$needle" "$T/.err"
	assert_eq "$what: device unchanged" "$before" "$(sha1_of "$dev")"
}
rand_bytes small $((16 * MiB)) >"$T/small.img"
loop "$T/small.img"
refused "too small" "is smaller (16777216 bytes) than the image" "$DEV" "$VDISK" convert "$T/src.vdi" "$DEV"
assert_contains "too small: nothing was written" "nothing was written" "$T/.err"

# held with O_EXCL by another process
if command -v python3 >/dev/null; then
	python3 -c 'import os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_EXCL)
open(sys.argv[2], "w").close()
time.sleep(30)' "$D" "$T/held" &
	holder=$!
	on_exit "kill $holder 2>/dev/null"
	for ((i = 0; i < 500; i++)); do [ -e "$T/held" ] && break; sleep 0.01; done
	refused "held O_EXCL by another process" "in use: process $holder (python3) has $D open" "$D" "$VDISK" convert "$T/src.vdi" "$D"
	# --force passes the guard's "open by another process", not O_EXCL
	refused "held O_EXCL, --force" "device is in use (mounted, or held open exclusively" "$D" "$VDISK" convert --force "$T/src.vdi" "$D"
	kill $holder 2>/dev/null; wait $holder 2>/dev/null
else
	echo "note: python3 missing: O_EXCL holder case skipped"
fi

# mounted
if command -v mkfs.ext4 >/dev/null && mkdir "$T/mnt" && mkfs.ext4 -q -F "$D" >/dev/null 2>&1 &&
	mount -o ro,noload "$D" "$T/mnt" 2>/dev/null; then
	on_exit "umount '$T/mnt' 2>/dev/null"
	refused "mounted" "in use: $D is mounted on $T/mnt; nothing was written" "$D" "$VDISK" convert "$T/src.vdi" "$D"
	refused "mounted, --force" "is mounted on $T/mnt" "$D" "$VDISK" convert --force "$T/src.vdi" "$D"
	umount "$T/mnt"
else
	echo "note: cannot mount an ext4 loop device here: mounted case skipped"
fi

# not a device / no such device / options that need a device
assert_rc "--direct with a file DST is refused" 1 "$VDISK" convert --direct -O raw "$T/src.vdi" "$T/f.raw"
assert_rc "-O vdi onto a device is refused" 1 "$VDISK" convert -O vdi "$T/src.vdi" "$D"
assert_contains "-O vdi onto a device: message" "raw disk" "$T/.err"

# ---- interrupted copies
if [ -d /dev/shm ] && [ -w /dev/shm ]; then S=$(mktemp -d /dev/shm/vdisk-dev.XXXXXX); on_exit "rm -rf '$S'"; else S=$T; fi
BIG=$((512 * MiB))
rand_bytes big $BIG >"$S/big.raw"
truncate -s $BIG "$T/big.img"
loop "$T/big.img"
B=$DEV
interrupt() { # SIG WANT-RC
	local sig=$1 want=$2 pid rc=0 i
	"$VDISK" convert -p --direct "$S/big.raw" "$B" >"$T/$sig.out" 2>"$T/$sig.err" &
	pid=$!
	for ((i = 0; i < 2000; i++)); do
		grep -q '%' "$T/$sig.err" 2>/dev/null && break
		kill -0 $pid 2>/dev/null || break
		sleep 0.01
	done
	kill -"$sig" $pid 2>/dev/null
	wait $pid || rc=$?
	if [ "$rc" = 0 ]; then echo "note: SIG$sig arrived after the copy finished"; return; fi
	assert_eq "SIG$sig: exit status" "$want" "$rc"
	assert_contains "SIG$sig: interrupted" "interrupted" "$T/$sig.err"
	assert_contains "SIG$sig: partly written" "$B is partly written" "$T/$sig.err"
	reached=$(sed -n 's/.*first .* (\([0-9]*\) bytes) of.*/\1/p' "$T/$sig.err")
	[ -n "$reached" ] && [ "$reached" -lt $BIG ] && cmp -s -n "$reached" "$S/big.raw" "$B" &&
		pass "SIG$sig: the first $reached bytes the message names are on the device" ||
		fail "SIG$sig: reported '$reached' bytes are not on the device"
}
interrupt TERM 143
interrupt INT 130
rm -f "$S/big.raw"

# ---- --lv with stand-in LVM tools, then --rawvmdk and --owner
BIN=$T/bin
mkdir "$BIN"
export LVSTATE=$T/lvstate LVLOOPS=$T/loops LVBACK=$T
mkdir "$LVSTATE"
cat >"$BIN/lvs" <<'EOF'
#!/bin/bash
# lvs --noheadings -o lv_path VG/NAME
n=${@: -1}
f=$LVSTATE/${n//\//_}
[ -e "$f" ] || { echo "  Failed to find logical volume \"$n\"" >&2; exit 5; }
echo "  $(cat "$f")"
EOF
cat >"$BIN/vgs" <<'EOF'
#!/bin/bash
# vgs --noheadings --units b --nosuffix -o vg_extent_size VG
[ "${@: -1}" = nosuchvg ] && { echo "  Volume group \"nosuchvg\" not found" >&2; exit 5; }
echo "  4194304"
EOF
cat >"$BIN/lvcreate" <<'EOF'
#!/bin/bash
# lvcreate -y -n NAME -L SIZEk VG
echo "$*" >>"$LVSTATE/lvcreate.log"
[ "$6" = fullvg ] && { echo "  Volume group \"fullvg\" has insufficient free space (2 extents): 10 required." >&2; exit 5; }
kib=${5%k}
truncate -s $((kib * 1024)) "$LVBACK/lv-$3.img"
d=$(losetup -f --show "$LVBACK/lv-$3.img") || exit 5
echo "$d" >>"$LVLOOPS"
echo "$d" >"$LVSTATE/${6}_$3"
echo "  Logical volume \"$3\" created."
EOF
chmod +x "$BIN"/*
# an image of 41 MiB: 11 extents of 4 MiB = 44 MiB
truncate -s $((41 * MiB)) "$T/src41.raw"
rand_bytes lv $MiB | dd of="$T/src41.raw" bs=1M seek=40 conv=notrunc status=none
assert_rc "--lv creates the LV" 0 env PATH="$BIN:$PATH" "$VDISK" convert -q --lv vg0/vm1 \
	--rawvmdk "$T/vm1.vmdk" --owner alice "$T/src41.raw"
cp "$T/.out" "$T/lv.out"
assert_eq "lvcreate arguments (size rounded up to 4 MiB extents)" "-y -n vm1 -L 45056k vg0" "$(cat "$LVSTATE/lvcreate.log")"
assert_contains "--lv: says it created the LV" "created logical volume vg0/vm1" "$T/lv.out"
LV=$(cat "$LVSTATE/vg0_vm1")
assert_eq "the LV has the rounded size" $((44 * MiB)) "$(blockdev --getsize64 "$LV")"
cmp -s -n $((41 * MiB)) "$T/src41.raw" "$LV" && pass "--lv: the image is on the LV" || fail "--lv: contents"
assert_contains "--rawvmdk: written" "wrote $T/vm1.vmdk" "$T/lv.out"
assert_rc "--rawvmdk: fullDevice descriptor equals the LV" 0 "$VDISK" compare --allow-devices "$T/vm1.vmdk" "$LV"
assert_contains "--rawvmdk: FLAT extent on the LV" "RW 90112 FLAT \"$LV\" 0" "$T/vm1.vmdk"
assert_contains "--owner: udev rule" "OWNER=\"alice\", GROUP=\"alice\", MODE=\"0660\"" "$T/lv.out"
assert_contains "--owner: chown" "chown alice:alice $LV" "$T/lv.out"
assert_rc "--lv: an existing LV is reused" 0 env PATH="$BIN:$PATH" "$VDISK" convert -q --lv vg0/vm1 "$T/src.vdi"
assert_eq "--lv: lvcreate not run again" 1 "$(wc -l <"$LVSTATE/lvcreate.log")"
assert_rc "--lv: lvcreate failure" 1 env PATH="$BIN:$PATH" "$VDISK" convert -q --lv fullvg/vm2 "$T/src.vdi"
assert_contains "--lv: lvcreate's output is shown" "insufficient free space" "$T/.err"
assert_rc "--lv: unknown VG" 1 env PATH="$BIN:$PATH" "$VDISK" convert -q --lv nosuchvg/vm3 "$T/src.vdi"
assert_contains "--lv: vgs's output is shown" "not found" "$T/.err"
assert_rc "--lv: bad name" 1 env PATH="$BIN:$PATH" "$VDISK" convert -q --lv 'vg0/../x' "$T/src.vdi"

finish
