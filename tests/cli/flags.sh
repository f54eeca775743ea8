#!/usr/bin/env bash
# One meaning per option letter (issue 19):
#  - across the --help option lists of all commands a letter goes with one
#    long option (or the variants vdisk(1) OPTIONS ACROSS COMMANDS names in
#    its item), a long option with one letter;
#  - that table agrees with --help: every letter some --help shows has an
#    item, and its "Commands:" are exactly the commands showing it;
#  - every former spelling the table lists is still accepted, is not shown
#    by --help, and does what the new spelling does (behavioural checks);
#  - compare and create take -p and -q, progress by default only on a
#    terminal, the last of -p/-q wins.
. "$(dirname "$0")/../lib.sh"
MAN=$TOP/man/vdisk.1

cmds=$("$VDISK" --help | awk '/^Commands:/ {f = 1; next} /^$/ {f = 0} f {print $1}')
[ -n "$cmds" ] || fail "vdisk --help lists no commands"

# ---- the option lines of every --help: "CMD LETTER LONG ARG" ('-' if none)
: >"$T/help.tab"
for c in $cmds; do
	"$VDISK" "$c" --help >"$T/h" 2>&1 || fail "$c --help fails"
	grep -E '^ +-' "$T/h" | sed -E 's/^ +//; s/  .*//' | while IFS= read -r l; do
		letter=$(sed -nE 's/^-([A-Za-z0-9])([ ,=]|$).*/\1/p' <<<"$l")
		long=$(grep -oE -- '--[a-z][a-z0-9-]*' <<<"$l" | head -1)
		arg=-
		[ -n "$long" ] && [ -n "$(sed -E "s/.*$long//" <<<"$l")" ] && arg=y
		[ -z "$long" ] && [ -n "$letter" ] && [ -n "$(sed -E "s/^-$letter//" <<<"$l")" ] && arg=y
		echo "$c ${letter:--} ${long:--} $arg"
	done >>"$T/help.tab"
done
[ -s "$T/help.tab" ] || fail "no option lines in any --help"

# ---- vdisk(1) OPTIONS ACROSS COMMANDS: "LETTER|LONGS|COMMANDS|FORMERLY"
awk '/^\.SH OPTIONS ACROSS COMMANDS/ {f = 1; next} /^\.SH/ {f = 0} f' "$MAN" |
	sed -E 's/\\-/-/g; s/\\f[BIRP]//g; s/\\\(lq|\\\(rq//g' | awk '
	function flush() { if (letter != "") print letter "|" longs "|" cmds "|" former; letter = "" }
	/^\.TP/ { flush(); tp = 1; next }
	tp { tp = 0; line = $0; longs = ""
		if (match(line, /(^|[^-])-[A-Za-z]([^A-Za-z-]|$)/)) {
			letter = substr(line, RSTART, RLENGTH); gsub(/[^A-Za-z-]/, "", letter); sub(/^-/, "", letter)
		}
		while (match(line, /--[a-z][a-z0-9-]*/)) { longs = longs " " substr(line, RSTART, RLENGTH); line = substr(line, RSTART + RLENGTH) }
		cmds = ""; former = ""; next }
	/^Commands:/ { s = $0; sub(/^Commands: */, "", s); gsub(/[,.]/, "", s); cmds = s; next }
	/^Formerly also:/ { s = $0; sub(/^Formerly also: */, "", s); former = s; next }
	END { flush() }' >"$T/man.tab"
[ "$(wc -l <"$T/man.tab")" -ge 10 ] || fail "vdisk(1) OPTIONS ACROSS COMMANDS: only $(wc -l <"$T/man.tab") items parsed"
row() { awk -F'|' -v l="$1" '$1 == l' "$T/man.tab"; }

# a letter: one long option, or the variants its table item names
for l in $(awk '$2 != "-" {print $2}' "$T/help.tab" | sort -u); do
	r=$(row "$l")
	if [ -z "$r" ]; then fail "-$l (in --help of $(awk -v l="$l" '$2 == l {printf "%s ", $1}' "$T/help.tab")) has no item in vdisk(1) OPTIONS ACROSS COMMANDS"; continue; fi
	longs=$(awk -v l="$l" '$2 == l && $3 != "-" {print $3}' "$T/help.tab" | sort -u | tr '\n' ' ')
	n=$(wc -w <<<"$longs")
	[ "$n" -le 1 ] && pass "-$l: one long option (${longs:-none})"
	for lo in $longs; do
		if grep -qw -- "$lo" <<<"$(cut -d'|' -f2 <<<"$r")"; then
			[ "$n" -gt 1 ] && pass "-$l as $lo: named in its vdisk(1) item"
		else
			fail "-$l goes with $lo in $(awk -v l="$l" -v o="$lo" '$2 == l && $3 == o {printf "%s ", $1}' "$T/help.tab")but vdisk(1) gives -$l as '$(cut -d'|' -f2 <<<"$r")'"
		fi
	done
	want=$(cut -d'|' -f3 <<<"$r" | tr ' ' '\n' | sed '/^$/d' | sort -u | tr '\n' ' ')
	got=$(awk -v l="$l" '$2 == l {print $1}' "$T/help.tab" | sort -u | tr '\n' ' ')
	assert_eq "-$l: the commands vdisk(1) names are those whose --help shows it" "$want" "$got"
done
# every item of the table is some command's letter
for l in $(cut -d'|' -f1 "$T/man.tab"); do
	grep -qE "^[a-z]+ $l " "$T/help.tab" || fail "vdisk(1) has an item -$l that no --help shows"
done
# a long option: at most one letter
for lo in $(awk '$3 != "-" {print $3}' "$T/help.tab" | sort -u); do
	ls=$(awk -v o="$lo" '$3 == o && $2 != "-" {print $2}' "$T/help.tab" | sort -u | tr '\n' ' ')
	[ "$(wc -w <<<"$ls")" -le 1 ] && pass "$lo: one letter (${ls:-none})" ||
		fail "$lo goes with the letters $ls"
done

# ---- former spellings: accepted (before --help), not shown, listed
sample() { case $1 in --part) echo 1=x ;; --sectors) echo 32 ;; --adapter) echo ide ;;
	--target-format) echo vdi ;; *) echo 1 ;; esac; }
