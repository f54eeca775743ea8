#!/usr/bin/env bash
# Hostile VMDK descriptors and images (issue 12):
#   a symlink swapped between an innocent extent and a secret file while
#     convert runs (the output must never hold the secret), and the
#     deterministic cases: a symlink pointing outside, a FIFO extent;
#   many SPARSE lines naming one file: refused quickly, in bounded memory,
#     naming both lines; FLAT lines on one file (raw-device style) still work;
#   the stream writer's write-once rule: zerofree, mbr, check -r and
#     convert -n refuse a streamOptimized image and leave it byte-identical;
#   an empty stream from create is complete (qemu-img check/compare), a
#     header-only one is corrupt;
#   compact/defrag of a VMDK whose extents do not all fit vd_info keep
#     refusing a RDONLY extent past the cut;
#   new images honour the umask.
. "$(dirname "$0")/../lib.sh"
need python3 openssl cmp sha256sum timeout
HAVE_QEMU=0
command -v qemu-img >/dev/null && HAVE_QEMU=1
MiB=$((1 << 20))

mkdesc() { # FILE createType extent-lines...
	local f=$1 ct=$2
	shift 2
	{ printf '# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType="%s"\n\n# Extent description\n' "$ct"
	  printf '%s\n' "$@"
	  printf '\n# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = "4"\nddb.adapterType = "ide"\n'; } >"$f"
}
# pk FILE OFFSET STRUCTFMT VALUE: write a little-endian value
pk() {
	python3 -c 'import sys, struct
f = open(sys.argv[1], "r+b"); f.seek(int(sys.argv[2], 0)); f.write(struct.pack("<" + sys.argv[3], int(sys.argv[4], 0)))' "$@"
}

# ---------------------------------------------------------------- symlink race
H=$T/race
mkdir "$H"
rand_bytes innocent $MiB >"$H/innocent.bin"
# the secret: a marker on every line, 1 MiB so the FLAT extent fits it
python3 -c 'import sys; sys.stdout.write(("SECRET-%s\n" % ("x" * 56)) * 16384)' >"$T/secret.bin"
ln -s innocent.bin "$H/ext.bin"
mkdesc "$H/r.vmdk" monolithicFlat 'RW 2048 FLAT "ext.bin" 0'
assert_rc "race: the innocent descriptor converts" 0 "$VDISK" convert -q -O raw "$H/r.vmdk" "$T/r0.raw"
cmp -s "$H/innocent.bin" "$T/r0.raw" && pass "race: innocent contents" || fail "race: innocent contents differ"
# swap ext.bin between the innocent file and the secret (atomic renames,
# so the name always exists), as fast as python can
python3 - "$H" "$T/secret.bin" <<'EOF' &
import os, sys
d, secret = sys.argv[1], sys.argv[2]
a, b = os.path.join(d, ".a"), os.path.join(d, ".b")
while True:
    for tmp, target in ((a, "innocent.bin"), (b, os.path.relpath(secret, d))):
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        os.symlink(target, tmp)
        os.replace(tmp, os.path.join(d, "ext.bin"))
EOF
SWAPPER=$!
on_exit "kill $SWAPPER 2>/dev/null"
leaked=0 refused=0 ok=0 runs=300
for i in $(seq $runs); do
	rm -f "$T/r.raw"
	if "$VDISK" convert -q -O raw "$H/r.vmdk" "$T/r.raw" 2>"$T/race.err"; then
		ok=$((ok + 1))
		if grep -q SECRET "$T/r.raw"; then leaked=$((leaked + 1)); fi
	else
		refused=$((refused + 1))
	fi
done
kill $SWAPPER 2>/dev/null
wait $SWAPPER 2>/dev/null
echo "race: $runs runs: $ok converted, $refused refused, $leaked leaked the secret"
assert_eq "race: no output holds the secret ($runs runs)" 0 "$leaked"
assert_eq "race: the race was exercised (some runs refused)" 1 "$((refused > 0))"
assert_eq "race: and some converted" 1 "$((ok > 0))"
# deterministic: the symlink pointing at the secret, a FIFO
ln -sfn ../secret.bin "$H/ext.bin"
assert_rc "symlink to a file outside: refused" 1 "$VDISK" convert -q -O raw "$H/r.vmdk" "$T/r1.raw"
assert_contains "symlink outside: message names the directory rule" "outside the descriptor's directory" "$T/.err"
[ -e "$T/r1.raw" ] && fail "symlink outside: output left" || pass "symlink outside: no output"
rm -f "$H/ext.bin"
mkfifo "$H/ext.bin"
assert_rc "FIFO extent: refused without blocking" 1 timeout 10 "$VDISK" info "$H/r.vmdk"
assert_contains "FIFO extent: not a regular file" "not a regular file" "$T/.err"
rm -f "$H/ext.bin"

