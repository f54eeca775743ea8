#!/usr/bin/env bash
# Progress output (forced with -p, captured from stderr) of compact and
# zerofree: the total never decreases from one progress line to the next
# and the last line shows the whole total; a progress line is ended with a
# newline before a report line is printed (zerofree prints a report per
# filesystem while it runs: with stdout line-buffered, as on a terminal,
# the report must start on a line of its own).
. "$(dirname "$0")/../lib.sh"
need jq mkfs.ext4 debugfs stdbuf openssl
MiB=$((1 << 20))

# progress_lines FILE: "percent done_bytes total_bytes" per progress line
progress_lines() {
	tr '\r' '\n' <"$1" | awk '
	function bytes(n, u) {
		if (u == "B") return n; if (u == "KiB") return n * 1024; if (u == "MiB") return n * 1048576
		if (u == "GiB") return n * 1073741824; return n * 1099511627776 }
	/^ *\( *[0-9.]+%\) / {
		l = $0; sub(/^ *\( */, "", l); split(l, a, /[%) ,]+/)
		# a[1] percent, a[2] a[3] done, a[4] "of", a[5] a[6] total
		printf "%s %.0f %.0f\n", a[1], bytes(a[2], a[3]), bytes(a[5], a[6]) }'
}
# check_totals WHAT FILE
check_totals() {
	local n
	progress_lines "$2" >"$T/pl.txt"
	n=$(wc -l <"$T/pl.txt")
	[ "$n" -ge 2 ] && pass "$1: $n progress lines" || fail "$1: only $n progress lines in $(head -c 300 "$2")"
	assert_eq "$1: the total never decreases" "" \
		"$(awk 'NR > 1 && $3 < t { print "line " NR ": total " $3 " after " t } { t = $3 }' "$T/pl.txt")"
	assert_eq "$1: done never decreases" "" \
		"$(awk 'NR > 1 && $2 < d { print "line " NR ": done " $2 " after " d } { d = $2 }' "$T/pl.txt")"
	assert_eq "$1: the last line is 100%" "100.0" "$(tail -1 "$T/pl.txt" | cut -d' ' -f1)"
	assert_eq "$1: stderr ends with a newline" "0a" "$(tail -c 1 "$2" | od -An -tx1 | tr -d ' ')"
}

# ---- compact of a dynamic VDI with zero blocks: the planned copy is
# smaller than the total announced at the start
rand_bytes prog $((24 * MiB)) >"$T/d.raw"
for i in 2 3 4 8 12 13 20; do dd if=/dev/zero of="$T/d.raw" bs=1M seek=$i count=1 conv=notrunc status=none; done
"$VDISK" convert -O vdi -S 0 "$T/d.raw" "$T/d.vdi"
"$VDISK" compact -p "$T/d.vdi" >"$T/c.out" 2>"$T/c.err" || fail "compact -p: $(cat "$T/c.err")"
assert_contains "compact -p: 7 zero blocks dropped" "7 dropped as zeros" "$T/c.out"
check_totals "compact -p (vdi)" "$T/c.err"

# ---- compact of a raw image in place
cp "$T/d.raw" "$T/r.raw"
"$VDISK" compact -p "$T/r.raw" >"$T/r.out" 2>"$T/r.err" || fail "compact -p raw: $(cat "$T/r.err")"
check_totals "compact -p (raw)" "$T/r.err"

# ---- zerofree of an ext4 VDI: the per-filesystem report is printed while
# it runs
mkdir -p "$T/root"
for i in 1 2 3 4; do rand_bytes "f$i" $((i * 700000)) >"$T/root/f$i"; done
truncate -s 48M "$T/e.raw"
mkfs.ext4 -q -F -d "$T/root" "$T/e.raw"
debugfs -w -R "rm f3" "$T/e.raw" >/dev/null 2>&1
"$VDISK" convert -O vdi "$T/e.raw" "$T/e.vdi"
cp "$T/e.vdi" "$T/e2.vdi"
# (stdbuf preloads a library: under ASan, let it come after the runtime)
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
	stdbuf -oL "$VDISK" zerofree -p "$T/e.vdi" >"$T/z.all" 2>&1 || fail "zerofree -p: $(cat "$T/z.all")"
assert_contains "zerofree -p: the report" "whole disk: ext4" "$T/z.all"
assert_eq "zerofree -p: no report line runs into a progress line" "" \
	"$(tr '\r' '\n' <"$T/z.all" | grep -E '%\).*(whole disk|release unit)')"
assert_eq "zerofree -p: the report starts a line" "1" \
	"$(grep -c '^whole disk: ext4' "$T/z.all")"
"$VDISK" zerofree -p "$T/e2.vdi" >/dev/null 2>"$T/z.err" || fail "zerofree -p (stderr alone)"
check_totals "zerofree -p" "$T/z.err"
finish
