#!/usr/bin/env bash
# Overlapping partition entries (issue 12, defect 5): sfdisk refuses to
# write them, so the tables are made with sfdisk and then poked with
# printf | dd.  A stale entry over a live partition made zerofree release
# the live partition's data as the stale one's free space.
#   - two primaries; a primary over the extended partition and a logical;
#     two logicals (one over the next one's EBR): info and geometry list
#     every overlap, as text (and a warning) and in --output=json
#     ("overlap-count", "overlaps"), numbers and sectors of both sides
#   - zerofree refuses to walk every partition, naming both partitions
#     and their sectors; the image is byte-identical (sha256sum); with
#     --partition N only N is walked, with a warning naming the overlap
#   - compact --fs-aware refuses too; a clean table has no overlap
. "$(dirname "$0")/../lib.sh"
need sfdisk mkfs.ext4 jq sha256sum
cd "$T" || exit 1

sha() { sha256sum "$1" | cut -d' ' -f1; }
le32() { printf "\\x$(printf %02x $(($1 & 255)))\\x$(printf %02x $((($1 >> 8) & 255)))\\x$(printf %02x $((($1 >> 16) & 255)))\\x$(printf %02x $((($1 >> 24) & 255)))"; }
# poke32 FILE OFFSET VALUE
poke32() { le32 "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }
fsimg() { rm -f "$1"; truncate -s "$2" "$1"; mkfs.ext4 -q -F "$1" >/dev/null 2>&1 || fail "mkfs.ext4 $1"; }

# ---- two primaries: partition 2's entry moved back into partition 1 ----
truncate -s 64M p.img
printf 'label: dos\nlabel-id: 0x0c0ffee0\nstart=2048, size=32768, type=83\nstart=34816, size=32768, type=83\n' | sfdisk -q p.img
fsimg f1.img 16M
dd if=f1.img of=p.img bs=512 seek=2048 conv=notrunc,sparse status=none
fsimg f2.img 16M
dd if=f2.img of=p.img bs=512 seek=34816 conv=notrunc,sparse status=none
# a clean table first: no overlap anywhere
assert_eq "clean table: info overlap-count 0" 0 "$("$VDISK" info --output=json p.img | jq '."overlap-count"')"
assert_eq "clean table: geometry overlaps []" "[]" "$("$VDISK" geometry --output=json p.img | jq -c .overlaps)"
poke32 p.img $((446 + 16 + 8)) 20480       # partition 2 now starts at 20480
want='partition 2 (sectors 20480..53247) overlaps partition 1 (sectors 2048..34815)'
"$VDISK" info p.img >info.out 2>info.err || fail "info failed on overlapping partitions"
assert_contains "info lists the overlap" "$want" info.out
assert_contains "info warns about it" "warning: $want" info.err
"$VDISK" info --output=json p.img >info.json 2>/dev/null
assert_eq "info json: overlaps" '[1,[{"partition":2,"start":20480,"end":53247,"with":"partition","other":1,"other-start":2048,"other-end":34815}]]' \
	"$(jq -c '[."overlap-count", .overlaps]' info.json)"
assert_eq "info json: both partitions still listed" "[1,2]" "$(jq -c '[.partitions[].number]' info.json)"
"$VDISK" geometry p.img >geo.out 2>geo.err || fail "geometry failed on overlapping partitions"
assert_contains "geometry lists the overlap" "$want" geo.out
assert_contains "geometry warns about it" "warning: $want" geo.err
assert_eq "geometry json: overlaps" '[1,2,1]' \
	"$("$VDISK" geometry --output=json p.img | jq -c '[."overlap-count", .overlaps[0].partition, .overlaps[0].other]')"

before=$(sha p.img)
assert_rc "zerofree refuses overlapping partitions" 1 "$VDISK" zerofree -q p.img
assert_contains "the refusal names both partitions and their sectors" "$want" "$T/.err"
assert_contains "the refusal says how to go on" "--partition N" "$T/.err"
assert_eq "refused: image byte-identical" "$before" "$(sha p.img)"
assert_rc "zerofree -n refuses too" 1 "$VDISK" zerofree -q -n p.img
if command -v qemu-img >/dev/null; then
	qemu-img convert -O vdi p.img p.vdi
	vbefore=$(sha p.vdi)
	assert_rc "check: overlapping partitions are not image corruption" 0 "$VDISK" check p.vdi
	assert_contains "check notes the overlap" "Note: partition table: $want" "$T/.out"
	assert_eq "check json: the overlap is an info message" "info" \
		"$("$VDISK" check --output=json p.vdi | jq -r '.messages[] | select(.message | contains("overlaps")) | .kind')"
	assert_rc "compact --fs-aware refuses overlapping partitions" 1 "$VDISK" compact -q --fs-aware p.vdi
	assert_contains "compact names both partitions" "$want" "$T/.err"
	assert_eq "compact refused: VDI byte-identical" "$vbefore" "$(sha p.vdi)"
fi
# one partition named: only it is walked, with a warning
"$VDISK" zerofree -q -n --output=json --partition 1 p.img >z1.json 2>z1.err
assert_eq "--partition 1: walked alone" '[1,"ext4"]' "$(jq -c '[.walked, .filesystems[0].type]' z1.json)"
assert_contains "--partition 1: the warning names the overlap" "$want (only partition 1 is touched)" z1.err
assert_eq "--partition 1 -n: image byte-identical" "$before" "$(sha p.img)"
"$VDISK" zerofree -q --partition 1 p.img >/dev/null 2>z1.err || fail "--partition 1 failed: $(cat z1.err)"
assert_contains "--partition 1 (write): warning" "only partition 1 is touched" z1.err

# ---- extended partition and logicals ----
truncate -s 64M l.img
printf 'label: dos\nstart=2048, size=16384, type=83\nstart=18432, type=5\nstart=20480, size=16384, type=83\nstart=38912, size=16384, type=83\n' | sfdisk -q l.img
sfdisk -d l.img >l.dump 2>/dev/null
ebr6=$(($(sed -n 's/.*l.img6 : start= *\([0-9]*\),.*/\1/p' l.dump) - 2048))
assert_eq "clean extended table: no overlap" 0 "$("$VDISK" info --output=json l.img | jq '."overlap-count"')"
# primary 1 grown over the extended partition and logical 5
poke32 l.img $((446 + 12)) 20000
# logical 5 (its EBR at 18432, relative start 2048) grown over logical 6's EBR
poke32 l.img $((18432 * 512 + 446 + 12)) 18000
"$VDISK" info --output=json l.img >l.json 2>l.err || fail "info failed: $(cat l.err)"
assert_eq "primary over the extended partition" '{"partition":2,"start":18432,"end":131071,"with":"partition","other":1,"other-start":2048,"other-end":22047}' \
	"$(jq -c '.overlaps[] | select(.partition == 2)' l.json)"
assert_eq "primary over a logical" '{"partition":5,"start":20480,"end":38479,"with":"partition","other":1,"other-start":2048,"other-end":22047}' \
	"$(jq -c '.overlaps[] | select(.partition == 5 and .other == 1)' l.json)"
assert_eq "logical over the next EBR" '{"partition":5,"start":20480,"end":38479,"with":"ebr","other":6,"other-start":'"$ebr6"',"other-end":'"$ebr6"'}' \
	"$(jq -c '.overlaps[] | select(.with == "ebr" and .partition == 5)' l.json)"
assert_eq "primary over logical 5's EBR" '{"partition":1,"start":2048,"end":22047,"with":"ebr","other":5,"other-start":18432,"other-end":18432}' \
	"$(jq -c '.overlaps[] | select(.with == "ebr" and .partition == 1)' l.json)"
assert_eq "no overlap reported between the extended partition and its logicals" 0 \
	"$(jq '[.overlaps[] | select((.partition > 4 and .other == 2) or (.partition == 2 and .other > 4))] | length' l.json)"
# logical 6 grown back over logical 5: its relative start can not go
# back, so give logical 5 more sectors instead
poke32 l.img $((18432 * 512 + 446 + 12)) 30000
"$VDISK" geometry l.img >lg.out 2>/dev/null
assert_contains "geometry: logical over logical" 'partition 6 (sectors 38912..55295) overlaps partition 5 (sectors 20480..50479)' lg.out
lbefore=$(sha l.img)
assert_rc "zerofree refuses the logical overlaps" 1 "$VDISK" zerofree -q l.img
assert_contains "the refusal names the first overlap" "partition 1 (sectors 2048..22047) overlaps the EBR of partition 5 (sector 18432) (and more)" "$T/.err"
assert_eq "refused: image byte-identical" "$lbefore" "$(sha l.img)"
finish