# ---------------------------------------------------------------- one file, many lines
D=$T/dup
mkdir "$D"
"$VDISK" create -O vmdk "$D/x.vmdk" 1M || fail "create x.vmdk"
# a grain directory of 1M entries (4 MiB) at 1 MiB, in holes, no redundant copy
pk "$D/x.vmdk" 8 I 1                      # flags: newline test only
pk "$D/x.vmdk" 12 Q $(((1 << 20) * 512 * 128)) # capacity: 2^20 grain tables
pk "$D/x.vmdk" 56 Q 2048                  # gdOffset
truncate -s $((8 * MiB)) "$D/x.vmdk"
assert_rc "big-directory extent alone: info" 0 "$VDISK" info "$D/x.vmdk"
lines=()
for i in $(seq 100); do lines+=('RW 2048 SPARSE "x.vmdk"'); done
mkdesc "$D/many.vmdk" twoGbMaxExtentSparse "${lines[@]}"
rc=0
/usr/bin/time -f %M -o "$T/rss" timeout 60 "$VDISK" info "$D/many.vmdk" >"$T/.out" 2>"$T/.err" || rc=$?
rss=$(tail -1 "$T/rss")
echo "100 SPARSE lines on one file: exit $rc, peak RSS $rss KiB"
assert_eq "100 SPARSE lines on one file: refused (exit 1)" 1 "$rc"
assert_contains "the message names both lines" "extent 2 (line 9, \"x.vmdk\") names the same file as extent 1 (line 8" "$T/.err"
assert_eq "peak RSS below 100 MiB (got $rss KiB)" 1 "$((rss < 100 * 1024))"
assert_rc "100 SPARSE lines: check says corrupt (exit 2)" 2 "$VDISK" check "$D/many.vmdk"
assert_rc "100 SPARSE lines: convert fails" 1 "$VDISK" convert -q -O raw "$D/many.vmdk" "$T/many.raw"
# the same inode under another name: a hard link, a symlink
ln "$D/x.vmdk" "$D/hard.vmdk"
ln -s x.vmdk "$D/soft.vmdk"
for alias in hard.vmdk soft.vmdk; do
	mkdesc "$D/alias.vmdk" twoGbMaxExtentSparse 'RW 2048 SPARSE "x.vmdk"' "RW 2048 SPARSE \"$alias\""
	assert_rc "SPARSE lines on x.vmdk and $alias: refused" 1 "$VDISK" info "$D/alias.vmdk"
	assert_contains "$alias: the message says the same file" "names the same file as extent 1" "$T/.err"
