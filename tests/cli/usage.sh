#!/usr/bin/env bash
# Command-line surface: --help of every command, every documented option is
# accepted, bad usage fails with a message, unknown formats and -o options
# are named in the error, create/convert refuse to overwrite without
# --force, sizes with suffixes, no temporary files left behind.
. "$(dirname "$0")/../lib.sh"
need jq
MiB=$((1 << 20))

no_tmp_left() { # WHAT DIR
	local left
	left=$(find "$2" -maxdepth 1 -name '.*vdisk-tmp*' | head -3)
	assert_eq "$1: no temporary file left" "" "$left"
}
# fails WHAT NEEDLE CMD...: non-zero exit, stderr contains NEEDLE
fails() {
	local what=$1 needle=$2 rc=0; shift 2
	"$@" >"$T/.out" 2>"$T/.err" || rc=$?
	if [ "$rc" = 0 ]; then fail "$what: exit 0, expected failure"; return; fi
	if [ -n "$needle" ]; then assert_contains "$what (exit $rc)" "$needle" "$T/.err"
	else pass "$what (exit $rc)"; fi
}

# ---- --help: exit 0, usage line, every option mentioned
declare -A opts=(
	[info]="-f --format --output --allow-devices -h --help json"
	[convert]="-f --source-format -O --target-format -o -S --sparse-size -n --no-create --target-is-zero --force --deterministic --allow-devices -p --progress -q --quiet subformat block_size"
	[create]="-O --format -o --force --deterministic subformat block_size preallocation"
	[map]="-f --format --output --allow-devices json"
	[compare]="-f -F -s --strict --output -p --progress -q --quiet"
	[check]="-f --format -r --repair --output --allow-devices"
)
for c in info convert create map compare check; do
	assert_rc "$c --help exits 0" 0 "$VDISK" "$c" --help
	assert_contains "$c --help usage line" "Usage: vdisk $c" "$T/.out"
	for o in ${opts[$c]}; do
		if grep -qE -- "(^|[^[:alnum:]-])$o([^[:alnum:]_-]|$)" "$T/.out"; then pass "$c --help mentions $o"
		else fail "$c --help does not mention $o"; fi
	done
	assert_rc "$c -h exits 0" 0 "$VDISK" "$c" -h
	assert_rc "vdisk help $c exits 0" 0 "$VDISK" help "$c"
	assert_contains "vdisk help $c shows its usage" "Usage: vdisk $c" "$T/.out"
done
assert_rc "vdisk --help" 0 "$VDISK" --help
for c in info convert create map compare check; do
	assert_contains "vdisk --help lists $c" "  $c " "$T/.out"
done
assert_contains "vdisk --help lists the formats" "vdi" "$T/.out"
assert_rc "vdisk --version" 0 "$VDISK" --version
assert_contains "vdisk --version" "vdisk " "$T/.out"

# every documented long option is accepted by the parser (parsed before --help)
accept() { # CMD OPTS...
	local c=$1; shift
	assert_rc "$c accepts $*" 0 "$VDISK" "$c" "$@" --help
}
accept info --format vdi
accept info --output json
accept info --output=human
accept info --allow-devices
accept map --format raw
accept map --output=json
accept map --allow-devices
accept check --format vdi
accept check --repair
accept check --output=json
accept check --allow-devices
accept compare --strict
accept compare --progress
accept compare --output=json
accept compare --allow-devices
accept compare -f raw -F vdi
accept create --format vdi
accept create --force
accept create --deterministic
accept convert --source-format raw
accept convert --format vdi
accept convert --sparse-size 64K
accept convert --no-create
accept convert --target-is-zero
accept convert --force
accept convert --deterministic
accept convert --allow-devices
accept convert --progress
accept convert --quiet

