#!/usr/bin/env bash
# Snapshot chains of VMDKs against qemu-img as the independent reference
# (issue 13):
#   - chains made by qemu-img (create -b + qemu-io writes, 3 deep, a zeroed
#     range in the middle) read byte for byte as qemu-img convert reads them;
#   - vdisk map's depth and data ranges equal qemu-img map's;
#   - info --backing-chain (text and JSON) lists the chain as qemu-img does;
#   - a child made by vdisk create -B is read by qemu-img (info
#     --backing-chain, check, compare against the parent);
#   - writes into a child through vdisk (convert -n --target-is-zero: only
#     the data runs of the source, 4 KiB pieces of 64 KiB grains) copy the
#     rest of each grain from the parent: qemu-img's reading equals the
#     expected guest bytes built with dd;
#   - a parentCID that does not match the parent's CID is refused, read with
#     --force and a warning; a missing parent is a clear error, and
#     check reports it.
. "$(dirname "$0")/../lib.sh"
need qemu-img qemu-io jq cmp

KiB=1024
MiB=$((1 << 20))
cd "$T"

# ---- a 3-deep chain made by qemu
qemu-img create -q -f vmdk base.vmdk 8M
qemu-io -c 'write -P 0xaa 0 4M' -c 'write -P 0xbb 6M 1M' base.vmdk >/dev/null
qemu-img create -q -f vmdk -b base.vmdk -F vmdk mid.vmdk
qemu-io -c 'write -P 0xcc 1M 64k' -c 'write -P 0xdd 100k 5k' -c 'write -z 6M 512k' mid.vmdk >/dev/null
qemu-img create -q -f vmdk -b mid.vmdk -F vmdk top.vmdk
qemu-io -c 'write -P 0xee 6400k 4k' -c 'write -P 0x11 3M 3k' top.vmdk >/dev/null

for img in mid.vmdk top.vmdk; do
	qemu-img convert -O raw "$img" "q-$img.raw"
	"$VDISK" convert -O raw "$img" "v-$img.raw" 2>"$T/err" || fail "convert $img: $(cat "$T/err")"
	cmp -s "q-$img.raw" "v-$img.raw" && pass "$img: the chain reads as qemu-img reads it" ||
		fail "$img: vdisk's flattened copy differs from qemu-img's"
	"$VDISK" compare -q "$img" "q-$img.raw" >/dev/null && pass "compare $img (a chain) with its flat copy" ||
		fail "compare $img with its flat copy"
done

