#!/usr/bin/env bash
# ESXi seSparse deltas (read only), made by tests/helpers/mksesparse from
# the published layout (no seSparse sample exists in the shared collection,
# and qemu cannot write one) on top of a qemu-img VMDK parent:
#   vdisk reads the chain byte for byte as qemu-img does and as the layout
#   says (data grains stored out of order, two grain tables numbered out of
#   order, zeroed and unmapped grains read as zeros, the rest from the
#   parent); info --backing-chain, map depths, check, compare;
#   convert -B PARENT writes the differences as a new (sparse VMDK) child
#   that qemu-img reads the same; writers (commit, zerofree, compact,
#   convert -n into it) refuse it with a message naming seSparse;
#   damaged extents (directory entry, table entry type, grain past the
#   file, a journal to replay, header fields) are refused naming the field.
. "$(dirname "$0")/../lib.sh"
need qemu-img jq
BUILD=${BUILD:-$(dirname "$VDISK")}
MKSE=$BUILD/tests/helpers/mksesparse
[ -x "$MKSE" ] || skip "no $MKSE (make unit-tests builds it)"
KiB=1024 MiB=$((1 << 20))
cd "$T"

rand_bytes sesparse $((40 * MiB)) >base.raw
qemu-img convert -O vmdk base.raw base.vmdk
cid=$(head -c 4096 base.vmdk | tr -d '\0' | sed -n 's/^CID=//p')
# grains: 0 and 5 data, 6 zeroed, 7 unmapped, 8 and 9 data (adjacent),
# 4097 (the second grain table) data
"$MKSE" child.vmdk child-sesparse.vmdk --size $((40 * MiB)) --parent-cid "$cid" --hint base.vmdk \
	--data 0=0x11 --data 5=0x22 --zero 6 --unmap 7 --data 8=0x44 --data 9=0x55 --data 4097=0x33 ||
	fail "mksesparse"