# ---- bad usage
R=$T/src.raw
truncate -s 2M "$R"
rand_bytes u1 4096 | dd of="$R" conv=notrunc status=none
fails "no command" "Usage: vdisk COMMAND" "$VDISK"
fails "unknown command" "unknown command 'frobnicate'" "$VDISK" frobnicate
fails "info without image" "Usage: vdisk info" "$VDISK" info
fails "info with two images" "Usage: vdisk info" "$VDISK" info "$R" "$R"
fails "info unknown option" "bogus" "$VDISK" info --bogus "$R"
fails "info --output=xml" "--output" "$VDISK" info --output=xml "$R"
fails "map --output=yaml" "--output" "$VDISK" map --output=yaml "$R"
fails "map without image" "Usage: vdisk map" "$VDISK" map
fails "check without image" "Usage: vdisk check" "$VDISK" check
fails "convert without DST" "Usage: vdisk convert" "$VDISK" convert -O raw "$R"
fails "convert without -O" "Usage: vdisk convert" "$VDISK" convert "$R" "$T/nofmt.img"
fails "convert --target-is-zero without -n" "--target-is-zero" "$VDISK" convert --target-is-zero -O raw "$R" "$T/x.img"
fails "convert -n with -o" "-o" "$VDISK" convert -n -o subformat=fixed "$R" "$R"
fails "convert -S abc" "-S" "$VDISK" convert -S abc -O raw "$R" "$T/x.img"
fails "convert missing SRC" "nonexistent" "$VDISK" convert -O raw "$T/nonexistent" "$T/x.img"
fails "create without size" "Usage: vdisk create" "$VDISK" create -O vdi "$T/x.img"
fails "create without -O" "Usage: vdisk create" "$VDISK" create "$T/x.img" 1M
fails "info of a missing file" "nonexistent" "$VDISK" info "$T/nonexistent"
for s in 10Q abc -1 "" 1.5.5 10GG; do
	fails "create size '$s' is invalid" "invalid size" "$VDISK" create -O raw -- "$T/x.img" "$s"
done
[ -e "$T/x.img" ] && fail "a failed command left $T/x.img" || pass "failed commands created nothing"
[ -e "$T/nofmt.img" ] && fail "convert without -O created its DST" || pass "convert without -O created nothing"
# compare: usage errors are exit 2 (1 means "different")
assert_rc "compare with one image exits 2" 2 "$VDISK" compare "$R"
assert_rc "compare unknown option exits 2" 2 "$VDISK" compare --bogus "$R" "$R"
assert_rc "compare a missing file exits 2" 2 "$VDISK" compare "$R" "$T/nonexistent"
assert_contains "compare names the missing file" "nonexistent" "$T/.err"
assert_rc "check unknown option exits 1" 1 "$VDISK" check --bogus "$R"
assert_rc "check of a missing file exits 1" 1 "$VDISK" check "$T/nonexistent"

# -n into a smaller target is refused and leaves it untouched
truncate -s 1M "$T/smaller.raw"
rand_bytes smaller 4096 | dd of="$T/smaller.raw" conv=notrunc status=none
before=$(sha1sum <"$T/smaller.raw")
fails "-n into a smaller target" "smaller" "$VDISK" convert -n "$R" "$T/smaller.raw"
assert_eq "-n into a smaller target: untouched" "$before" "$(sha1sum <"$T/smaller.raw")"
fails "-n into a missing target" "missing.img" "$VDISK" convert -n -O raw "$R" "$T/missing.img"
[ -e "$T/missing.img" ] && fail "-n created its missing target" || pass "-n did not create a missing target"
# -S 0 allocates everything, also in a raw file
assert_rc "convert -S 0 -O raw" 0 "$VDISK" convert -S 0 -O raw "$R" "$T/s0.raw"
a=$(($(stat -c %b "$T/s0.raw") * 512))
if [ "$a" -ge $((2 * MiB)) ]; then pass "-S 0 raw is fully allocated"; else fail "-S 0 raw: only $a bytes allocated"; fi
cmp -s "$R" "$T/s0.raw" && pass "-S 0 raw contents" || fail "-S 0 raw contents differ"

# ---- unknown formats and options are named
fails "create unknown format" "qcow9" "$VDISK" create -O qcow9 "$T/u.img" 1M
fails "convert unknown output format" "qcow9" "$VDISK" convert -O qcow9 "$R" "$T/u.img"
fails "convert unknown source format" "qcow9" "$VDISK" convert -f qcow9 -O raw "$R" "$T/u.img"
fails "info unknown format" "qcow9" "$VDISK" info -f qcow9 "$R"
fails "map unknown format" "qcow9" "$VDISK" map -f qcow9 "$R"
fails "check unknown format" "qcow9" "$VDISK" check -f qcow9 "$R"
fails "compare unknown format" "qcow9" "$VDISK" compare -F qcow9 "$R" "$R"
fails "create vdi unknown -o option" "frobnicate" "$VDISK" create -O vdi -o frobnicate=1 "$T/u.img" 1M
fails "create raw unknown -o option" "frobnicate" "$VDISK" create -O raw -o frobnicate=1 "$T/u.img" 1M
fails "create vdi second -o option unknown" "bogus_opt" "$VDISK" create -O vdi -o subformat=fixed,bogus_opt=2 "$T/u.img" 1M
fails "convert unknown -o option" "bogus_opt" "$VDISK" convert -O vdi -o bogus_opt=2 "$R" "$T/u.img"
fails "create bad subformat" "weird" "$VDISK" create -O vdi -o subformat=weird "$T/u.img" 1M
fails "create bad block_size" "block_size" "$VDISK" create -O vdi -o block_size=3000 "$T/u.img" 1M
fails "create too small block_size" "block_size" "$VDISK" create -O vdi -o block_size=512 "$T/u.img" 1M
fails "create bad preallocation" "preallocation" "$VDISK" create -O raw -o preallocation=full "$T/u.img" 1M
fails "vdi -o option given to raw" "subformat" "$VDISK" create -O raw -o subformat=fixed "$T/u.img" 1M
[ -e "$T/u.img" ] && fail "a rejected create/convert left its DST" || pass "rejected create/convert left no DST"
no_tmp_left "rejected create/convert" "$T"

