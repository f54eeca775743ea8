#!/usr/bin/env bash
# VMDK without external images:
#   rejections of damaged sparse headers, tables and truncated files, each
#     with a message naming the field;
#   hostile descriptors (.., absolute paths, symlinks, device nodes) and
#     --allow-devices;
#   RDONLY / NOACCESS / ZERO extents and FLAT offsets;
#   the structure of streamOptimized output (python3);
#   adapter_type / hwversion / compat options, --deterministic;
#   in-place writes (convert -n) and check.
# qemu-img is used where installed (the parts that need it are skipped
# otherwise).
. "$(dirname "$0")/../lib.sh"
need python3 openssl cmp
HAVE_QEMU=0
command -v qemu-img >/dev/null && HAVE_QEMU=1

MiB=$((1 << 20))
GiB=$((1 << 30))

put() { # FILE OFFSET COUNT SEED|z
	local src
	if [ "$4" = z ]; then src="head -c $3 /dev/zero"; else src="rand_bytes $4 $3"; fi
	$src | dd of="$1" bs=64K seek="$2" oflag=seek_bytes iflag=fullblock conv=notrunc status=none
}
# pk FILE OFFSET STRUCTFMT VALUE: write a little-endian value
pk() {
	python3 -c 'import sys, struct
f = open(sys.argv[1], "r+b"); f.seek(int(sys.argv[2], 0)); f.write(struct.pack("<" + sys.argv[3], int(sys.argv[4], 0)))' "$@"
}
# rd FILE OFFSET STRUCTFMT: read a little-endian value
rd() {
	python3 -c 'import sys, struct
f = open(sys.argv[1], "rb"); f.seek(int(sys.argv[2], 0)); fmt = "<" + sys.argv[3]
print(struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0])' "$@"
}
# the descriptor text of a sparse file (embedded) or a text descriptor
desc_of() {
	if [ "$(head -c 4 "$1")" = KDMV ]; then
		tail -c +$(($(rd "$1" 28 Q) * 512 + 1)) "$1" | head -c $(($(rd "$1" 36 Q) * 512)) | tr -d '\0'
	else cat "$1"; fi
}

# reject WHAT NEEDLE FILE [vdisk args]: vdisk info fails cleanly, naming NEEDLE
reject() {
	local what=$1 needle=$2 file=$3 rc=0
	shift 3
	"$VDISK" info "$@" "$file" >"$T/.out" 2>"$T/.err" || rc=$?
	if [ "$rc" -ne 0 ] && [ "$rc" -lt 128 ]; then pass "$what: refused (exit $rc)"
	else fail "$what: vdisk info exit $rc ($(head -c 200 "$T/.out"))"; fi
	assert_contains "$what: message names $needle" "$needle" "$T/.err"
}

# ---------------------------------------------------------------- base image
# 4 MiB: random first MiB, one grain at 3 MiB
truncate -s $((4 * MiB)) "$T/src.raw"
put "$T/src.raw" 0 $MiB s1
put "$T/src.raw" $((3 * MiB)) 65536 s2
assert_rc "base: convert raw->monolithicSparse" 0 "$VDISK" convert -q -O vmdk "$T/src.raw" "$T/base.vmdk"
assert_rc "base: info" 0 "$VDISK" info "$T/base.vmdk"
assert_rc "base: check" 0 "$VDISK" check "$T/base.vmdk"
assert_rc "base: compare" 0 "$VDISK" compare "$T/src.raw" "$T/base.vmdk"
GD=$(rd "$T/base.vmdk" 56 Q)
RGD=$(rd "$T/base.vmdk" 48 Q)
OVERHEAD=$(rd "$T/base.vmdk" 64 Q)
GT0=$(rd "$T/base.vmdk" $((GD * 512)) I)
RGT0=$(rd "$T/base.vmdk" $((RGD * 512)) I)
echo "base: gd $GD rgd $RGD overhead $OVERHEAD gt0 $GT0 rgt0 $RGT0"
assert_eq "base: header version 1" 1 "$(rd "$T/base.vmdk" 4 I)"
assert_eq "base: grain 0 is allocated in the overhead-aligned data area" 1 \
	"$(( $(rd "$T/base.vmdk" $((GT0 * 512)) I) >= OVERHEAD ))"
assert_eq "base: grains aligned to 64 KiB in the file" 0 \
	"$(( $(rd "$T/base.vmdk" $((GT0 * 512)) I) % 128 ))"
assert_eq "base: embedded descriptor has room (>= 20 sectors)" 1 "$(( $(rd "$T/base.vmdk" 36 Q) >= 20 ))"

# variant NAME: a fresh copy of the base image
variant() { cp "$T/base.vmdk" "$T/$1.vmdk"; echo "$T/$1.vmdk"; }

