#!/usr/bin/env bash
# Crash consistency of the operations that change an image in place.
# VDISK_TEST_KILL_AFTER=N makes vdisk SIGKILL itself just before its
# (N+1)th change to a host file (src/core/host.c); N is stepped through
# every change an operation makes, and each state it leaves is checked:
#  - zerofree on a dynamic VDI (discards, then slots moved from the end
#    and the file shortened) and on a monolithicSparse VMDK: vdisk check
#    finds no corruption (0 or 3), qemu-img check accepts the image once
#    vdisk check -r has reclaimed leaks, e2fsck -fn is clean and every
#    remaining file reads back identical; for the VDI, qemu-img check
#    accepts every state directly (cBlocksAllocated always equals the
#    allocated map entries), and the reclaim is all or nothing (the count
#    is the original or the final one);
#  - vdisk mbr on a dynamic VDI (allocates a block for sector 0): the image
#    stays valid, qemu-img check accepts it, and it holds either no table
#    or the whole table;
#  - vdisk check -r on the leaky states killed zerofree runs left (bytes
#    past the last slot): every state is valid for vdisk and qemu-img
#    check, with the same guest contents;
#  - vdisk check -r on a VDI with empty slots and a count that includes
#    them (what older versions left after a killed zerofree, which qemu-img
#    already rejects): every state is valid for vdisk and reads the same,
#    and once qemu-img check accepts a state it accepts every later one;
#  - SIGTERM during the reclaim of a zerofree (strace delivers it at a
#    chosen write of the reclaim's copies and commit): the run finishes the
#    reclaim, the image is clean for vdisk and qemu-img.
# Kill points: every one for the VDI runs (they have few changes); the VMDK
# zerofree is stride-sampled after the first 40 (see step_zerofree).
. "$(dirname "$0")/../lib.sh"
need qemu-img mkfs.ext4 e2fsck debugfs sfdisk sha256sum
cd "$T" || exit 1

sha() { sha256sum "$1" | cut -d' ' -f1; }
nalloc() { od -An -tu4 -j388 -N4 "$1" | tr -d ' '; }
points=0
guest_sha() { qemu-img convert -O raw "$1" g.raw && sha g.raw; }

# run_killed N CMD...: run CMD with the kill point at N; prints "killed",
# "done" or "error RC"
run_killed() {
	local n=$1 rc=0
	shift
	VDISK_TEST_KILL_AFTER=$n "$@" >/dev/null 2>&1 || rc=$?
	case $rc in
	0) echo done ;;
	137) echo killed ;;
	*) echo "error $rc" ;;
	esac
}

# ext4 with files, one deleted: stale data in free space
mkdir d
for i in 1 2 3; do rand_bytes "f$i" $((3 * 1048576 + i * 4099)) >"d/f$i"; done
rand_bytes gone $((9 * 1048576)) >d/gone
truncate -s 32M fs.img
mkfs.ext4 -q -F -b 1024 -d d fs.img
debugfs -w -R "rm /gone" fs.img >/dev/null 2>&1
(cd d && sha256sum f1 f2 f3) >sums

files_ok() {
	local f want bad=0
	while read -r want f; do
		[ "$(debugfs -R "cat /$f" g.raw 2>/dev/null | sha256sum | cut -d' ' -f1)" = "$want" ] || bad=1
	done <sums
	return $bad
}