# ---- create/convert refuse an existing DST without --force
E=$T/existing.img
echo "precious data" >"$E"
before=$(sha1sum <"$E")
fails "create refuses an existing file" "exists" "$VDISK" create -O vdi "$E" 1M
assert_eq "create left the existing file untouched" "$before" "$(sha1sum <"$E")"
fails "convert refuses an existing file" "exists" "$VDISK" convert -O vdi "$R" "$E"
assert_eq "convert left the existing file untouched" "$before" "$(sha1sum <"$E")"
no_tmp_left "refused create/convert" "$T"
assert_rc "create --force replaces it" 0 "$VDISK" create -O vdi --force "$E" 1M
assert_eq "replaced file is a VDI" vdi "$("$VDISK" info --output=json "$E" | jq -r .format)"
echo "precious data" >"$E"
assert_rc "convert --force replaces it" 0 "$VDISK" convert -O vdi --force "$R" "$E"
assert_rc "convert --force result" 0 "$VDISK" compare "$R" "$E"
# a symlink or a directory as DST is refused even with --force
mkdir "$T/dir.img"
fails "create onto a directory" "" "$VDISK" create -O raw --force "$T/dir.img" 1M
[ -d "$T/dir.img" ] && pass "directory kept" || fail "directory replaced"
no_tmp_left "create/convert --force" "$T"

