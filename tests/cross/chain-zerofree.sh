#!/usr/bin/env bash
# zerofree on a child image (issue 13): free blocks that hold the parent's
# data are zeroed in the child (VDI zero blocks), never dropped to expose the
# parent; the guest view, read by vdisk and by the reference reader
# (tests/helpers/mkvdidiff, from VirtualBox's layout), is the filesystem
# with its free space zeroed, e2fsck clean, the parent untouched.
. "$(dirname "$0")/../lib.sh"
need mkfs.ext4 e2fsck debugfs cmp
MKVDI=${BUILD:-$TOP/build}/tests/helpers/mkvdidiff
[ -x "$MKVDI" ] || skip "mkvdidiff not built (make unit-tests)"
cd "$T"
truncate -s 64M fs.raw
mkfs.ext4 -q -F -b 4096 fs.raw
rand_bytes big $((20 << 20)) >big
debugfs -w -R "write big big" fs.raw >/dev/null 2>&1
"$VDISK" convert -O vdi fs.raw base.vdi
sha=$(sha256sum <base.vdi)
"$VDISK" create -O vdi -B base.vdi child.vdi
# in the child: the big file deleted, a small one written
cp fs.raw fs2.raw
debugfs -w -R "rm big" fs2.raw >/dev/null 2>&1
rand_bytes small $((1 << 20)) >small
debugfs -w -R "write small small" fs2.raw >/dev/null 2>&1
"$VDISK" convert -q -n --target-is-zero -O vdi fs2.raw child.vdi
"$VDISK" convert -O raw child.vdi before.raw
cmp -s before.raw fs2.raw && pass "the child reads as the changed filesystem" || fail "the child's view differs"
"$VDISK" zerofree -n --output=json child.vdi >zb.json
[ "$(jq '."zero-bytes" < ."free-bytes"' zb.json)" = true ] && pass "before: free blocks hold the parent's data" ||
	fail "before zerofree the child's free space already read as zeros: the test would prove nothing"
"$VDISK" zerofree -q child.vdi >zf.txt 2>&1 || fail "zerofree of the child: $(cat zf.txt)"
"$VDISK" convert -O raw child.vdi after.raw
assert_rc "e2fsck is clean after zerofree of the child" 0 e2fsck -fn after.raw
debugfs -R "cat small" after.raw 2>/dev/null | cmp -s - small && pass "the file kept" || fail "the small file changed"
# after zerofree all free bytes read as zeros
"$VDISK" zerofree -n --output=json child.vdi >zn.json
f=$(jq '."free-bytes"' zn.json) z=$(jq '."zero-bytes"' zn.json)
[ -n "$f" ] && [ "$f" != null ] && [ "$f" -gt $((40 << 20)) ] && pass "zerofree -n: $f free bytes" || fail "zerofree -n JSON: free-bytes '$f'"
assert_eq "every free byte of the child's view reads as zero (the parent's data hidden)" "$f" "$z"
"$MKVDI" read child.vdi base.vdi >ref.raw 2>"$T/err" || fail "reference reader: $(cat "$T/err")"
cmp -s after.raw ref.raw && pass "the reference reader reads the same child" || fail "the reference reader reads the child differently"
[ "$(sha256sum <base.vdi)" = "$sha" ] && pass "the parent is unchanged" || fail "zerofree of the child changed the parent"
z=$("$MKVDI" dump child.vdi | sed -n 's/^map_zero=//p')
[ "${z:-0}" -gt 0 ] && pass "freed blocks are zero entries in the child ($z)" || fail "no zero entries in the child"
# compact of the child: a child of the same parent, same UUID, the view unchanged
u=$("$MKVDI" dump child.vdi | sed -n 's/^uuid_create=//p')
"$VDISK" compact -q child.vdi >/dev/null 2>&1 || fail "compact of the VDI child"
"$VDISK" convert -O raw child.vdi c.raw
cmp -s after.raw c.raw && pass "compact of the child keeps the view" || fail "compact of the child changed the view"
"$MKVDI" read child.vdi base.vdi >ref2.raw 2>"$T/err" && cmp -s after.raw ref2.raw &&
	pass "the reference reader reads the compacted child" || fail "reference read of the compacted child: $(cat "$T/err")"
assert_eq "compact keeps the child's uuidCreate" "$u" "$("$MKVDI" dump child.vdi | sed -n 's/^uuid_create=//p')"
assert_eq "compact keeps the zero entries" "$z" "$("$MKVDI" dump child.vdi | sed -n 's/^map_zero=//p')"

# compact --fs-aware of a child: the filesystem read through the chain; the
# child's blocks it does not use become zero entries (released), the parent
# untouched, the files kept, the reference reader agrees
"$VDISK" create -O vdi -B base.vdi fa.vdi
"$VDISK" convert -q -n --target-is-zero -O vdi fs2.raw fa.vdi
ub=$(stat -c %b fa.vdi)
"$VDISK" compact --fs-aware --output=json fa.vdi >fa.json 2>"$T/err" || fail "compact --fs-aware of a child: $(cat "$T/err")"
bf=$(jq '."blocks-free"' fa.json 2>/dev/null)
[ -n "$bf" ] && [ "$bf" != null ] && [ "$bf" -ge 18 ] && pass "compact --fs-aware: $bf free blocks released" || fail "compact --fs-aware JSON: blocks-free '$bf'"
ua=$(stat -c %b fa.vdi)
[ "$ua" -lt $((ub / 3)) ] && pass "the child's disk usage fell ($ub -> $ua sectors)" || fail "the child's disk usage $ub -> $ua sectors"
"$VDISK" convert -O raw fa.vdi fa.raw
assert_rc "compact --fs-aware of a child: e2fsck clean" 0 e2fsck -fn fa.raw
debugfs -R "cat small" fa.raw 2>/dev/null | cmp -s - small && pass "compact --fs-aware kept the file" || fail "compact --fs-aware changed the file"
"$MKVDI" read fa.vdi base.vdi >fa-ref.raw 2>"$T/err" && cmp -s fa.raw fa-ref.raw &&
	pass "the reference reader reads the fs-aware compacted child" || fail "reference read after compact --fs-aware: $(cat "$T/err")"