# step_zerofree FMT [OPTS]: every kill point of vdisk zerofree on FS as FMT
step_zerofree() {
	local fmt=$1 opts=${2:-} n=0 st rc states=0 bad=0 final=
	qemu-img convert -O "$fmt" ${opts:+-o "$opts"} fs.img orig."$fmt"
	if [ "$fmt" = vdi ]; then
		cp orig.vdi fin.vdi && "$VDISK" zerofree -q fin.vdi >/dev/null 2>&1
		final=$(nalloc fin.vdi)
		[ "$final" -lt "$(nalloc orig.vdi)" ] || fail "zerofree vdi: nothing to reclaim ($final blocks)"
	fi
	while :; do
		cp orig."$fmt" k."$fmt"
		st=$(run_killed $n "$VDISK" zerofree -q k."$fmt")
		case $st in killed | done) ;; *) fail "zerofree $fmt, kill point $n: $st"; return ;; esac
		states=$((states + 1))
		points=$((points + 1))
		if [ "$fmt" = vdi ]; then
			if ! qemu-img check -q -f vdi k.vdi >qc.out 2>&1; then
				bad=1
				fail "zerofree vdi, kill point $n: qemu-img check before any repair: $(head -2 qc.out)"
			fi
			case $(nalloc k.vdi) in
			"$(nalloc orig.vdi)" | "$final") ;;
			*) bad=1; fail "zerofree vdi, kill point $n: cBlocksAllocated $(nalloc k.vdi): a reclaim done halfway" ;;
			esac
		fi
		rc=0
		"$VDISK" check k."$fmt" >chk.out 2>&1 || rc=$?
		if [ $rc != 0 ] && [ $rc != 3 ]; then
			bad=1
			fail "zerofree $fmt, kill point $n: vdisk check exit $rc: $(head -3 chk.out)"
		fi
		# keep a few leaky states for the check -r steps below
		if [ "$fmt" = vdi ] && [ $rc = 3 ] && [ "$(ls leaky-*.vdi 2>/dev/null | wc -l)" -lt 3 ]; then
			cp k.vdi leaky-$n.vdi
		fi
		if [ $rc = 3 ] && ! { "$VDISK" check -r k."$fmt" >/dev/null 2>&1 && "$VDISK" check k."$fmt" >/dev/null 2>&1; }; then
			bad=1
			fail "zerofree $fmt, kill point $n: check -r does not leave a clean image"
		fi
		if ! qemu-img check -q k."$fmt" >/dev/null 2>&1; then
			bad=1
			fail "zerofree $fmt, kill point $n: qemu-img check"
		fi
		guest_sha k."$fmt" >/dev/null
		if ! e2fsck -fn g.raw >/dev/null 2>&1; then bad=1; fail "zerofree $fmt, kill point $n: e2fsck -fn"; fi
		if ! files_ok; then bad=1; fail "zerofree $fmt, kill point $n: a file changed"; fi
		[ "$st" = done ] && break
		# every point at first, then every 13th: the per-grain/per-block
		# pattern repeats with a period of 2 or 3 changes, so the stride
		# still visits each phase of it
		if [ $n -lt 40 ]; then n=$((n + 1)); else n=$((n + 13)); fi
		[ $bad = 0 ] || break
	done
	[ $bad = 0 ] && pass "zerofree $fmt${opts:+ ($opts)}: $states kill points up to $n leave a valid image with intact files"
	[ "$states" -gt 5 ] && pass "zerofree $fmt: the run has at least $n change points" ||
		fail "zerofree $fmt: only $states states: the kill hook does not work"
}
step_zerofree vdi
final_vdi=$(nalloc fin.vdi)
step_zerofree vmdk

# vdisk mbr on an empty dynamic VDI: either no table or the whole table
"$VDISK" create -O vdi m0.vdi 64M >/dev/null
printf 'label: dos\nlabel-id: 0x1234abcd\nstart=2048, size=20480, type=83\nstart=22528, type=82\n' >script
cp m0.vdi want.vdi && "$VDISK" mbr --script script want.vdi >/dev/null
want=$(guest_sha want.vdi)
empty=$(guest_sha m0.vdi)
n=0 bad=0
while :; do
	cp m0.vdi m.vdi
	st=$(run_killed $n "$VDISK" mbr --script script m.vdi)
	case $st in killed | done) ;; *) fail "mbr, kill point $n: $st"; bad=1; break ;; esac
	points=$((points + 1))
	"$VDISK" check m.vdi >/dev/null 2>&1
	rc=$?
	if [ $rc != 0 ] && [ $rc != 3 ]; then bad=1; fail "mbr, kill point $n: vdisk check exit $rc"; fi
	qemu-img check -q -f vdi m.vdi >qc.out 2>&1 || { bad=1; fail "mbr, kill point $n: qemu-img check: $(head -2 qc.out)"; }
	g=$(guest_sha m.vdi)
	if [ "$g" != "$want" ] && [ "$g" != "$empty" ]; then bad=1; fail "mbr, kill point $n: half a table"; fi
	[ "$st" = done ] && break
	n=$((n + 1))