f=$(variant magic); pk "$f" 0 I 0x12345678; reject "bad magic" "magic" "$f" -f vmdk
f=$(variant v4); pk "$f" 4 I 4; reject "version 4" "version" "$f"
for g in 3 7 $((1 << 20)) 0 256000; do
	f=$(variant grain$g); pk "$f" 20 Q $g; reject "grainSize $g" "grainSize" "$f"
done
for g in 0 100000; do
	f=$(variant gtes$g); pk "$f" 44 I $g; reject "numGTEsPerGT $g" "numGTEsPerGT" "$f"
done
f=$(variant cap40); pk "$f" 12 Q $((1 << 40)); reject "capacity 2^40 sectors" "capacity" "$f"
f=$(variant cap63); pk "$f" 12 Q 0x7fffffffffffffff; reject "capacity 2^63-1 sectors" "capacity" "$f"
f=$(variant gdoff); pk "$f" 56 Q 100000; reject "gdOffset past EOF" "gdOffset" "$f"
f=$(variant rgdoff); pk "$f" 48 Q 100000; reject "rgdOffset past EOF" "rgdOffset" "$f"
f=$(variant gdent); pk "$f" $((GD * 512)) I 0x7ffffff0; reject "GD entry past EOF" "grain table at sector" "$f"
f=$(variant nl); pk "$f" 75 B 0x0a; reject "newline check bytes damaged" "newline" "$f"
f=$(variant nl2); pk "$f" 73 B 0x0d; reject "newline check bytes damaged (CR)" "newline" "$f"
f=$(variant trunc1000); truncate -s 1000 "$f"; reject "truncated to 1000 bytes" "truncated" "$f"
f=$(variant truncoh); truncate -s $(((OVERHEAD - 1) * 512)) "$f"; reject "truncated to overHead-1 sectors" "truncated" "$f"
f=$(variant trunc1k); truncate -s 1024 "$f"; reject "truncated to 2 sectors" "truncated" "$f"
f=$(variant short); truncate -s 100 "$f"; reject "100-byte file" "short" "$f" -f vmdk

# a grain-table entry past EOF: info (which reads the tables) and check fail
f=$(variant gtent); pk "$f" $((GT0 * 512)) I 0x7ffffff0
reject "GT entry past EOF" "grain table" "$f"
assert_rc "GT entry past EOF: check exits 2" 2 "$VDISK" check "$f"
grep -q "entry 0" "$T/.out" "$T/.err" && pass "check message names entry 0" || fail "check message does not name entry 0: $(cat "$T/.out" "$T/.err" | head -c 300)"
assert_rc "GT entry past EOF: convert fails" 1 "$VDISK" convert -q -O raw "$f" "$T/gtent.raw"
[ -e "$T/gtent.raw" ] && fail "failed convert left its target" || pass "failed convert left no target"
# the redundant grain table differs from the primary (a writer stopped
# between the two updates): reads use the primary, so it is out-of-date
# metadata (exit 3, like a leak) that check -r repairs from the primary
f=$(variant rgt); pk "$f" $((RGT0 * 512)) I 0
assert_rc "redundant GT differs: info still works" 0 "$VDISK" info "$f"
assert_rc "redundant GT differs: check exits 3" 3 "$VDISK" check "$f"
grep -q "redundant grain table 0 differs from the primary in 1 entries" "$T/.out" "$T/.err" &&
	pass "check message names the redundant table and the entry count" ||
	fail "check message does not name the redundant table: $(cat "$T/.out" "$T/.err" | head -c 300)"
assert_rc "redundant GT differs: check -r exits 0" 0 "$VDISK" check -r "$f"
grep -q "entries copied from the primary" "$T/.out" && pass "check -r says what it copied" ||
	fail "check -r: $(head -c 300 "$T/.out")"
assert_rc "redundant GT differs: clean after check -r" 0 "$VDISK" check "$f"
assert_rc "redundant GT differs: same contents after check -r" 0 "$VDISK" compare "$T/base.vmdk" "$f"
f=$(variant rgd); pk "$f" $((RGD * 512)) I 0
assert_rc "redundant GD entry missing: check exits 3" 3 "$VDISK" check "$f"
size0=$(stat -c %s "$f")
assert_rc "redundant GD entry missing: check -r exits 0" 0 "$VDISK" check -r "$f"
assert_rc "redundant GD entry missing: clean after check -r" 0 "$VDISK" check "$f"
[ "$(stat -c %s "$f")" -gt "$size0" ] && pass "check -r appended a new redundant table" ||
	fail "check -r did not append a redundant table"
assert_rc "redundant GD entry missing: same contents after check -r" 0 "$VDISK" compare "$T/base.vmdk" "$f"
if command -v qemu-img >/dev/null; then
	assert_rc "redundant GD entry repaired: qemu-img check" 0 qemu-img check -q -f vmdk "$f"