"$VDISK" zerofree -n --output=json fa.vdi >fz.json
assert_eq "after compact --fs-aware every free byte reads as zero" "$(jq '."free-bytes"' fz.json)" "$(jq '."zero-bytes"' fz.json)"
[ "$(sha256sum <base.vdi)" = "$sha" ] && pass "compact --fs-aware left the parent alone" || fail "compact --fs-aware of the child changed the parent"

# commit of the VDI child killed before each write: the parent (a dynamic
# VDI) passes qemu-img check, the child still reads the same, a rerun
# completes and the parent then reads as the child did
if command -v qemu-img >/dev/null; then
	cp base.vdi k0.orig; cp child.vdi k1.orig
	"$VDISK" convert -O raw child.vdi kexp.raw
	bad=0 n=0
	for kill in 0 1 2 4 7 11 16 25 40; do
		cp k0.orig base.vdi; cp k1.orig child.vdi
		VDISK_TEST_KILL_AFTER=$kill "$VDISK" commit -q child.vdi >/dev/null 2>&1
		rc=$?
		n=$((n + 1))
		qemu-img check -q base.vdi >/dev/null 2>&1 || { bad=1; fail "commit killed after $kill writes: the parent fails qemu-img check"; }
		"$VDISK" compare -q child.vdi kexp.raw >/dev/null 2>&1 || "$VDISK" compare -q --force child.vdi kexp.raw >/dev/null 2>&1 ||
			{ bad=1; fail "commit killed after $kill writes: the child's view changed"; }
		if [ "$rc" != 0 ]; then
			"$VDISK" commit -q child.vdi >/dev/null 2>&1 || "$VDISK" commit -q --force child.vdi >/dev/null 2>&1 ||
				{ bad=1; fail "commit killed after $kill writes: the rerun fails"; }
		fi
		"$VDISK" compare -q -f vdi base.vdi kexp.raw >/dev/null 2>&1 || { bad=1; fail "commit (killed after $kill): the parent does not read as the child did"; }
	done
	[ "$bad" = 0 ] && pass "VDI commit killed at $n points: parent valid, child unchanged, a rerun completes"
	"$MKVDI" read child.vdi base.vdi >/dev/null 2>&1 && pass "the reference reader follows the relinked child" ||
		fail "after commit the reference reader refuses the child's link"

	# commit --empty killed before each write, the emptying included: the
	# child reads the same at every point, and in the end holds nothing,
	# still linked (mkvdidiff reads it through the parent)
	# the writes a plain commit needs: the kills from there on hit the
	# emptying (its new file, then the rename)
	kp=0
	while [ "$kp" -lt 300 ]; do
		cp k0.orig base.vdi; cp k1.orig child.vdi
		VDISK_TEST_KILL_AFTER=$kp "$VDISK" commit -q child.vdi >/dev/null 2>&1 && break
		kp=$((kp + 1))
	done
	bad=0 n=0
	for kill in 0 2 7 16 30 $((kp - 1)) $kp $((kp + 1)) $((kp + 2)) $((kp + 3)) $((kp + 6)) $((kp + 20)); do
		cp k0.orig base.vdi; cp k1.orig child.vdi
		VDISK_TEST_KILL_AFTER=$kill "$VDISK" commit -q --empty child.vdi >/dev/null 2>&1
		rc=$?
		n=$((n + 1))
		qemu-img check -q base.vdi >/dev/null 2>&1 || { bad=1; fail "commit --empty killed after $kill writes: the parent fails qemu-img check"; }
		"$VDISK" compare -q child.vdi kexp.raw >/dev/null 2>&1 || "$VDISK" compare -q --force child.vdi kexp.raw >/dev/null 2>&1 ||
			{ bad=1; fail "commit --empty killed after $kill writes: the child's view changed"; }
		if [ "$rc" != 0 ]; then
			"$VDISK" commit -q --empty child.vdi >/dev/null 2>&1 || "$VDISK" commit -q --empty --force child.vdi >/dev/null 2>&1 ||
				{ bad=1; fail "commit --empty killed after $kill writes: the rerun fails"; }
		fi
		d=$("$MKVDI" dump child.vdi | sed -n 's/^map_data=//p')
		[ "$d" = 0 ] || { bad=1; fail "commit --empty (killed after $kill): the child still holds $d blocks"; }
		"$MKVDI" read child.vdi base.vdi 2>/dev/null | cmp -s - kexp.raw ||
			{ bad=1; fail "commit --empty (killed after $kill): the reference reader reads the emptied child differently"; }
	done
	[ "$bad" = 0 ] && pass "VDI commit --empty killed at $n points: the view kept, the child empty and linked in the end"
	cp k0.orig base.vdi; cp k1.orig child.vdi
	VDISK_TEST_KILL_AFTER=$kp "$VDISK" commit -q --empty child.vdi >/dev/null 2>&1
	[ $? != 0 ] && [ "$(cat base.vdi | sha256sum)" != "$(sha256sum <k0.orig)" ] &&
		pass "a kill after the $kp writes of a plain commit lands in the emptying of commit --empty" ||
		fail "commit --empty was not interrupted in its emptying (plain commit: $kp writes)"
fi
finish