done
[ $bad = 0 ] && pass "mbr on a VDI: all $((n + 1)) kill points leave no table or the whole table, and qemu-img check accepts each"
sfdisk -d g.raw 2>/dev/null | grep -q "label-id: 0x1234abcd" && pass "mbr: sfdisk reads the completed table" ||
	fail "mbr: sfdisk does not read the table"

# check -r on a VDI with empty slots (blocks discarded without reclaiming:
# a VDI written with holes by qemu-img, then every other block zeroed by
# hand in the map)
rand_bytes holes $((12 * 1048576)) >h.raw
qemu-img convert -O vdi h.raw h.vdi
# block map at offBlocks (header offset 340), 4 bytes per block: mark
# blocks 0, 3, 6, 9 as zero (0xFFFFFFFE): their slots become leaks
off=$(od -An -tu4 -j340 -N4 h.vdi | tr -d ' ')
for b in 0 3 6 9; do printf '\xfe\xff\xff\xff' | dd of=h.vdi bs=1 seek=$((off + 4 * b)) conv=notrunc status=none; done
"$VDISK" check h.vdi >/dev/null 2>&1
assert_eq "check: hand-made empty slots are leaks" 3 "$?"
hwant=$(guest_sha h.vdi)
n=0 bad=0 qclean=0
while :; do
	cp h.vdi r.vdi
	st=$(run_killed $n "$VDISK" check -r r.vdi)
	case $st in killed | done) ;; *) fail "check -r, kill point $n: $st"; bad=1; break ;; esac
	points=$((points + 1))
	"$VDISK" check r.vdi >/dev/null 2>&1
	rc=$?
	if [ $rc != 0 ] && [ $rc != 3 ]; then bad=1; fail "check -r, kill point $n: vdisk check exit $rc"; fi
	if qemu-img check -q -f vdi r.vdi >/dev/null 2>&1; then
		qclean=1
	elif [ $qclean = 1 ]; then
		bad=1
		fail "check -r, kill point $n: qemu-img check rejects a state after accepting an earlier one"
	fi
	[ "$(guest_sha r.vdi)" = "$hwant" ] || { bad=1; fail "check -r, kill point $n: guest contents changed"; }
	[ "$st" = done ] && break
	n=$((n + 1))
done
[ $bad = 0 ] && pass "check -r: all $((n + 1)) kill points leave a valid image with the same contents"
assert_rc "check -r: clean at the end" 0 "$VDISK" check r.vdi
assert_rc "check -r: qemu-img check clean at the end" 0 qemu-img check -q r.vdi
[ "$(stat -c %s r.vdi)" -lt "$(stat -c %s h.vdi)" ] && pass "check -r: file shortened" || fail "check -r: file not shortened"

# check -r on what killed zerofree runs leave (qemu-img accepts those): every
# kill point stays acceptable to both
nleaky=0
for l in leaky-*.vdi; do
	[ -e "$l" ] || continue
	nleaky=$((nleaky + 1))
	lwant=$(guest_sha "$l")
	n=0 bad=0
	while :; do
		cp "$l" r.vdi
		st=$(run_killed $n "$VDISK" check -r r.vdi)
		case $st in killed | done) ;; *) fail "check -r $l, kill point $n: $st"; bad=1; break ;; esac
		points=$((points + 1))
		"$VDISK" check r.vdi >/dev/null 2>&1
		rc=$?
		if [ $rc != 0 ] && [ $rc != 3 ]; then bad=1; fail "check -r $l, kill point $n: vdisk check exit $rc"; fi
		qemu-img check -q -f vdi r.vdi >qc.out 2>&1 || { bad=1; fail "check -r $l, kill point $n: qemu-img check: $(head -2 qc.out)"; }
		[ "$(guest_sha r.vdi)" = "$lwant" ] || { bad=1; fail "check -r $l, kill point $n: guest contents changed"; }
		[ "$st" = done ] && break
		n=$((n + 1))
	done
	[ $bad = 0 ] && pass "check -r on $l: all $((n + 1)) kill points valid for vdisk and qemu-img check"
	assert_rc "check -r on $l: clean at the end" 0 "$VDISK" check r.vdi