done
# a FLAT and a SPARSE line on one file
mkdesc "$D/mixed.vmdk" custom 'RW 2048 SPARSE "x.vmdk"' 'RW 2048 FLAT "hard.vmdk" 0'
assert_rc "SPARSE and FLAT lines on one file: refused" 1 "$VDISK" info "$D/mixed.vmdk"
assert_contains "SPARSE and FLAT: the message names SPARSE" "SPARSE extent needs a file of its own" "$T/.err"
# an extent naming the descriptor itself
mkdesc "$D/self.vmdk" monolithicFlat 'RW 1 FLAT "self.vmdk" 0'
assert_rc "extent naming the descriptor itself: refused" 1 "$VDISK" info "$D/self.vmdk"
assert_contains "self: message" "names the descriptor file itself" "$T/.err"
# FLAT lines on one device file at several offsets (raw-device descriptors) work
rand_bytes dev $((2 * MiB)) >"$D/disk.bin"
ln -s disk.bin "$D/disk-link.bin"
mkdesc "$D/flat.vmdk" partitionedDevice 'RW 2048 FLAT "disk.bin" 2048' 'RW 100 ZERO' 'RW 2048 FLAT "disk-link.bin" 0'
{ tail -c $MiB "$D/disk.bin"; head -c 51200 /dev/zero; head -c $MiB "$D/disk.bin"; } >"$T/flat.want"
assert_rc "FLAT lines on one file: convert" 0 "$VDISK" convert -q -O raw "$D/flat.vmdk" "$T/flat.raw"
cmp -s "$T/flat.want" "$T/flat.raw" && pass "FLAT lines on one file: contents" || fail "FLAT lines on one file: contents differ"
# written in place through both lines: one host, opened read-write
mkdesc "$D/flat2.vmdk" partitionedDevice 'RW 2048 FLAT "disk.bin" 2048' 'RW 2048 FLAT "disk-link.bin" 0'
rand_bytes new $((2 * MiB)) >"$T/new.raw"
assert_rc "FLAT lines on one file: convert -n into it" 0 "$VDISK" convert -q -n "$T/new.raw" "$D/flat2.vmdk"
assert_rc "FLAT lines on one file: reads back" 0 "$VDISK" compare "$T/new.raw" "$D/flat2.vmdk"
{ tail -c $MiB "$T/new.raw"; head -c $MiB "$T/new.raw"; } >"$T/disk.want"
cmp -s "$T/disk.want" "$D/disk.bin" && pass "FLAT lines on one file: the file holds both halves" || fail "FLAT lines on one file: file contents differ"

# ---------------------------------------------------------------- streamOptimized is write-once
S=$T/st
mkdir "$S"
truncate -s $((20 * MiB)) "$S/src.raw"
rand_bytes st1 $MiB | dd of="$S/src.raw" bs=64K seek=16 conv=notrunc status=none
if command -v mkfs.ext4 >/dev/null; then
	mkfs.ext4 -q -F -E offset=$MiB "$S/src.raw" 18M >/dev/null 2>&1 || true
fi
printf 'label: dos\nstart=2048, type=83\n' >"$S/mbr.script"
assert_rc "stream: convert" 0 "$VDISK" convert -q -O vmdk -o subformat=streamOptimized "$S/src.raw" "$S/s.vmdk"
sum0=$(sha256sum <"$S/s.vmdk")
for cmd in "zerofree" "check -r" "mbr --script $S/mbr.script" "convert -q -n $S/src.raw"; do
	rc=0
	# shellcheck disable=SC2086
	"$VDISK" $cmd "$S/s.vmdk" >"$T/.out" 2>"$T/.err" || rc=$?
	assert_eq "stream: $cmd fails" 1 "$((rc != 0 && rc < 128))"
	assert_contains "stream: $cmd: write-once message" "streamOptimized VMDK images are write-once; convert it to another subformat to change it" "$T/.err"
	assert_eq "stream: $cmd leaves the file byte-identical" "$sum0" "$(sha256sum <"$S/s.vmdk")"
done
assert_rc "stream: still checks clean" 0 "$VDISK" check "$S/s.vmdk"
assert_rc "stream: still reads the source" 0 "$VDISK" compare "$S/src.raw" "$S/s.vmdk"

# an empty stream from create is complete: qemu-img accepts it, it reads
# as zeros; a header-only stream (what create wrote before) is corrupt
assert_rc "empty stream: create" 0 "$VDISK" create -O vmdk -o subformat=streamOptimized "$S/e.vmdk" 8M
truncate -s 8M "$S/zero.raw"
assert_rc "empty stream: vdisk check" 0 "$VDISK" check "$S/e.vmdk"
assert_rc "empty stream: vdisk compare with 8M of zeros" 0 "$VDISK" compare "$S/zero.raw" "$S/e.vmdk"
if [ $HAVE_QEMU = 1 ]; then
	assert_rc "empty stream: qemu-img check" 0 qemu-img check -f vmdk "$S/e.vmdk"
	assert_rc "empty stream: qemu-img compare with 8M of zeros" 0 qemu-img compare -f raw -F vmdk "$S/zero.raw" "$S/e.vmdk"
