#!/usr/bin/env bash
# vdisk zerofree and SIGTERM during a long filesystem walk (issue 12,
# defect 6): the walkers ignored the cancel flag, so a walk that found
# nothing free ran to its end and the command exited 0.  The image: an
# ext2 (hand-built, 1 KiB blocks, 8 blocks per group: 1.5 million groups
# whose bitmaps all say "used"), so the walk reads one bitmap per group
# and never reports a free range.  SIGTERM once the image is open must
# stop it with exit status 143 (128 + 15), well before the walk's end,
# and leave the image unchanged.
. "$(dirname "$0")/../lib.sh"
need python3 sha256sum
cd "$T" || exit 1

python3 - big.img $((12 * 1024 * 1024)) <<'PY'
import struct, sys
path, nblocks = sys.argv[1], int(sys.argv[2])
bpg = 8
ngroups = (nblocks - 1 + bpg - 1) // bpg
f = open(path, 'wb'); f.truncate(nblocks * 1024)
sb = bytearray(1024)
def p32(o, v): struct.pack_into('<I', sb, o, v)
def p16(o, v): struct.pack_into('<H', sb, o, v)
p32(0x00, ngroups * 8); p32(0x04, nblocks); p32(0x14, 1); p32(0x18, 0)
p32(0x20, bpg); p32(0x24, bpg); p32(0x28, 8); p16(0x38, 0xEF53); p16(0x3A, 1)
p32(0x4C, 1); p16(0x58, 128); p32(0x64, 1)
f.seek(1024); f.write(sb)
full = 2 + (ngroups * 32 + 1023) // 1024   # one all-used block bitmap
d = bytearray(32); struct.pack_into('<III', d, 0, full, full, full)
f.seek(2048); f.write(bytes(d) * ngroups)
f.seek(full * 1024); f.write(b'\xff' * 1024)
PY

# the whole walk, for reference
s=$(date +%s%N)
"$VDISK" zerofree -q -n big.img >full.out 2>&1 || fail "uninterrupted walk failed: $(cat full.out)"
full_ms=$((($(date +%s%N) - s) / 1000000))
grep -q 'free 0 B' full.out && pass "uninterrupted walk: nothing free ($full_ms ms)" || fail "walk: $(cat full.out)"

before=$(sha256sum big.img | cut -d' ' -f1)
for mode in -n ""; do
	"$VDISK" zerofree -q $mode big.img >run.out 2>run.err &
	pid=$!
	# signal once the image is open (the handlers are set before that)
	for _ in $(seq 500); do ls -l /proc/$pid/fd 2>/dev/null | grep -q big.img && break; sleep 0.01; done
	s=$(date +%s%N)
	kill -TERM $pid
	wait $pid
	rc=$?
	ms=$((($(date +%s%N) - s) / 1000000))
	assert_eq "zerofree ${mode:-(write)}: SIGTERM during the walk exits 143" 143 "$rc"
	grep -q 'interrupted by signal 15' run.err && pass "zerofree ${mode:-(write)}: says it was interrupted" ||
		fail "zerofree ${mode:-(write)}: stderr: $(cat run.err)"
	[ "$ms" -lt 2000 ] && pass "zerofree ${mode:-(write)}: stopped $ms ms after the signal (whole walk $full_ms ms)" ||
		fail "zerofree ${mode:-(write)}: took $ms ms to stop"
done
assert_eq "interrupted runs changed no byte" "$before" "$(sha256sum big.img | cut -d' ' -f1)"
finish