# map: depth, data and zero of each range as qemu-img map says
keys='[.[] | {start, length, depth, data, zero}]'
norm() { jq -c "$keys" | jq -c '
	reduce .[] as $e ([]; if length > 0 and (.[-1] | .start + .length == $e.start and .depth == $e.depth and .data == $e.data and .zero == $e.zero)
		then .[-1].length += $e.length else . + [$e] end)'; }
q=$(qemu-img map --output=json top.vmdk | norm)
v=$("$VDISK" map --output=json top.vmdk | norm)
assert_eq "map top.vmdk: depth, data, zero as qemu-img map" "$q" "$v"
"$VDISK" map top.vmdk >map.txt
assert_contains "human map shows a Depth column for a chain" "Depth" map.txt

# inspect of a child: only its own layer (what top.vmdk itself holds)
own=$(qemu-img map --output=json top.vmdk | jq '[.[] | select(.depth == 0 and .data) | .length] | add')
got=$("$VDISK" inspect --output=json top.vmdk | jq '.summary."allocated-bytes"')
assert_eq "inspect of a child counts its own layer's data" "$own" "$got"
# info --backing-chain
q=$(qemu-img info --backing-chain --output=json top.vmdk | jq -c '[.[] | {filename: (.filename | sub("^\\./"; "")), "virtual-size", "backing-filename"}]')
v=$("$VDISK" info --backing-chain --output=json top.vmdk | jq -c '[.[] | {filename: (.filename | sub("^\\./"; "")), "virtual-size", "backing-filename"}]')
assert_eq "info --backing-chain --output=json: files, sizes, backing names as qemu-img" "$q" "$v"
"$VDISK" info --backing-chain top.vmdk >info.txt
assert_eq "info --backing-chain text: three images" 3 "$(grep -c '^image: ' info.txt)"
assert_contains "info text names the backing file" "backing file: mid.vmdk" info.txt
"$VDISK" info --output=json top.vmdk | jq -e '."backing-filename" == "mid.vmdk" and ."backing-filename-format" == "vmdk"' >/dev/null &&
	pass "info JSON: backing-filename, backing-filename-format" || fail "info JSON lacks the backing keys"

# ---- a child made by vdisk, read by qemu
"$VDISK" create -O vmdk -B mid.vmdk child.vmdk 2>"$T/err" || fail "create -B: $(cat "$T/err")"
qemu-img info --backing-chain child.vmdk >qinfo.txt 2>&1
assert_eq "qemu-img info --backing-chain follows vdisk's child to the base" 3 "$(grep -c '^image: ' qinfo.txt)"
assert_rc "qemu-img check of vdisk's child" 0 qemu-img check -q child.vmdk
assert_rc "qemu-img compare: the new child reads as its parent" 0 qemu-img compare -q child.vmdk mid.vmdk
grep -aq 'parentFileNameHint="mid.vmdk"' child.vmdk && pass "the child names its parent relative to its folder" ||
	fail "no parentFileNameHint=\"mid.vmdk\" in the child"
assert_rc "create -B of a raw child is refused" 1 "$VDISK" create -O raw -B mid.vmdk child.img

# ---- copy-on-write: 4 KiB data runs into 64 KiB grains of the child
truncate -s 8M src.raw
printf '\x5a%.0s' $(seq 4096) >run4k
for off in 100 204 260 6408; do   # KiB: inside grains the parent holds (and one it zeroed)
	dd if=run4k of=src.raw bs=1K seek=$off conv=notrunc status=none
done
cp "q-mid.vmdk.raw" expect.raw
for off in 100 204 260 6408; do dd if=run4k of=expect.raw bs=1K seek=$off conv=notrunc status=none; done
"$VDISK" convert -n --target-is-zero -O vmdk src.raw child.vmdk 2>"$T/err" || fail "convert -n into the child: $(cat "$T/err")"
assert_rc "qemu-img check after vdisk wrote into the child" 0 qemu-img check -q child.vmdk
qemu-img convert -O raw child.vmdk got.raw
cmp -s expect.raw got.raw && pass "partial grain writes kept the parent's bytes around them (qemu-img reads the child)" ||
	fail "the child after partial writes differs from the expected guest bytes: $(cmp expect.raw got.raw | head -1)"
"$VDISK" convert -O raw child.vmdk vgot.raw
cmp -s expect.raw vgot.raw && pass "vdisk reads its own writes through the chain" || fail "vdisk's reading of the written child differs"
# zeros written over parent data hide it (not dropped to expose the parent)
truncate -s 8M zsrc.raw
"$VDISK" convert -n -O vmdk zsrc.raw child.vmdk 2>"$T/err" || fail "convert -n zeros into the child: $(cat "$T/err")"
qemu-img convert -O raw child.vmdk z.raw
cmp -s zsrc.raw z.raw && pass "zeros written into a child read as zeros in qemu-img" ||
	fail "zeros written into the child expose the parent's data"

# ---- broken links
cp mid.vmdk mid-save.vmdk
qemu-io -c 'write -P 0x77 0 4k' mid.vmdk >/dev/null   # qemu changes mid's CID on write
rc=0; "$VDISK" convert -O raw top.vmdk x.raw 2>err.txt || rc=$?
assert_eq "a parent whose CID changed since the snapshot is refused" 1 "$rc"
assert_contains "the refusal names parentCID" "parentCID" err.txt
[ ! -e x.raw ] && pass "nothing written after the refusal" || fail "x.raw exists after a refused open"
rc=0; "$VDISK" convert --force -O raw top.vmdk x.raw 2>err.txt || rc=$?
assert_eq "--force reads it" 0 "$rc"
assert_contains "--force warns" "warning:" err.txt
rc=0; "$VDISK" check top.vmdk >chk.txt 2>&1 || rc=$?
assert_eq "check reports the mismatched link as an error (exit 2)" 2 "$rc"
assert_contains "check names the link" "parentCID" chk.txt
cp mid-save.vmdk mid.vmdk
mv base.vmdk base-moved.vmdk
rc=0; "$VDISK" info mid.vmdk >i.txt 2>err.txt || rc=$?
assert_eq "info of a child whose parent is missing still shows the link" 0 "$rc"
assert_contains "and warns that the parent was not found" "was not found" err.txt
assert_contains "info shows the stored name" "base.vmdk (not opened)" i.txt
rc=0; "$VDISK" convert -O raw mid.vmdk y.raw 2>err.txt || rc=$?
assert_eq "convert of a child whose parent is missing fails" 1 "$rc"
assert_contains "the message suggests --backing" "--backing" err.txt
"$VDISK" convert --backing base-moved.vmdk -O raw mid.vmdk y.raw 2>err.txt || fail "--backing: $(cat err.txt)"
cmp -s y.raw "q-mid.vmdk.raw" && pass "--backing FILE names a moved parent" || fail "--backing read differs"

# ---- commit: the child's blocks into the parent, in place
mkdir cm && cd cm
qemu-img create -q -f vmdk base.vmdk 8M
qemu-io -c 'write -P 0xaa 0 4M' -c 'write -P 0xbb 6M 1M' base.vmdk >/dev/null
qemu-img create -q -f vmdk -b base.vmdk -F vmdk sib.vmdk
qemu-img create -q -f vmdk -b base.vmdk -F vmdk top.vmdk
qemu-io -c 'write -P 0xcc 1M 64k' -c 'write -P 0xdd 5M 3k' -c 'write -P 0x12 6M 8k' top.vmdk >/dev/null
qemu-img convert -O raw top.vmdk exp.raw
"$VDISK" commit --output=json top.vmdk >commit.json 2>"$T/err" || fail "commit: $(cat "$T/err")"
jq -e '.removed == false and ."data-bytes" > 0' commit.json >/dev/null && pass "commit --output=json reports the bytes" ||
	fail "commit JSON: $(cat commit.json)"
assert_rc "qemu-img check of the parent after commit" 0 qemu-img check -q base.vmdk
assert_rc "the parent now reads as the child did (qemu-img compare)" 0 qemu-img compare -q base.vmdk exp.raw
assert_rc "the kept child still reads the same, relinked (qemu-img)" 0 qemu-img compare -q top.vmdk exp.raw
assert_rc "the kept child opens in vdisk without --force" 0 "$VDISK" compare -q top.vmdk exp.raw
rc=0; "$VDISK" info sib.vmdk >/dev/null 2>err.txt || rc=$?
assert_contains "a sibling made before the commit sees its parent changed" "parentCID" err.txt
# --remove
qemu-img create -q -f vmdk -b base.vmdk -F vmdk t2.vmdk
qemu-io -c 'write -P 0x33 0 64k' t2.vmdk >/dev/null
qemu-img convert -O raw t2.vmdk exp2.raw
"$VDISK" commit -q --remove t2.vmdk >/dev/null 2>"$T/err" || fail "commit --remove: $(cat "$T/err")"
[ ! -e t2.vmdk ] && pass "commit --remove removes the child" || fail "t2.vmdk still there"
assert_rc "and the parent holds its blocks" 0 qemu-img compare -q base.vmdk exp2.raw
# killed at every write: the child stays valid and linked, a rerun completes
qemu-img create -q -f vmdk k0.vmdk 4M
qemu-io -c 'write -P 0x44 0 2M' k0.vmdk >/dev/null
qemu-img create -q -f vmdk -b k0.vmdk -F vmdk k1.vmdk
qemu-io -c 'write -P 0x55 64k 200k' -c 'write -P 0x66 3M 5k' k1.vmdk >/dev/null
qemu-img convert -O raw k1.vmdk kexp.raw
cp k0.vmdk k0.orig; cp k1.vmdk k1.orig
bad=0 n=0
for kill in 0 1 2 3 5 8 12 20; do
	cp k0.orig k0.vmdk; cp k1.orig k1.vmdk
	VDISK_TEST_KILL_AFTER=$kill "$VDISK" commit -q k1.vmdk >/dev/null 2>&1
	rc=$?
	n=$((n + 1))
	qemu-img check -q k0.vmdk >/dev/null 2>&1 || { bad=1; fail "killed after $kill writes: the parent fails qemu-img check"; }
	"$VDISK" compare -q k1.vmdk kexp.raw >/dev/null 2>&1 ||
		"$VDISK" compare -q --force k1.vmdk kexp.raw >/dev/null 2>&1 || { bad=1; fail "killed after $kill writes (rc $rc): the child's view changed"; }
	[ "$rc" = 0 ] && continue
	"$VDISK" commit -q k1.vmdk >/dev/null 2>&1 || "$VDISK" commit -q --force k1.vmdk >/dev/null 2>&1 ||
		{ bad=1; fail "killed after $kill writes: commit does not complete on a rerun"; }
	qemu-img compare -q k0.vmdk kexp.raw >/dev/null 2>&1 || { bad=1; fail "killed after $kill writes: the rerun left the parent wrong"; }
done
[ "$bad" = 0 ] && pass "commit killed at $n points: parent valid, child unchanged, a rerun completes"

# ---- rebase: onto the grandparent, the guest view kept (safe), or the link only (-u)
qemu-img create -q -f vmdk r0.vmdk 4M
qemu-io -c 'write -P 0x71 0 4M' r0.vmdk >/dev/null
qemu-img create -q -f vmdk -b r0.vmdk -F vmdk r1.vmdk
qemu-io -c 'write -P 0x72 1M 1M' r1.vmdk >/dev/null
qemu-img create -q -f vmdk -b r1.vmdk -F vmdk r2.vmdk
qemu-io -c 'write -P 0x73 1536k 4k' r2.vmdk >/dev/null
qemu-img convert -O raw r2.vmdk rexp.raw
"$VDISK" rebase -q -B r0.vmdk r2.vmdk >/dev/null 2>"$T/err" || fail "rebase: $(cat "$T/err")"
qemu-img info --backing-chain r2.vmdk >ri.txt 2>&1
assert_eq "after rebase qemu-img sees a 2-deep chain" 2 "$(grep -c '^image: ' ri.txt)"
assert_rc "safe rebase keeps the guest view (qemu-img compare)" 0 qemu-img compare -q r2.vmdk rexp.raw
assert_rc "qemu-img check after rebase" 0 qemu-img check -q r2.vmdk
cp r0.vmdk moved.vmdk
"$VDISK" rebase -q -u -B moved.vmdk r2.vmdk >/dev/null 2>"$T/err" || fail "rebase -u: $(cat "$T/err")"
grep -aq 'parentFileNameHint="moved.vmdk"' r2.vmdk && pass "rebase -u rewrites the name" || fail "no new parentFileNameHint"
assert_rc "rebase -u onto an identical copy: same view" 0 qemu-img compare -q r2.vmdk rexp.raw

# ---- convert -B: a new child holding only what differs from the parent
qemu-img create -q -f vmdk cb0.vmdk 8M
qemu-io -c 'write -P 0xaa 0 4M' cb0.vmdk >/dev/null
qemu-img convert -O raw cb0.vmdk mod.raw
printf '\x5a%.0s' $(seq 4096) | dd of=mod.raw bs=1K seek=100 conv=notrunc status=none
dd if=/dev/zero of=mod.raw bs=1K seek=2048 count=64 conv=notrunc status=none
printf 'x' | dd of=mod.raw bs=1 seek=7000000 conv=notrunc status=none
"$VDISK" convert -O vmdk -B cb0.vmdk mod.raw cd.vmdk 2>"$T/err" || fail "convert -B: $(cat "$T/err")"
assert_rc "convert -B: qemu-img compare with the source" 0 qemu-img compare -q cd.vmdk mod.raw
assert_rc "convert -B: qemu-img check" 0 qemu-img check -q cd.vmdk
qemu-img info cd.vmdk | grep -q "backing file: cb0.vmdk" && pass "convert -B: the child names its parent" ||
	fail "convert -B: no backing file in qemu-img info"
n=$(qemu-img map --output=json cd.vmdk | jq '[.[] | select(.depth == 0 and .data) | .length] | add')
assert_eq "convert -B: only the three differing grains are in the child" $((3 * 65536)) "$n"

# the CID as a number: qemu-img writes it without leading zeros, vdisk
# with eight digits
cid_of() { local c; c=$(grep -a '^CID=' "$1" | head -1 | cut -d= -f2); [ -n "$c" ] && printf '%d' "0x$c" || echo "no CID in $1"; }
# delta NAME: a qemu-made 8 MiB NAME0.vmdk full of data, its delta
# NAME1.vmdk holding a data grain, a zero grain pair and a partial grain,
# and NAMEexp.raw, the delta's view as qemu-img reads it
delta() {
	qemu-img create -q -f vmdk "${1}0.vmdk" 8M
	qemu-io -c 'write -P 0xaa 0 8M' "${1}0.vmdk" >/dev/null
	qemu-img create -q -f vmdk -b "${1}0.vmdk" -F vmdk "${1}1.vmdk"
	qemu-io -c 'write -P 0xcc 1M 64k' -c 'write -P 0 2M 128k' -c 'write -P 0xdd 5M 3k' "${1}1.vmdk" >/dev/null
	qemu-img convert -O raw "${1}1.vmdk" "${1}exp.raw"
}
# ---- compact and defrag of a child: same link and CID, zero grains kept, the view unchanged
delta pc
cid=$(cid_of pc1.vmdk)
"$VDISK" compact pc1.vmdk >pc.txt 2>&1 || fail "compact of a child: $(cat pc.txt)"
assert_contains "compact of a child says zero blocks are kept" "hide the parent" pc.txt
assert_rc "compact of a child: qemu-img check" 0 qemu-img check -q pc1.vmdk
assert_rc "compact of a child: the view unchanged (qemu-img compare)" 0 qemu-img compare -q pc1.vmdk pcexp.raw
assert_eq "compact of a child keeps its CID" "$cid" "$(cid_of pc1.vmdk)"
qemu-img info pc1.vmdk | grep -q "backing file: pc0.vmdk" && pass "compact of a child keeps its parent's name" || fail "the compacted child lost its parent"
"$VDISK" defrag -q pc1.vmdk >/dev/null 2>&1 || fail "defrag of a child"
assert_rc "defrag of a child: the view unchanged" 0 qemu-img compare -q pc1.vmdk pcexp.raw
# compact --fs-aware of a qemu-made delta: grains the guest filesystem does
# not use become zero grains; qemu-img reads the same view, check passes
if command -v mkfs.ext4 >/dev/null && command -v debugfs >/dev/null; then
	truncate -s 32M fa.raw
	mkfs.ext4 -q -F -b 4096 fa.raw
	rand_bytes fab $((8 << 20)) >fab
	debugfs -w -R "write fab fab" fa.raw >/dev/null 2>&1
	qemu-img convert -O vmdk fa.raw fa0.vmdk
	qemu-img create -q -f vmdk -b fa0.vmdk -F vmdk fa1.vmdk
	debugfs -w -R "rm fab" fa.raw >/dev/null 2>&1
	rand_bytes fas $((512 << 10)) >fas
	debugfs -w -R "write fas fas" fa.raw >/dev/null 2>&1
	qemu-img convert -n -O vmdk -B fa0.vmdk -F vmdk fa.raw fa1.vmdk 2>/dev/null ||
		qemu-img convert -n -O vmdk fa.raw fa1.vmdk
	n0=$(qemu-img map --output=json fa1.vmdk | jq '[.[] | select(.depth == 0 and .data) | .length] | add // 0')
	"$VDISK" compact --fs-aware fa1.vmdk >fa.txt 2>&1 || fail "compact --fs-aware of a delta: $(cat fa.txt)"
	assert_rc "compact --fs-aware of a delta: qemu-img check" 0 qemu-img check -q fa1.vmdk
	n1=$(qemu-img map --output=json fa1.vmdk | jq '[.[] | select(.depth == 0 and .data) | .length] | add // 0')
	[ "$n1" -lt "$n0" ] && pass "compact --fs-aware of a delta: data grains $n0 -> $n1 bytes" ||
		fail "compact --fs-aware released nothing ($n0 -> $n1 bytes of data grains)"
	qemu-img convert -O raw fa1.vmdk faq.raw
	"$VDISK" convert -O raw fa1.vmdk fav.raw
	cmp -s faq.raw fav.raw && pass "compact --fs-aware of a delta: qemu-img and vdisk read the same" ||
		fail "compact --fs-aware of a delta: qemu-img and vdisk differ"
	assert_rc "compact --fs-aware of a delta: e2fsck clean" 0 e2fsck -fn faq.raw
	debugfs -R "cat fas" faq.raw 2>/dev/null | cmp -s - fas && pass "compact --fs-aware of a delta kept the file" ||
		fail "compact --fs-aware of a delta changed the file"
fi

# ---- commit --empty: the child stays, empty, on the changed parent
delta ce
cid=$(cid_of ce1.vmdk)
"$VDISK" commit --empty --output=json ce1.vmdk >ce.json 2>"$T/err" || fail "commit --empty: $(cat "$T/err")"
assert_eq "commit --empty: JSON says emptied" true "$(jq .emptied ce.json)"
assert_rc "commit --empty: qemu-img check of the child" 0 qemu-img check -q ce1.vmdk
assert_rc "commit --empty: the child's view unchanged (qemu-img compare)" 0 qemu-img compare -q ce1.vmdk ceexp.raw
assert_rc "commit --empty: the parent reads as the child did" 0 qemu-img compare -q ce0.vmdk ceexp.raw
assert_eq "commit --empty: the child holds no grain (qemu-img map)" 0 \
	"$(qemu-img map --output=json ce1.vmdk | jq '[.[] | select(.depth == 0)] | length')"
assert_eq "commit --empty keeps the child's CID" "$cid" "$(cid_of ce1.vmdk)"
qemu-img info ce1.vmdk | grep -q "backing file: ce0.vmdk" && pass "commit --empty keeps the parent's name" || fail "the emptied child lost its parent"
assert_rc "--remove with --empty refused" 1 "$VDISK" commit --remove --empty ce1.vmdk
qemu-img create -q -f vmdk ct0.vmdk 3G
qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse -b ct0.vmdk -F vmdk ct1.vmdk
qemu-io -c 'write -P 0x11 0 64k' ct1.vmdk >/dev/null
sha=$(sha256sum <ct0.vmdk)
# qemu-img's split extents are 2 GiB, vdisk's 2047 MiB (as VMware's): the
# extent files cannot be replaced one by one, so it is refused up front
assert_rc "commit --empty of a qemu-made split child refused" 1 "$VDISK" commit --empty ct1.vmdk
assert_contains "commit --empty of a split child: says why" "cannot replace the extent files safely" "$T/.err"
assert_eq "commit --empty refused before writing: the parent unchanged" "$sha" "$(sha256sum <ct0.vmdk)"
# a split child in VMware's layout: compact, defrag and commit --empty
# replace its extent files one by one
qemu-img create -q -f vmdk cs0.vmdk 5G
qemu-io -c 'write -P 0xaa 0 4M' -c 'write -P 0xab 2100M 4M' cs0.vmdk >/dev/null
"$VDISK" create -O vmdk -o subformat=twoGbMaxExtentSparse -B cs0.vmdk cs1.vmdk
qemu-io -c 'write -P 0xcc 1M 64k' -c 'write -P 0 2M 128k' -c 'write -P 0xdd 2101M 64k' cs1.vmdk >/dev/null
qemu-img convert -O raw cs1.vmdk csexp.raw
ino=$(stat -c %i cs1-s001.vmdk cs1-s002.vmdk cs1-s003.vmdk)
"$VDISK" compact -q cs1.vmdk >/dev/null 2>"$T/err" || fail "compact of a split child: $(cat "$T/err")"
ino2=$(stat -c %i cs1-s001.vmdk cs1-s002.vmdk cs1-s003.vmdk)
[ "$(comm -12 <(echo "$ino" | sort) <(echo "$ino2" | sort) | wc -l)" = 0 ] &&
	pass "compact of a split child replaced its three extent files" || fail "the extent files of the split child were not all replaced"
assert_rc "compact of a split child: qemu-img check" 0 qemu-img check -q cs1.vmdk
assert_rc "compact of a split child: the view unchanged" 0 qemu-img compare -q cs1.vmdk csexp.raw
"$VDISK" defrag -q cs1.vmdk >/dev/null 2>&1 || fail "defrag of a split child"
assert_rc "defrag of a split child: the view unchanged" 0 qemu-img compare -q cs1.vmdk csexp.raw
"$VDISK" commit -q --empty cs1.vmdk >/dev/null 2>"$T/err" || fail "commit --empty of a split child: $(cat "$T/err")"
assert_rc "commit --empty of a split child: qemu-img check" 0 qemu-img check -q cs1.vmdk
assert_rc "commit --empty of a split child: the view unchanged" 0 qemu-img compare -q cs1.vmdk csexp.raw
assert_eq "commit --empty of a split child: no grain left" 0 \
	"$(qemu-img map --output=json cs1.vmdk | jq '[.[] | select(.depth == 0)] | length')"
ls .cs1* >/dev/null 2>&1 && fail "temporary files left: $(ls -a .cs1*)" || pass "no temporary files left"
# compact of the split child killed before each change, the renames of its
# four files included: every state passes qemu-img check with the same view
qemu-io -c 'write -P 0xcc 1M 64k' -c 'write -P 0xdd 2101M 64k' -c 'write -P 0xee 4200M 64k' cs1.vmdk >/dev/null
qemu-img convert -O raw cs1.vmdk csexp.raw
mkdir -p ksplit && cp cs1*.vmdk ksplit/
bad=0 n=0 k=0
while [ "$k" -lt 200 ]; do
	rm -f cs1*.vmdk .cs1*; cp ksplit/cs1*.vmdk .
	VDISK_TEST_KILL_AFTER=$k "$VDISK" compact -q cs1.vmdk >/dev/null 2>&1
	rc=$?
	n=$((n + 1))
	{ qemu-img check -q cs1.vmdk >/dev/null 2>&1 && qemu-img compare -q cs1.vmdk csexp.raw >/dev/null 2>&1; } ||
		{ bad=1; fail "compact of a split child killed after $k changes: the child is damaged or reads differently"; }
	[ "$rc" = 0 ] && break
	k=$((k + 1))
done
[ "$bad" = 0 ] && [ "$rc" = 0 ] && [ "$n" -gt 4 ] && pass "compact of a split child killed at each of $n points: valid, the same view" ||
	{ [ "$bad" = 0 ] && fail "compact of a split child: $n kill points, last exit $rc"; }
VDISK_TEST_KILL_AFTER=$((k - 1)) "$VDISK" compact -q cs1.vmdk >/dev/null 2>&1
ls -a | grep -q '^\.cs1.*vdisk-tmp' && pass "a kill before the last rename leaves temporary files" || fail "no temporary files after a kill: the test proves nothing"
assert_rc "a rerun after the kill" 0 "$VDISK" compact -q cs1.vmdk
ls -a | grep -q '^\.cs1.*vdisk-tmp' && fail "the rerun left temporary files: $(ls -a | grep '^\.cs1')" || pass "the rerun removed the temporary files"

# ---- ESXi vmfsSparse (COWD) deltas: vdisk writes into one, qemu-img reads it
MKCOWD=${BUILD:-$TOP/build}/tests/helpers/mkcowd
if [ -x "$MKCOWD" ]; then
	qemu-img create -q -f vmdk e0.vmdk 4M
	qemu-io -c 'write -P 0x21 0 4M' e0.vmdk >/dev/null
	"$MKCOWD" create e0-000001-delta.vmdk e0-000001.vmdk --parent e0.vmdk --grain 1M:64K=0x22 >/dev/null
	qemu-img convert -O raw e0-000001.vmdk cexp.raw
	truncate -s 4M csrc.raw
	printf '\x5a%.0s' $(seq 4096) >c4k
	for off in 100 1032 3000; do   # KiB (4 KiB-aligned: convert writes 4 KiB units): a new table, the existing grains, a new grain
		dd if=c4k of=csrc.raw bs=1K seek=$off conv=notrunc status=none
		dd if=c4k of=cexp.raw bs=1K seek=$off conv=notrunc status=none
	done
	"$VDISK" convert -n --target-is-zero -O vmdk csrc.raw e0-000001.vmdk 2>"$T/err" ||
		fail "convert -n into a COWD delta: $(cat "$T/err")"
	qemu-img convert -O raw e0-000001.vmdk cgot.raw
	cmp -s cexp.raw cgot.raw && pass "vdisk's writes into a vmfsSparse delta read right in qemu-img" ||
		fail "the COWD delta after vdisk's writes differs: $(cmp cexp.raw cgot.raw | head -1)"
	qemu-img convert -O raw e0.vmdk e0.raw
	"$MKCOWD" read e0-000001.vmdk --parent-raw e0.raw -o cref.raw 2>"$T/err" &&
		cmp -s cexp.raw cref.raw && pass "and in the reference reader" || fail "the reference reader disagrees: $(cat "$T/err")"
else
	echo "note: $MKCOWD not built (make unit-tests)"
fi
cd ..
finish