nformer=0
while IFS='|' read -r l _ _ former; do
	[ -n "$former" ] || continue
	while read -r c old new; do
		[ -n "$c" ] || continue
		nformer=$((nformer + 1))
		h=$(awk -v c="$c" -v o="$new" '$1 == c && $3 == o' "$T/help.tab")
		if [ -z "$h" ]; then fail "vdisk(1) -$l: $c $old is now $new, which $c --help does not show"; continue; fi
		if [ "${old#--}" != "$old" ]; then
			shown=$(awk -v c="$c" -v o="$old" '$1 == c && $3 == o' "$T/help.tab")
		else
			shown=$(awk -v c="$c" -v l="${old#-}" '$1 == c && $2 == l' "$T/help.tab")
		fi
		assert_eq "$c --help does not show the former $old" "" "$shown"
		set -- "$old"
		[ "$(awk '{print $4}' <<<"$h")" = y ] && set -- "$old" "$(sample "$new")"
		assert_rc "$c still accepts $* (as $new)" 0 "$VDISK" "$c" "$@" --help
	done < <(sed -E 's/ *; */\n/g' <<<"$former" | sed -nE 's/^([a-z]+) (-[A-Za-z]|--[a-z-]+) \(now (--[a-z-]+)\)\.?$/\1 \2 \3/p')
done <"$T/man.tab"
[ "$nformer" -ge 10 ] && pass "vdisk(1) lists $nformer former spellings" ||
	fail "vdisk(1) lists only $nformer former spellings"

# ---- the former spellings do what the new ones do
same() { # WHAT FILE1 FILE2
	cmp -s "$2" "$3" && pass "$1" || fail "$1: $(basename "$2") and $(basename "$3") differ"
}
printf 'label: dos\nlabel-id: 0x0badcafe\nstart=2048, size=2048, type=83\n' >"$T/s.sfdisk"
rand_bytes p1 300000 >"$T/p1.img"
# create: -s = --script, -P = --part, -f = -O = --format
"$VDISK" create -O vdi --deterministic --script "$T/s.sfdisk" --part 1="$T/p1.img" "$T/new.vdi" 4M >/dev/null ||
	fail "create --script --part"
"$VDISK" create -O vdi --deterministic -s "$T/s.sfdisk" -P 1="$T/p1.img" "$T/old.vdi" 4M >/dev/null ||
	fail "create -s -P"
same "create -s -P: the image --script --part makes" "$T/new.vdi" "$T/old.vdi"
"$VDISK" create -f vdi --deterministic -s "$T/s.sfdisk" -P 1="$T/p1.img" "$T/f.vdi" 4M >/dev/null ||
	fail "create -f vdi"