# ---- sizes
for s in 10G:10737418240 512M:536870912 4141875200:4141875200 64K:65536 1.5G:1610612736 2T:2199023255552 1000:1024; do
	arg=${s%%:*} want=${s##*:}
	for f in raw vdi; do
		v=$T/size-$arg.$f
		if [ $f = raw ] && [ "$arg" = 1000 ]; then want_f=1000; else want_f=$want; fi
		assert_rc "create -O $f $arg" 0 "$VDISK" create -O $f "$v" "$arg"
		assert_eq "create -O $f $arg: virtual size" "$want_f" \
			"$("$VDISK" info --output=json "$v" | jq '."virtual-size"')"
		a=$(($(stat -c %b "$v") * $(stat -c %B "$v")))
		# a VDI block map has 4 bytes per 1 MiB block, all written
		max=$((4 * MiB)); [ $f = vdi ] && max=$((4 * MiB + want / MiB * 4))
		if [ "$a" -le "$max" ]; then pass "create -O $f $arg is sparse ($a bytes allocated)"
		else fail "create -O $f $arg allocated $a bytes"; fi
		rm -f "$v"
	done
done
assert_rc "create -O raw -o preallocation=falloc" 0 "$VDISK" create -O raw -o preallocation=falloc "$T/falloc.raw" 8M
a=$(($(stat -c %b "$T/falloc.raw") * 512))
if [ "$a" -ge $((8 * MiB)) ]; then pass "preallocation=falloc allocates"; else fail "preallocation=falloc: only $a bytes allocated"; fi
assert_rc "create -O vdi -o static=on is fixed" 0 "$VDISK" create -O vdi -o static=on "$T/static.vdi" 4M
assert_eq "static=on gives a fixed VDI" fixed "$("$VDISK" info --output=json "$T/static.vdi" | jq -r .subformat)"
# non-default block size: round trip through vdisk only (qemu-img wants 1 MiB)
truncate -s 1M "$T/bs.raw"
rand_bytes bs1 5000 | dd of="$T/bs.raw" bs=1 seek=63000 conv=notrunc status=none
assert_rc "convert -o block_size=64K" 0 "$VDISK" convert -O vdi -o block_size=64K "$T/bs.raw" "$T/bs.vdi"
assert_eq "block_size=64K: cluster-size" 65536 "$("$VDISK" info --output=json "$T/bs.vdi" | jq '."cluster-size"')"
assert_eq "block_size=64K: only the blocks with data are allocated" 2 \
	"$("$VDISK" info --output=json "$T/bs.vdi" | jq '."format-specific".data."blocks-allocated"')"
assert_rc "block_size=64K: compare" 0 "$VDISK" compare "$T/bs.raw" "$T/bs.vdi"
assert_rc "block_size=64K: check" 0 "$VDISK" check "$T/bs.vdi"
assert_rc "block_size=64K: back to raw" 0 "$VDISK" convert -O raw "$T/bs.vdi" "$T/bs2.raw"
cmp -s "$T/bs.raw" "$T/bs2.raw" && pass "block_size=64K round trip" || fail "block_size=64K round trip differs"
# sizes VDI refuses
fails "create vdi of size 0" "" "$VDISK" create -O vdi "$T/zero.vdi" 0
fails "create vdi larger than the maximum" "" "$VDISK" create -O vdi "$T/huge.vdi" 1000000T
no_tmp_left "sizes" "$T"

# ---- convert -n onto its own source is refused, and the image is untouched
"$VDISK" create -O vdi --deterministic "$T/self.vdi" 4M
rand_bytes self 70000 > "$T/self.raw"; truncate -s 4M "$T/self.raw"
"$VDISK" convert -n "$T/self.raw" "$T/self.vdi"
before=$(sha1sum < "$T/self.vdi")
fails "convert -n onto the source itself" "same file" "$VDISK" convert -n "$T/self.vdi" "$T/self.vdi"
assert_eq "self-convert left the image untouched" "$before" "$(sha1sum < "$T/self.vdi")"

# ---- progress: -p forces it, -q silences it, by default only on a terminal ----
# (a progress line is "( 12.5%) 8 MiB of 64 MiB, ..." on stderr)
progress_lines() { tr '\r' '\n' <"$1" | grep -cE '%\) [0-9.]+ [KMGTPE]?i?B of ' || true; }
truncate -s 8M "$T/pr.raw"
if command -v mkfs.ext2 >/dev/null; then mkfs.ext2 -q -F "$T/pr.raw"; fi
pr_cmds=("convert -O vdi --force $T/pr.raw $T/pr.vdi" "compact $T/pr.vdi")
command -v mkfs.ext2 >/dev/null && pr_cmds+=("zerofree $T/pr.raw")
"$VDISK" convert -q -O vdi "$T/pr.raw" "$T/pr.vdi"
for cmd in "${pr_cmds[@]}"; do
	name=${cmd%% *}
	# shellcheck disable=SC2086
	"$VDISK" $cmd >/dev/null 2>"$T/pr.err"
	assert_eq "$name: no progress by default when stderr is not a terminal" 0 "$(progress_lines "$T/pr.err")"
	# shellcheck disable=SC2086
	"$VDISK" ${cmd%% *} -p ${cmd#* } >/dev/null 2>"$T/pr.err"
	[ "$(progress_lines "$T/pr.err")" -gt 0 ] && pass "$name -p: progress" || fail "$name -p: no progress line"
	if command -v script >/dev/null && script -qec true /dev/null >/dev/null 2>&1; then
		script -qec "$VDISK $name -q ${cmd#* }" /dev/null >"$T/pr.tty" 2>&1
		assert_eq "$name -q on a terminal: no progress" 0 "$(progress_lines "$T/pr.tty")"
		script -qec "$VDISK $cmd" /dev/null >"$T/pr.tty" 2>&1
		[ "$(progress_lines "$T/pr.tty")" -gt 0 ] && pass "$name on a terminal: progress by default" ||
			fail "$name on a terminal: no progress"
	fi
done

# ---- scripts (one reader for mbr and create): unreadable, NUL bytes ----
printf 'label: dos\nstart=2048, type=83\0\n' >"$T/nul.sfdisk"
truncate -s 8M "$T/s.img"
for cmd in "mbr --script" "create -O raw --script"; do
	tail=$([ "${cmd%% *}" = mbr ] && echo "$T/s.img" || echo "$T/new.img 8M")
	# shellcheck disable=SC2086
	fails "${cmd%% *}: missing script" "$T/none.sfdisk: No such file" "$VDISK" $cmd "$T/none.sfdisk" $tail
	# shellcheck disable=SC2086
	fails "${cmd%% *}: script with NUL bytes" "contains NUL bytes" "$VDISK" $cmd "$T/nul.sfdisk" $tail
done
[ ! -e "$T/new.img" ] && pass "create: nothing made from a bad script" || fail "create made new.img"
assert_eq "mbr: image untouched by a bad script" "" "$(tr -d '\0' <"$T/s.img" | head -c 1)"

finish