fi
head -c 65536 "$S/e.vmdk" >"$S/hdr-only.vmdk"
assert_rc "header-only stream: check says corrupt" 2 "$VDISK" check "$S/hdr-only.vmdk"
assert_contains "header-only stream: message" "no grain directory, footer or end-of-stream marker" "$T/.out"
assert_rc "header-only stream: convert fails too" 1 "$VDISK" convert -q -O raw "$S/hdr-only.vmdk" "$S/h.raw"
sum1=$(sha256sum <"$S/e.vmdk")
assert_rc "empty stream: mbr --dry-run leaves it" 0 "$VDISK" mbr -n --script "$S/mbr.script" "$S/e.vmdk"
assert_eq "empty stream: unchanged" "$sum1" "$(sha256sum <"$S/e.vmdk")"

# ---------------------------------------------------------------- extents past the info keys
# compact must not turn the RDONLY 20th extent of 31 into RW
X=$T/many-ext
mkdir "$X"
assert_rc "31 extents: create twoGbMaxExtentSparse 60G" 0 "$VDISK" create -O vmdk -o subformat=twoGbMaxExtentSparse "$X/x.vmdk" 60G
sed -i '0,/^RW \(.*\)-s020.vmdk"/s//RDONLY \1-s020.vmdk"/' "$X/x.vmdk"
assert_eq "31 extents: the 20th is RDONLY" 1 "$(grep -c '^RDONLY .*-s020.vmdk"' "$X/x.vmdk")"
assert_rc "31 extents: info" 0 "$VDISK" info "$X/x.vmdk"
assert_contains "31 extents: info says the list is cut" "extents_listed: " "$T/.out"
assert_contains "31 extents: info lists the RDONLY one" 'extent19: RDONLY 4192256 SPARSE' "$T/.out"
sum2=$(cat "$X"/* | sha256sum)
for op in compact defrag; do
	assert_rc "31 extents: $op refuses" 1 "$VDISK" $op "$X/x.vmdk"
	assert_contains "31 extents: $op names the RDONLY extent" "extent 20 ($X/x-s020.vmdk) is RDONLY, not a plain read-write extent" "$T/.err"
	assert_eq "31 extents: $op leaves the files" "$sum2" "$(cat "$X"/* | sha256sum)"
done
rm -rf "$X"

# ---------------------------------------------------------------- umask
U=$T/umask
mkdir "$U"
for sub in monolithicSparse streamOptimized twoGbMaxExtentFlat; do
	(umask 077 && "$VDISK" create -O vmdk -o subformat=$sub "$U/$sub.vmdk" 8M) || fail "umask 077: create $sub"
	for f in "$U/$sub"*.vmdk; do
		assert_eq "umask 077: $sub: $(basename "$f") is 600" 600 "$(stat -c %a "$f")"
	done
done
rand_bytes u1 $MiB >"$U/src.raw"
(umask 027 && "$VDISK" convert -q -O vmdk "$U/src.raw" "$U/c.vmdk") || fail "umask 027: convert"
assert_eq "umask 027: convert output is 640" 640 "$(stat -c %a "$U/c.vmdk")"
(umask 022 && "$VDISK" create -O vdi "$U/d.vdi" 8M) || fail "umask 022: create vdi"
assert_eq "umask 022: vdi is 644" 644 "$(stat -c %a "$U/d.vdi")"


# ---- footer-GD extent (make fuzz): an uncompressed sparse extent whose
# grain directory is in a footer cannot be written in place (a new grain
# would overwrite the footer), and check finds its grain over the metadata
F=$T/footer.vmdk
cp "$TESTDATA/vmdk-footer-gd-overlap.vmdk" "$F"
fsum=$(sha256sum "$F" | cut -d' ' -f1)
assert_rc "footer-GD extent: check finds the corruption" 2 "$VDISK" check "$F"
assert_contains "footer-GD extent: check names the overlap" "points to sector 1, which overlaps the extent's metadata" "$T/.out"
for cmd in "check -r" "zerofree" "mbr --script $T/footer-mbr.txt"; do
	echo 'type=83' >"$T/footer-mbr.txt"
	# shellcheck disable=SC2086
	assert_rc "footer-GD extent: $cmd refused" 1 "$VDISK" $cmd "$F"
	assert_contains "footer-GD extent: $cmd says why" "cannot be changed in place" "$T/.err"
done
assert_rc "footer-GD extent: convert -n refused" 1 "$VDISK" convert -n -O vmdk "$F" "$F"
assert_eq "footer-GD extent: file unchanged" "$fsum" "$(sha256sum "$F" | cut -d' ' -f1)"

finish