same "create -f: the image -O makes" "$T/new.vdi" "$T/f.vdi"
"$VDISK" create --format vdi --deterministic "$T/fl.vdi" 4M && "$VDISK" create -O vdi --deterministic "$T/Ol.vdi" 4M ||
	fail "create --format / -O"
same "create --format: the image -O makes" "$T/fl.vdi" "$T/Ol.vdi"
# convert: --format = --target-format = -O
truncate -s 4M "$T/src.raw"
dd if="$T/p1.img" of="$T/src.raw" bs=64k seek=3 conv=notrunc status=none
for o in -O --target-format --format; do
	"$VDISK" convert "$o" vdi --deterministic "$T/src.raw" "$T/conv$o.vdi" || fail "convert $o vdi"
done
assert_eq "convert --target-format vdi makes a VDI" vdi "$("$VDISK" info --output=json "$T/conv--target-format.vdi" | jq -r .format 2>/dev/null)"
same "convert --format (former): the image --target-format makes" "$T/conv--target-format.vdi" "$T/conv--format.vdi"
same "convert -O: the image --target-format makes" "$T/conv--target-format.vdi" "$T/conv-O.vdi"
# mbr: -s = --script, -n = --dry-run
for i in new old dry dryold; do truncate -s 4M "$T/mbr-$i.img"; done
"$VDISK" mbr --script "$T/s.sfdisk" "$T/mbr-new.img" >/dev/null || fail "mbr --script"
"$VDISK" mbr -s "$T/s.sfdisk" "$T/mbr-old.img" >/dev/null || fail "mbr -s"
same "mbr -s: the table --script writes" "$T/mbr-new.img" "$T/mbr-old.img"
"$VDISK" mbr --dry-run --script "$T/s.sfdisk" "$T/mbr-dry.img" >"$T/dry.out" || fail "mbr --dry-run"
"$VDISK" mbr -n -s "$T/s.sfdisk" "$T/mbr-dryold.img" >"$T/dryold.out" || fail "mbr -n"
assert_eq "mbr -n: the output of --dry-run" "$(sed 's/mbr-dry\.img/X/g' "$T/dry.out")" "$(sed 's/mbr-dryold\.img/X/g' "$T/dryold.out")"
assert_contains "mbr -n prints the table" "label-id: 0x0badcafe" "$T/dryold.out"
assert_eq "mbr -n writes nothing" "" "$(tr -d '\0' <"$T/mbr-dryold.img" | head -c 1)"
# geometry: -S = --sectors
"$VDISK" geometry --output=json --sectors 32 1G >"$T/g-new.json" || fail "geometry --sectors 32"
"$VDISK" geometry --output=json -S 32 1G >"$T/g-old.json" || fail "geometry -S 32"
same "geometry -S 32: the output of --sectors 32" "$T/g-new.json" "$T/g-old.json"
"$VDISK" geometry --output=json 1G >"$T/g-def.json"
cmp -s "$T/g-new.json" "$T/g-def.json" && fail "geometry --sectors 32 changes nothing" ||
	pass "geometry --sectors 32 changes the geometry"
# zerofree: -n = --dry-run, -P = --partition
if command -v mkfs.ext2 >/dev/null; then
	truncate -s 2M "$T/fs.img" && mkfs.ext2 -q -F "$T/fs.img"
	dd if="$T/p1.img" of="$T/fs.img" bs=64k seek=20 count=4 conv=notrunc status=none # junk, in free space
	# the same filesystem in partitions 1 and 2 (1 MiB and 3 MiB into the disk)
	printf 'label: dos\nstart=2048, size=4096, type=83\nstart=6144, size=4096, type=83\n' >"$T/z.sfdisk"
	"$VDISK" create -O raw -s "$T/z.sfdisk" -P 1="$T/fs.img" -P 2="$T/fs.img" "$T/z.img" 8M >/dev/null ||
		fail "create z.img"
	junk() { dd if="$T/z.img" bs=64k skip=$(($1 * 16 + 20)) count=4 status=none | tr -d '\0' | wc -c; }
	[ "$(junk 1)" -gt 0 ] && [ "$(junk 3)" -gt 0 ] && pass "junk in the free space of partitions 1 and 2" ||
		fail "no junk in the free space to zero"
	before=$(sha1sum <"$T/z.img")
	"$VDISK" zerofree --dry-run --partition 1 --output=json "$T/z.img" >"$T/zf-new.json" 2>"$T/zf.err" ||
		fail "zerofree --dry-run --partition 1: $(cat "$T/zf.err")"
	"$VDISK" zerofree -n -P 1 --output=json "$T/z.img" >"$T/zf-old.json" 2>&1 || fail "zerofree -n -P 1"
	same "zerofree -n -P 1: the report of --dry-run --partition 1" "$T/zf-new.json" "$T/zf-old.json"
	assert_eq "zerofree -n changes nothing" "$before" "$(sha1sum <"$T/z.img")"
	"$VDISK" zerofree -P 1 "$T/z.img" >/dev/null 2>&1 || fail "zerofree -P 1"
	assert_eq "zerofree -P 1: the free space of partition 1 is zero" 0 "$(junk 1)"
	[ "$(junk 3)" -gt 0 ] && pass "zerofree -P 1: partition 2 left alone" || fail "zerofree -P 1 zeroed partition 2"
	rc=0; "$VDISK" zerofree -P 0 "$T/z.img" >/dev/null 2>"$T/.err" || rc=$?
	if [ "$rc" != 0 ]; then assert_contains "zerofree -P 0 refused, naming --partition" "--partition" "$T/.err"
	else fail "zerofree -P 0 accepted"; fi