# what the layout says the guest sees
cp base.raw exp.raw
# a data grain as mksesparse writes it: the byte, "grain N" and a NUL first
fillgrain() { head -c 4096 /dev/zero | tr '\0' "\\$(printf %o "$2")" | dd of=exp.raw bs=4096 seek="$1" conv=notrunc status=none; }
for g in 0:17 5:34 8:68 9:85 4097:51; do
	n=${g%%:*} b=${g#*:}
	fillgrain "$n" "$b"
	printf 'grain %s\0' "$n" | dd of=exp.raw bs=1 seek=$((n * 4096)) conv=notrunc status=none
done
dd if=/dev/zero of=exp.raw bs=4096 seek=6 count=2 conv=notrunc status=none

assert_rc "qemu-img reads the child" 0 qemu-img convert -O raw child.vmdk q.raw
if cmp -s q.raw exp.raw; then pass "qemu-img's view is the layout's"; else fail "qemu-img's view differs from the layout (helper or reading wrong)"; fi
assert_rc "vdisk convert -O raw" 0 "$VDISK" convert -q -O raw child.vmdk v.raw
if cmp -s v.raw exp.raw; then pass "vdisk reads the seSparse chain byte for byte"; else fail "vdisk's view differs: $(cmp v.raw exp.raw | head -1)"; fi
assert_rc "vdisk compare with qemu-img's raw" 0 "$VDISK" compare child.vmdk q.raw
assert_rc "vdisk check" 0 "$VDISK" check child.vmdk
assert_rc "info --backing-chain --output=json" 0 "$VDISK" info --backing-chain --output=json child.vmdk
assert_eq "two layers" 2 "$(jq length "$T/.out")"
assert_eq "the child's format" '"vmdk"' "$(jq -c '.[0].format' "$T/.out")"
assert_eq "the parent named" '"base.vmdk"' "$(jq -c '.[0]."backing-filename"' "$T/.out")"
assert_rc "info shows the SESPARSE extent" 0 "$VDISK" info child.vmdk
assert_contains "the extent line" 'SESPARSE "child-sesparse.vmdk"' "$T/.out"
# map: depth 0 for the child's grains (data and zeros), 1 for the parent's;
# grains 8 and 9 are stored in reverse, so they are two extents
assert_rc "map --output=json" 0 "$VDISK" map --output=json child.vmdk
m=$(jq -r '.[] | "\(.start) \(.length) \(.depth) \(.zero)"' "$T/.out" | head -8 | tr '\n' ';')
assert_eq "map: grains and depths" "0 4096 0 false;4096 16384 1 false;20480 4096 0 false;24576 8192 0 true;32768 4096 0 false;36864 4096 0 false;40960 16740352 1 false;16781312 4096 0 false;" "$m"

# convert -B: the differences as a new child, which qemu-img reads the same
assert_rc "convert -B base.vmdk" 0 "$VDISK" convert -q -O vmdk -B base.vmdk child.vmdk diff.vmdk
assert_rc "the new child: qemu-img compare" 0 qemu-img compare -q exp.raw diff.vmdk
small=$(stat -c %s diff.vmdk)
if [ "$small" -lt $((2 * MiB)) ]; then pass "the new child holds the differences only ($small bytes)"
else fail "the new child is $small bytes"; fi

# writers refuse it
for cmd in "commit child.vmdk" "zerofree child.vmdk" "compact child.vmdk" "convert -q -n base.raw child.vmdk"; do
	# shellcheck disable=SC2086
	assert_rc "$cmd refused" 1 "$VDISK" $cmd
	assert_contains "$cmd: says seSparse" "seSparse" "$T/.err"
done
if cmp -s <("$VDISK" convert -q -O raw child.vmdk - 2>/dev/null) exp.raw; then pass "the child is unchanged"
else fail "a refused writer changed the child"; fi

# damaged extents
poke() { printf "$2" | dd of=bad-sesparse.vmdk bs=1 seek="$1" conv=notrunc status=none; }
damaged() { # WHAT NEEDLE OFFSET BYTES
	cp child-sesparse.vmdk bad-sesparse.vmdk
	sed 's/child-sesparse.vmdk/bad-sesparse.vmdk/' child.vmdk >bad.vmdk
	poke "$3" "$4"
	assert_rc "$1: refused" 1 "$VDISK" convert -q -O raw bad.vmdk bad.raw
	assert_contains "$1: message" "$2" "$T/.err"
	[ -e bad.raw ] && { fail "$1: output left"; rm -f bad.raw; } || true
}
le64() { local v=$1 s= i; for i in 0 1 2 3 4 5 6 7; do s+=$(printf '\\x%02x' $(((v >> (8 * i)) & 255))); done; printf '%s' "$s"; }
damaged "magic" "magic is 0x" 0 '\x00'
damaged "version" "version (offset 8)" 8 "$(le64 0x100000001)"
damaged "grain size" "grain size (offset 24)" 24 "$(le64 16)"
damaged "grain table size" "grain table size (offset 32)" 32 "$(le64 128)"
damaged "flags" "flags (offset 40)" 40 "$(le64 1)"
damaged "reserved" "reserved field 2 (offset 56)" 56 "$(le64 7)"
damaged "capacity below the descriptor's" "capacity (offset 16)" 16 "$(le64 8)"
damaged "a journal to replay" "journal to replay" $((512 + 24)) "$(le64 1)"
damaged "volatile magic" "volatile header: magic" 512 '\x00'
damaged "grain directory outside the file" "grain directory (offset 128/136" 128 "$(le64 999999)"
gd=$((4 * 512))
damaged "directory entry without the allocated nibble" "grain directory: entry 0 is 0x2" $gd "$(le64 0x2000000000000000)"
damaged "directory entry past the tables" "not an allocated table" $gd "$(le64 0x1000000000000005)"
gt=$(($(od -A n -t u8 -j 144 -N 8 child-sesparse.vmdk) * 512))
gd0=$(($(od -A n -t u8 -j $gd -N 8 child-sesparse.vmdk) & 0xffffffff))
damaged "table entry of type 5" "(type 5 is not 0..3)" $((gt + gd0 * 64 * 512)) "$(le64 0x5000000000000000)"
damaged "grain past the file" "outside the grains and the file" $((gt + gd0 * 64 * 512)) "$(le64 0x3000000000009999)"
finish