done
[ $nleaky -gt 0 ] && pass "zerofree kill points left $nleaky leaky states to repair" ||
	fail "no zerofree kill point left a leak: the check -r steps tested nothing"

# SIGTERM while the zerofree reclaim copies slots or commits: strace
# delivers it at the Nth pwrite of the run (inject ... signal=), the writes
# of the reclaim found from a traced run without signal
if command -v strace >/dev/null 2>&1 && strace -o /dev/null -e inject=getpid:signal=SIGCONT:when=1 true 2>/dev/null; then
	# LeakSanitizer cannot run under ptrace (make SANITIZE=1 builds)
	export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
	cp orig.vdi t.vdi
	strace -f -o trace.out -e trace=pwrite64 "$VDISK" zerofree -q t.vdi >/dev/null 2>&1
	# the reclaim's copies are 1 MiB writes into the data area, its commit
	# is the write at offset 388 (cBlocksAllocated)
	total=$(grep -c 'pwrite64(' trace.out)
	first=$(grep 'pwrite64(' trace.out | grep -n ', 1048576, ' | head -1 | cut -d: -f1)
	commit=$(grep 'pwrite64(' trace.out | grep -n ', 388)' | tail -1 | cut -d: -f1)
	if [ -z "$first" ] || [ -z "$commit" ]; then
		fail "SIGTERM: the traced zerofree shows no reclaim copy ($first) or commit ($commit) among $total writes"
	else
		landed=0
		for w in "$first" $(((first + commit) / 2)) "$commit"; do
			cp orig.vdi t.vdi
			rc=0
			strace -f -o /dev/null -e trace=pwrite64 -e inject=pwrite64:signal=SIGTERM:when="$w" \
				"$VDISK" zerofree -q t.vdi >term.out 2>&1 || rc=$?
			points=$((points + 1))
			what="SIGTERM at write $w of $total (reclaim writes $first..$commit)"
			case $rc in 0 | 130 | 143) ;; *) fail "$what: exit $rc: $(head -2 term.out)" ;; esac
			assert_rc "$what: vdisk check clean (the reclaim finished)" 0 "$VDISK" check t.vdi
			assert_rc "$what: qemu-img check clean" 0 qemu-img check -q -f vdi t.vdi
			assert_eq "$what: cBlocksAllocated is the final count" "$final_vdi" "$(nalloc t.vdi)"
			guest_sha t.vdi >/dev/null
			files_ok || fail "$what: a file changed"
			landed=$((landed + 1))
		done
		[ $landed = 3 ] && pass "SIGTERM during the reclaim: 3 moments, each image consistent and fully reclaimed"
	fi
	# SIGTERM during the walk, two reads after its first zeroing (so
	# after the first release): the run stops, reclaims what it released
	# so far, and leaves an image clean for both
	cp orig.vdi t.vdi
	strace -f -o trace.out -e trace=pread64,fallocate "$VDISK" zerofree -q t.vdi >/dev/null 2>&1
	at=$(grep -n 'fallocate(' trace.out | head -1 | cut -d: -f1)
	at=$(($(head -n "$at" trace.out | grep -c 'pread64(') + 2))
	cp orig.vdi t.vdi
	rc=0
	strace -f -o /dev/null -e trace=pread64 -e inject=pread64:signal=SIGTERM:when=$at \
		"$VDISK" zerofree -q t.vdi >term.out 2>&1 || rc=$?
	points=$((points + 1))
	what="SIGTERM at read $at of $(grep -c 'pread64(' trace.out), in the walk"
	assert_eq "$what: the run reports the interruption" 143 "$rc"
	assert_rc "$what: vdisk check clean" 0 "$VDISK" check t.vdi
	assert_rc "$what: qemu-img check clean" 0 qemu-img check -q -f vdi t.vdi
	guest_sha t.vdi >/dev/null
	e2fsck -fn g.raw >/dev/null 2>&1 && files_ok && pass "$what: filesystem and files intact" || fail "$what: filesystem or files changed"
else
	echo "SKIP: strace with signal injection not available: no SIGTERM-during-reclaim test"
fi
pass "$points kill points (and signal moments) checked in all"

finish