fi

# ---------------------------------------------------------------- streamOptimized structure
# 1 GiB, mostly zero: random data in a few grains spread over several grain
# tables (32 MiB each), explicit zeros that must be left out, a partial
# grain at the end
S=$T/stream-src.raw
truncate -s $((GiB - 512 * 3)) "$S"
put "$S" 0 $MiB r1
put "$S" $((100 * MiB + 4096)) 512 r2
put "$S" $((512 * MiB)) $((2 * MiB)) z
put "$S" $((700 * MiB)) $((MiB / 2)) r3
put "$S" $((GiB - 512 * 3 - 1000)) 1000 r4
# compressible data too
yes vdisk | head -c $MiB | dd of="$S" bs=64K seek=$((300 * MiB)) oflag=seek_bytes conv=notrunc status=none
assert_rc "stream: convert raw->streamOptimized" 0 "$VDISK" convert -q -O vmdk -o subformat=streamOptimized "$S" "$T/st.vmdk"
sz=$(stat -c %s "$T/st.vmdk")
assert_eq "stream: zero grains left out (file $sz bytes < 3 MiB)" 1 "$((sz < 3 * MiB))"
cat >"$T/struct.py" <<'EOF'
import struct, sys, zlib
img, src = sys.argv[1], sys.argv[2]
f = open(img, "rb").read()
n = len(f)
def chk(name, exp, got): print("%s|%s|%s" % (name, exp, got))
magic, ver, flags, cap, grain, doff, dsize, gtes, rgd, gd, over = struct.unpack_from("<IIIQQQQIQQQ", f, 0)
chk("header magic", 0x564d444b, magic)
chk("header version (offset 4)", 3, ver)
chk("flags bit 16 (compressed)", 1, (flags >> 16) & 1)
chk("flags bit 17 (markers)", 1, (flags >> 17) & 1)
chk("header gdOffset (offset 56) is GD_AT_END", 0xffffffffffffffff, gd)
chk("compressAlgorithm", 1, struct.unpack_from("<H", f, 77)[0])
chk("newline bytes", b"\n \r\n", f[73:77])
chk("file size multiple of 512", 0, n % 512)
srcsize = len(open(src, "rb").read(0)) or __import__("os").path.getsize(src)
chk("capacity", (srcsize + 511) // 512, cap)
ns, sz, ty = struct.unpack_from("<QII", f, n - 1536)
chk("footer marker at end-1536: type", 3, ty)
chk("footer marker: size", 0, sz)
chk("footer marker: numSectors", 1, ns)
fmagic, fver, fflags, fcap, fgrain, fdoff, fdsize, fgtes, frgd, fgd, fover = struct.unpack_from("<IIIQQQQIQQQ", f, n - 1024)
chk("footer at end-1024: magic", 0x564d444b, fmagic)
chk("footer version", 3, fver)
chk("footer capacity", cap, fcap)
chk("footer grainSize", grain, fgrain)
chk("footer numGTEsPerGT", gtes, fgtes)
chk("footer flags", flags, fflags)
chk("footer gdOffset is real", True, 0 < fgd < n // 512)
chk("EOS marker in the last sector is all zero", True, f[n - 512:] == bytes(512))
gde = (cap + gtes * grain - 1) // (gtes * grain)
gdsec = (gde * 4 + 511) // 512
ns, sz, ty = struct.unpack_from("<QII", f, (fgd - 1) * 512)
chk("GD marker just before the GD: type", 2, ty)
chk("GD marker: size", 0, sz)
chk("GD marker: numSectors", gdsec, ns)
chk("GD ends before the footer marker", True, fgd + gdsec <= n // 512 - 3)
gdents = struct.unpack_from("<%dI" % gde, f, fgd * 512)
bad = []
grains_in_gts = {}
for i, e in enumerate(gdents):
    if e == 0:
        continue
    ns, sz, ty = struct.unpack_from("<QII", f, (e - 1) * 512)
    if ty != 1 or sz != 0 or ns != (gtes * 4 + 511) // 512:
        bad.append((i, e, ns, sz, ty))
        continue
    for j, g in enumerate(struct.unpack_from("<%dI" % gtes, f, e * 512)):
        if g:
            grains_in_gts[(i * gtes + j) * grain] = g
chk("every GD entry points right after a GT marker", [], bad)
chk("some grain tables", True, sum(1 for e in gdents if e) >= 3)
# walk the stream from overHead: grains in guest order, then GT markers,
# ending GD marker, footer marker, EOS
pos, lbas, markers, zero_grains, badz, where = over * 512, [], [], 0, 0, {}
gb = grain * 512
while pos < n:
    lba, size = struct.unpack_from("<QI", f, pos)
    if size == 0:
        ty = struct.unpack_from("<I", f, pos + 12)[0]
        markers.append(ty)
        pos += 512 + lba * 512
        if ty == 0:
            break
        continue
    try:
        data = zlib.decompress(f[pos + 12:pos + 12 + size])
        if data == bytes(len(data)):
            zero_grains += 1
        # the last, partial grain may be stored whole or cut at the capacity
        if len(data) not in (gb, min(gb, cap * 512 - lba * 512)):
            badz += 1
    except Exception:
        badz += 1
    lbas.append(lba)
    where[lba] = pos // 512
    pos += (12 + size + 511) // 512 * 512
chk("stream walk ends at the end of the file", n, pos)
chk("grains in increasing guest order", True, all(a < b for a, b in zip(lbas, lbas[1:])))
chk("grain LBAs are grain-aligned", True, all(l % grain == 0 for l in lbas))
chk("all grains inflate to a grain", 0, badz)
chk("no all-zero grains stored", 0, zero_grains)
chk("markers: GTs, then GD, footer, EOS", True,
    markers[-3:] == [2, 3, 0] and all(m == 1 for m in markers[:-3]) and len(markers) > 3)
chk("GT entries point at their grains", where, grains_in_gts)
# the grains stored are exactly the non-zero grains of the source
want = []
with open(src, "rb") as s:
    i = 0
    while True:
        b = s.read(gb)
        if not b:
            break
        if b.count(0) != len(b):
            want.append(i * grain)
        i += 1
chk("stored grains == non-zero source grains", want, lbas)
EOF
python3 "$T/struct.py" "$T/st.vmdk" "$S" >"$T/struct.out" 2>"$T/struct.err" || fail "structure script failed: $(tail -3 "$T/struct.err")"
while IFS='|' read -r name exp got; do
	if [ ${#exp} -gt 200 ]; then exp=$(echo "$exp" | md5sum) got=$(echo "$got" | md5sum); fi
	assert_eq "stream: $name" "$exp" "$got"
done <"$T/struct.out"
assert_eq "stream: structure checks ran" 1 "$(($(wc -l <"$T/struct.out") >= 30))"
assert_rc "stream: vdisk compare" 0 "$VDISK" compare "$S" "$T/st.vmdk"
assert_rc "stream: vdisk check" 0 "$VDISK" check "$T/st.vmdk"
assert_rc "stream: vdisk info" 0 "$VDISK" info "$T/st.vmdk"
assert_contains "stream: info subformat" "streamOptimized" "$T/.out"
if [ $HAVE_QEMU = 1 ]; then
	assert_rc "stream: qemu-img check" 0 qemu-img check -f vmdk "$T/st.vmdk"
	assert_rc "stream: qemu-img compare" 0 qemu-img compare -f raw -F vmdk "$S" "$T/st.vmdk"
fi
# writes into a stream are refused
assert_rc "stream: convert -n into it is refused" 1 "$VDISK" convert -q -n "$T/src.raw" "$T/st.vmdk"
assert_contains "stream: refusal says write-once" "write-once" "$T/.err"
# compressAlgorithm 2
cp "$T/st.vmdk" "$T/st-ca.vmdk"
pk "$T/st-ca.vmdk" 77 H 2
reject "stream: compressAlgorithm 2" "compressAlgorithm" "$T/st-ca.vmdk"
# the footer is damaged
cp "$T/st.vmdk" "$T/st-foot.vmdk"
pk "$T/st-foot.vmdk" $(($(stat -c %s "$T/st.vmdk") - 1024)) I 0
reject "stream: damaged footer" "footer" "$T/st-foot.vmdk"
rm -f "$S" "$T"/st-*.vmdk

# ---------------------------------------------------------------- --deterministic
for sub in monolithicSparse streamOptimized; do
	mkdir -p "$T/d1" "$T/d2" "$T/d3"
	for d in d1 d2; do
		"$VDISK" convert -q --deterministic -O vmdk -o subformat=$sub "$T/src.raw" "$T/$d/x.vmdk" ||
			fail "deterministic $sub: convert failed"
	done
	"$VDISK" convert -q -O vmdk -o subformat=$sub "$T/src.raw" "$T/d3/x.vmdk"
	if cmp -s "$T/d1/x.vmdk" "$T/d2/x.vmdk"; then pass "--deterministic $sub: byte-identical"
	else fail "--deterministic $sub: files differ: $(cmp "$T/d1/x.vmdk" "$T/d2/x.vmdk" 2>&1)"; fi
	if cmp -s "$T/d1/x.vmdk" "$T/d3/x.vmdk"; then fail "without --deterministic $sub: identical to the deterministic file"
	else pass "without --deterministic $sub: differs (random CID/UUIDs)"; fi
	rm -rf "$T/d1" "$T/d2" "$T/d3"
done

# ---------------------------------------------------------------- options
optdesc() { # OPTS SIZE -> descriptor text of a new monolithicSparse
	rm -f "$T/opt.vmdk"
	"$VDISK" create -O vmdk -o "$1" "$T/opt.vmdk" "$2" >/dev/null 2>"$T/opt.err" || { echo "CREATE FAILED: $(cat "$T/opt.err")"; return; }
	desc_of "$T/opt.vmdk"
}
ddb() { sed -n "s/^ddb\.$1 *= *\"\(.*\)\".*/\1/p"; }
D=$(optdesc subformat=monolithicSparse 100M)
assert_eq "default adapter" "ide" "$(ddb adapterType <<<"$D")"
assert_eq "default: 16 heads for ide" "16" "$(ddb geometry.heads <<<"$D")"
assert_eq "default: 63 sectors" "63" "$(ddb geometry.sectors <<<"$D")"
assert_eq "default: cylinders of 100 MiB" "$((100 * MiB / 512 / 16 / 63))" "$(ddb geometry.cylinders <<<"$D")"
assert_eq "createType monolithicSparse" 'createType="monolithicSparse"' "$(grep '^createType' <<<"$D")"
assert_eq "first line" "# Disk DescriptorFile" "$(head -1 <<<"$D")"
assert_eq "parentCID" "parentCID=ffffffff" "$(grep '^parentCID' <<<"$D")"
assert_eq "CID is 8 hex digits" 1 "$(grep -c '^CID=[0-9a-f]\{8\}$' <<<"$D")"
for k in uuid.image uuid.parent uuid.modification uuid.parentmodification; do
	assert_eq "ddb.$k is a UUID" 1 "$(ddb "$k" <<<"$D" | grep -c '^[0-9a-f]\{8\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{12\}$')"
done
for a in ide buslogic lsilogic legacyESX; do
	D=$(optdesc adapter_type=$a 100M)
	assert_eq "adapter_type=$a in the descriptor" "$a" "$(ddb adapterType <<<"$D")"
done
D=$(optdesc adapter_type=lsilogic 1G)
assert_eq "lsilogic: 255 heads" 255 "$(ddb geometry.heads <<<"$D")"
D=$(optdesc adapter_type=ide 20G)
assert_eq "ide: cylinders capped at 16383" 16383 "$(ddb geometry.cylinders <<<"$D")"
D=$(optdesc hwversion=11 100M)
assert_eq "hwversion=11" 11 "$(ddb virtualHWVersion <<<"$D")"
D=$(optdesc compat=esxi 1G)
assert_eq "compat=esxi: lsilogic" lsilogic "$(ddb adapterType <<<"$D")"
assert_eq "compat=esxi: hardware version >= 7" 1 "$(( $(ddb virtualHWVersion <<<"$D") >= 7 ))"
D=$(optdesc compat=workstation 1G)
assert_eq "compat=workstation: hardware version >= 7" 1 "$(( $(ddb virtualHWVersion <<<"$D" || echo 0) >= 7 ))"
for o in compat=virtualbox compat=virtualbox,adapter_type=lsilogic compat=virtualbox,adapter_type=buslogic; do
	D=$(optdesc "$o" 20G)
	h=$(ddb geometry.heads <<<"$D")
	assert_eq "$o: heads <= 16 (got '$h')" 1 "$(( ${h:-99} >= 1 && ${h:-99} <= 16 ))"
	s=$(ddb geometry.sectors <<<"$D")
	assert_eq "$o: sectors <= 63" 1 "$(( ${s:-99} >= 1 && ${s:-99} <= 63 ))"
done
D=$(optdesc compat=esxi,adapter_type=buslogic,hwversion=13 1G)
assert_eq "explicit adapter_type overrides the preset" buslogic "$(ddb adapterType <<<"$D")"
assert_eq "explicit hwversion overrides the preset" 13 "$(ddb virtualHWVersion <<<"$D")"
# options reach text descriptors too
rm -rf "$T/fl" && mkdir "$T/fl"
assert_rc "monolithicFlat with options" 0 "$VDISK" convert -q -O vmdk -o subformat=monolithicFlat,adapter_type=buslogic,hwversion=10 "$T/src.raw" "$T/fl/f.vmdk"
assert_eq "monolithicFlat descriptor: adapter" buslogic "$(ddb adapterType <"$T/fl/f.vmdk")"
assert_eq "monolithicFlat descriptor: hwversion" 10 "$(ddb virtualHWVersion <"$T/fl/f.vmdk")"
rm -rf "$T/fl"
# bad values are rejected, naming the option
for o in adapter_type=scsi adapter_type=IDE hwversion=abc hwversion=0 hwversion=-3 compat=hyperv subformat=vmfs,compat=virtualbox subformat=foo; do
	rm -f "$T/bad.vmdk"
	assert_rc "-o $o rejected" 1 "$VDISK" create -O vmdk -o "$o" "$T/bad.vmdk" 1M
	assert_contains "-o $o: message names ${o%%=*}" "${o%%=*}" "$T/.err"
	[ -e "$T/bad.vmdk" ] && fail "-o $o left a file" || pass "-o $o left no file"
done
assert_rc "-o nosuch=1 rejected" 1 "$VDISK" create -O vmdk -o nosuch=1 "$T/bad.vmdk" 1M
assert_contains "-o nosuch=1: message names it" "nosuch" "$T/.err"
assert_rc "size 0 rejected" 1 "$VDISK" create -O vmdk "$T/bad.vmdk" 0

# ---------------------------------------------------------------- in-place writes
# B: different data from src.raw, zeros where src had data
truncate -s $((4 * MiB)) "$T/b.raw"
put "$T/b.raw" $((MiB / 2)) $MiB b1
put "$T/b.raw" $((4 * MiB - 4096)) 4096 b2
for sub in monolithicSparse monolithicFlat twoGbMaxExtentSparse twoGbMaxExtentFlat; do
	d=$T/ip-$sub
	mkdir "$d"
	"$VDISK" convert -q -O vmdk -o subformat=$sub "$T/src.raw" "$d/x.vmdk" || fail "in-place $sub: convert failed"
	assert_rc "in-place $sub: convert -n" 0 "$VDISK" convert -q -n "$T/b.raw" "$d/x.vmdk"
	assert_rc "in-place $sub: vdisk compare with the new contents" 0 "$VDISK" compare "$T/b.raw" "$d/x.vmdk"
	assert_rc "in-place $sub: vdisk check" 0 "$VDISK" check "$d/x.vmdk"
	if [ $HAVE_QEMU = 1 ]; then
		assert_rc "in-place $sub: qemu-img check" 0 qemu-img check -f vmdk "$d/x.vmdk"
		assert_rc "in-place $sub: qemu-img compare" 0 qemu-img compare -f raw -F vmdk "$T/b.raw" "$d/x.vmdk"
	fi
	rm -rf "$d"
done
# in place across the split boundary of a twoGbMaxExtentSparse image, after create
if [ $HAVE_QEMU = 1 ]; then
	truncate -s $((2100 * MiB)) "$T/c.raw"
	put "$T/c.raw" $((4192256 * 512 - 70000)) 140000 c1
	mkdir "$T/ip2"
	assert_rc "create twoGbMaxExtentSparse 2100M" 0 "$VDISK" create -O vmdk -o subformat=twoGbMaxExtentSparse "$T/ip2/x.vmdk" $((2100 * MiB))
	assert_rc "write across the extent boundary (convert -n)" 0 "$VDISK" convert -q -n "$T/c.raw" "$T/ip2/x.vmdk"
	assert_rc "across the boundary: qemu-img compare" 0 qemu-img compare -f raw -F vmdk "$T/c.raw" "$T/ip2/x.vmdk"
	assert_rc "across the boundary: qemu-img check" 0 qemu-img check -f vmdk "$T/ip2/x.vmdk"
	rm -rf "$T/ip2" "$T/c.raw"
fi

# ---------------------------------------------------------------- RDONLY / NOACCESS / ZERO, FLAT offsets
E=$T/ext
mkdir "$E"
rand_bytes e1 $MiB >"$E/a.bin"
rand_bytes e2 $MiB >"$E/b.bin"
rand_bytes e3 $MiB >"$E/c.bin"
{ head -c $MiB /dev/zero; rand_bytes e4 $MiB; } >"$E/off.bin"
mkdesc() { # FILE createType extent-lines...
	local f=$1 ct=$2
	shift 2
	{ printf '# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType="%s"\n\n# Extent description\n' "$ct"
	  printf '%s\n' "$@"
	  printf '\n# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = "4"\nddb.adapterType = "ide"\n'; } >"$f"
}
mkdesc "$E/mix.vmdk" monolithicFlat 'RW 2048 FLAT "a.bin" 0' 'RDONLY 2048 FLAT "b.bin" 0' 'RW 2048 ZERO' 'RW 2048 FLAT "off.bin" 2048'
assert_rc "RDONLY/ZERO descriptor: info" 0 "$VDISK" info "$E/mix.vmdk"
assert_contains "info lists the RW extent" 'RW 2048 FLAT "a.bin"' "$T/.out"
assert_contains "info lists the RDONLY extent" 'RDONLY 2048 FLAT "b.bin"' "$T/.out"
assert_contains "info lists the ZERO extent" '2048 ZERO' "$T/.out"
assert_contains "info: virtual size" "$((4 * MiB)) bytes" "$T/.out"
assert_rc "RDONLY/ZERO descriptor: convert to raw" 0 "$VDISK" convert -q -O raw "$E/mix.vmdk" "$T/mix.raw"
{ cat "$E/a.bin" "$E/b.bin"; head -c $MiB /dev/zero; rand_bytes e4 $MiB; } >"$T/mix.want"
if cmp -s "$T/mix.want" "$T/mix.raw"; then pass "RW, RDONLY, ZERO and offset FLAT extents read back"
else fail "mixed extents read back wrong: $(cmp "$T/mix.want" "$T/mix.raw" 2>&1)"; fi
if [ $HAVE_QEMU = 1 ]; then
	# qemu-img drops RDONLY and ZERO extents: vdisk must not
	assert_eq "virtual size counts RDONLY and ZERO extents" $((4 * MiB)) "$("$VDISK" info --output=json "$E/mix.vmdk" | jq '."virtual-size"')"
fi
# writes into RDONLY (and ZERO) extents fail and leave the file alone
rand_bytes w1 $((3 * MiB)) >"$T/w.raw"
cp "$E/b.bin" "$T/b.orig"
rc=0; "$VDISK" convert -q -n "$T/w.raw" "$E/mix.vmdk" >"$T/.out" 2>"$T/.err" || rc=$?
assert_eq "write into the RDONLY extent fails" 1 "$rc"
assert_contains "the message says RDONLY" "RDONLY" "$T/.err"
cmp -s "$E/b.bin" "$T/b.orig" && pass "RDONLY extent file unchanged" || fail "RDONLY extent file was written"
mkdesc "$E/z.vmdk" monolithicFlat 'RW 2048 FLAT "a.bin" 0' 'RW 2048 ZERO'
rand_bytes w2 $((2 * MiB)) >"$T/w2.raw"
assert_rc "write into a ZERO extent fails" 1 "$VDISK" convert -q -n "$T/w2.raw" "$E/z.vmdk"
assert_contains "the message says ZERO" "ZERO" "$T/.err"
mkdesc "$E/na.vmdk" monolithicFlat 'RW 2048 FLAT "a.bin" 0' 'NOACCESS 2048 FLAT "c.bin" 0' 'RW 2048 ZERO'
assert_rc "NOACCESS descriptor: info" 0 "$VDISK" info "$E/na.vmdk"
assert_contains "info lists the NOACCESS extent" 'NOACCESS 2048 FLAT "c.bin"' "$T/.out"
assert_rc "reading the NOACCESS range fails" 1 "$VDISK" convert -q -O raw "$E/na.vmdk" "$T/na.raw"
assert_contains "the message says NOACCESS" "NOACCESS" "$T/.err"
[ -e "$T/na.raw" ] && fail "failed convert left na.raw" || pass "failed convert left no target"
# FLAT extent file too short for its sectors + offset
mkdesc "$E/short.vmdk" monolithicFlat 'RW 4096 FLAT "a.bin" 0'
reject "FLAT extent larger than its file" "a.bin" "$E/short.vmdk"
mkdesc "$E/short2.vmdk" monolithicFlat 'RW 2048 FLAT "a.bin" 1'
reject "FLAT extent offset past its file" "a.bin" "$E/short2.vmdk"
mkdesc "$E/missing.vmdk" monolithicFlat 'RW 2048 FLAT "nosuch.bin" 0'
reject "missing extent file" "nosuch.bin" "$E/missing.vmdk"
mkdesc "$E/vmfss.vmdk" vmfsSparse 'RW 2048 VMFSSPARSE "a.bin"'
reject "VMFSSPARSE extent over a file that is no COWD" "vmfsSparse" "$E/vmfss.vmdk"
mkdesc "$E/parent.vmdk" monolithicFlat 'RW 2048 FLAT "a.bin" 0'
sed -i 's/^parentCID=ffffffff/parentCID=0badcafe/' "$E/parent.vmdk"
# a delta whose parent is not there: info shows the link (with a warning),
# reading it fails naming what is missing
assert_rc "descriptor with a missing parent: info shows it" 0 "$VDISK" info "$E/parent.vmdk"
assert_contains "descriptor with a missing parent: info warns" "parent" "$T/.err"
rc=0; "$VDISK" convert -O raw "$E/parent.vmdk" "$E/p.raw" 2>"$T/.err" || rc=$?
assert_eq "descriptor with a missing parent: convert refused" 1 "$rc"
assert_contains "descriptor with a missing parent: the message says so" "parent" "$T/.err"

# ---------------------------------------------------------------- hostile descriptors
H=$T/hostile
mkdir "$H"
rand_bytes out1 $MiB >"$T/outside.bin"
cp "$T/outside.bin" "$H/inside.bin"
hostile() { # WHAT NAME
	mkdesc "$H/h.vmdk" monolithicFlat "RW 2048 FLAT \"$2\" 0"
	reject "$1" "--allow-devices" "$H/h.vmdk"
	assert_rc "$1: convert refused too" 1 "$VDISK" convert -q -O raw "$H/h.vmdk" "$T/h.raw"
	rm -f "$T/h.raw"
}
hostile "extent ../outside.bin" "../outside.bin"
hostile "extent sub/../../outside.bin" "sub/../../outside.bin"
mkdir "$H/sub"
hostile "extent ./sub/../../outside.bin" "./sub/../../outside.bin"
hostile "extent /etc/passwd" "/etc/passwd"
hostile "absolute path to a file" "$T/outside.bin"
ln -s "$T/outside.bin" "$H/link.bin"
hostile "symlink pointing outside" "link.bin"
ln -s ../outside.bin "$H/rel-link.bin"
hostile "relative symlink pointing outside" "rel-link.bin"
ln -s /dev/zero "$H/zero-link.bin"
hostile "symlink to /dev/zero" "zero-link.bin"
hostile "/dev/null" "/dev/null"
# a symlink inside the directory is fine
ln -s inside.bin "$H/in-link.bin"
mkdesc "$H/ok.vmdk" monolithicFlat 'RW 2048 FLAT "in-link.bin" 0'
assert_rc "symlink inside the directory: info" 0 "$VDISK" info "$H/ok.vmdk"
assert_rc "symlink inside the directory: compare" 0 "$VDISK" compare "$T/outside.bin" "$H/ok.vmdk"
# --allow-devices opens an absolute path
mkdesc "$H/abs.vmdk" monolithicFlat "RW 2048 FLAT \"$T/outside.bin\" 0"
assert_rc "absolute path with --allow-devices: info" 0 "$VDISK" info --allow-devices "$H/abs.vmdk"
assert_rc "absolute path with --allow-devices: compare" 0 "$VDISK" compare --allow-devices "$T/outside.bin" "$H/abs.vmdk"
assert_rc "absolute path with --allow-devices: convert" 0 "$VDISK" convert -q --allow-devices -O raw "$H/abs.vmdk" "$T/abs.raw"
cmp -s "$T/outside.bin" "$T/abs.raw" && pass "absolute path with --allow-devices: contents" || fail "absolute path with --allow-devices: contents differ"
mkdesc "$H/up.vmdk" monolithicFlat 'RW 2048 FLAT "../outside.bin" 0'
assert_rc "../ with --allow-devices: compare" 0 "$VDISK" compare --allow-devices "$T/outside.bin" "$H/up.vmdk"
# a block device: a loop device over a file, as a node in the directory and by path
if [ "$(id -u)" = 0 ] && command -v losetup >/dev/null && LOOP=$(losetup -f --show "$T/outside.bin" 2>/dev/null); then
	on_exit "losetup -d $LOOP"
	mkdesc "$H/dev.vmdk" fullDevice "RW 2048 FLAT \"$LOOP\" 0"
	reject "block device by path" "--allow-devices" "$H/dev.vmdk"
	assert_rc "block device with --allow-devices: compare" 0 "$VDISK" compare --allow-devices "$T/outside.bin" "$H/dev.vmdk"
	if mknod "$H/node.bin" b "$((0x$(stat -c %t "$LOOP")))" "$((0x$(stat -c %T "$LOOP")))" 2>/dev/null; then
		mkdesc "$H/node.vmdk" monolithicFlat 'RW 2048 FLAT "node.bin" 0'
		reject "block device node inside the directory" "--allow-devices" "$H/node.vmdk"
		assert_rc "device node with --allow-devices: compare" 0 "$VDISK" compare --allow-devices "$T/outside.bin" "$H/node.vmdk"
	else
		echo "(mknod not permitted: device node case skipped)"
	fi
else
	echo "(no loop device: block-device cases skipped)"
fi

# ---------------------------------------------------------------- check on good images
for sub in monolithicSparse monolithicFlat twoGbMaxExtentSparse twoGbMaxExtentFlat streamOptimized; do
	mkdir "$T/ck"
	"$VDISK" convert -q -O vmdk -o subformat=$sub "$T/src.raw" "$T/ck/x.vmdk"
	assert_rc "check $sub" 0 "$VDISK" check "$T/ck/x.vmdk"
	assert_rc "check --output=json $sub" 0 "$VDISK" check --output=json "$T/ck/x.vmdk"
	rm -rf "$T/ck"
done

finish