else
	echo "SKIP (part): zerofree aliases need mkfs.ext2"
fi
# (rawvmdk's -r, -a, --partitions need a loop device: tests/cli/rawvmdk.sh)

# ---- progress of compare and create: -p forces it, -q silences it, the
# last wins, by default only on a terminal
progress_lines() { tr '\r' '\n' <"$1" | grep -cE '%\) [0-9.]+ [KMGTPE]?i?B of ' || true; }
truncate -s 64M "$T/big.raw"
dd if="$T/p1.img" of="$T/big.raw" bs=1M seek=40 conv=notrunc status=none
"$VDISK" convert -q -O vdi "$T/big.raw" "$T/big.vdi"
pr() { "$VDISK" "$@" >/dev/null 2>"$T/pr.err"; progress_lines "$T/pr.err"; }
assert_eq "compare: no progress on a pipe" 0 "$(pr compare "$T/big.raw" "$T/big.vdi")"
[ "$(pr compare -p "$T/big.raw" "$T/big.vdi")" -gt 0 ] && pass "compare -p: progress" || fail "compare -p: no progress"
assert_eq "compare -p -q: none (last wins)" 0 "$(pr compare -p -q "$T/big.raw" "$T/big.vdi")"
[ "$(pr compare -q --progress "$T/big.raw" "$T/big.vdi")" -gt 0 ] && pass "compare -q --progress: progress (last wins)" ||
	fail "compare -q --progress: no progress"
assert_rc "compare -q: still compares (identical)" 0 "$VDISK" compare -q "$T/big.raw" "$T/big.vdi"
printf 'label: dos\nstart=2048, type=83, file=%s\n' "$T/big.raw" >"$T/big.sfdisk"
assert_eq "create --script: no progress on a pipe" 0 "$(pr create -O raw --script "$T/big.sfdisk" "$T/c1.img")"
[ "$(pr create -p -O raw --script "$T/big.sfdisk" "$T/c2.img")" -gt 0 ] && pass "create -p: progress" || fail "create -p: no progress"
assert_eq "create -p -q: none (last wins)" 0 "$(pr create -p -q -O raw --script "$T/big.sfdisk" "$T/c3.img")"
assert_rc "create -q makes a plain image too" 0 "$VDISK" create -q -O vdi "$T/q.vdi" 1M
if command -v script >/dev/null && script -qec true /dev/null >/dev/null 2>&1; then
	tty() { script -qec "$*" /dev/null >"$T/pr.tty" 2>&1; progress_lines "$T/pr.tty"; }
	[ "$(tty "$VDISK" compare "$T/big.raw" "$T/big.vdi")" -gt 0 ] && pass "compare on a terminal: progress by default" ||
		fail "compare on a terminal: no progress"
	assert_eq "compare -q on a terminal: none" 0 "$(tty "$VDISK" compare -q "$T/big.raw" "$T/big.vdi")"
	assert_eq "compare --quiet on a terminal: none" 0 "$(tty "$VDISK" compare --quiet "$T/big.raw" "$T/big.vdi")"
	[ "$(tty "$VDISK" create -O raw --script "$T/big.sfdisk" "$T/c4.img")" -gt 0 ] &&
		pass "create on a terminal: progress by default" || fail "create on a terminal: no progress"
	assert_eq "create -q on a terminal: none" 0 "$(tty "$VDISK" create -q -O raw --script "$T/big.sfdisk" "$T/c5.img")"
else
	echo "SKIP (part): no script(1) for a pseudo-terminal"
fi
finish
