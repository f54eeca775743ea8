#!/usr/bin/env bash
# Interrupted and failing conversions leave nothing behind:
#  - SIGTERM / SIGINT during a large convert: exit 143 / 130, no DST, no
#    temporary file, source unchanged;
#  - ENOSPC on a small tmpfs: non-zero exit, "no space" in the message, no
#    DST, no temporary file.
. "$(dirname "$0")/../lib.sh"
need openssl
MiB=$((1 << 20))

tmp_files() { find "$1" -maxdepth 1 -name '.*vdisk-tmp*' 2>/dev/null; }
sha1_of() { openssl dgst -sha1 -r "$1" | cut -d' ' -f1; }

# ---------------------------------------------------------------- ENOSPC
SMALL=$T/small
mkdir "$SMALL"
if mount -t tmpfs -o size=8m tmpfs "$SMALL" 2>/dev/null; then
	on_exit "umount '$SMALL'"
	rand_bytes nospc $((20 * MiB)) >"$T/20m.raw"
	for args in "-O raw" "-O vdi" "-O vdi -o subformat=fixed" "-O raw -S 0"; do
		out=$SMALL/out.img
		rc=0
		"$VDISK" convert $args "$T/20m.raw" "$out" >"$T/nospc.out" 2>"$T/nospc.err" || rc=$?
		if [ "$rc" != 0 ]; then pass "ENOSPC ($args): exit $rc"; else fail "ENOSPC ($args): exit 0"; fi
		# a fixed image is reserved up front: "not enough free space to allocate"
		if grep -qiE "no space|free space" "$T/nospc.err"; then pass "ENOSPC ($args): message"
		else fail "ENOSPC ($args): no 'no space' in: $(head -c 300 "$T/nospc.err")"; fi
		[ -e "$out" ] && fail "ENOSPC ($args): DST exists" || pass "ENOSPC ($args): no DST"
		assert_eq "ENOSPC ($args): no temporary file left" "" "$(tmp_files "$SMALL")"
		assert_eq "ENOSPC ($args): the filesystem is empty again" "" "$(ls -A "$SMALL")"
		rm -f "$SMALL"/* "$SMALL"/.??* 2>/dev/null
	done
	# create of a fixed image that does not fit
	rc=0
	"$VDISK" create -O vdi -o subformat=fixed "$SMALL/fixed.vdi" 64M 2>"$T/nospc.err" || rc=$?
	if [ "$rc" != 0 ]; then pass "ENOSPC create fixed: exit $rc"; else fail "ENOSPC create fixed: exit 0"; fi
	if grep -qiE "no space|free space" "$T/nospc.err"; then pass "ENOSPC create fixed: message"
	else fail "ENOSPC create fixed: no 'no space' in: $(head -c 300 "$T/nospc.err")"; fi
	assert_eq "ENOSPC create fixed: nothing left" "" "$(ls -A "$SMALL")"
	# something that fits still works there
	head -c $MiB "$T/20m.raw" >"$T/1m.raw"
	assert_rc "small convert into the tmpfs works" 0 "$VDISK" convert -O vdi "$T/1m.raw" "$SMALL/ok.vdi"
	rm -f "$T/20m.raw"
else
	echo "SKIP: ENOSPC tests (cannot mount a tmpfs here)"
fi

# ---------------------------------------------------------------- signals
# A fully written (non-sparse) source, so vdisk has to copy all of it; on
# /dev/shm when available to make it quick to generate.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
	S=$(mktemp -d /dev/shm/vdisk-interrupt.XXXXXX)
	on_exit "rm -rf '$S'"
else
	S=$T
fi
SRC=$S/src.raw
src_gib=3 # size in units of 512 MiB: 1.5 GiB
make_src() { rand_bytes "interrupt" $((src_gib * 512 * MiB)) >"$SRC"; }
make_src
sum0=$(sha1_of "$SRC")

interrupt() { # SIG WANT-RC
	local sig=$1 want=$2 dst=$T/out-$1.vdi pid rc i tries
	for tries in 1 2; do
		rc=0
		"$VDISK" convert -O vdi -o subformat=fixed "$SRC" "$dst" >"$T/$sig.out" 2>"$T/$sig.err" &
		pid=$!
		# wait (up to 20 s) until the temporary file exists
		for ((i = 0; i < 2000; i++)); do
			[ -n "$(tmp_files "$T")" ] && break
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.01
		done
		kill -"$sig" "$pid" 2>/dev/null
		wait "$pid" || rc=$?
		if [ "$rc" = 0 ] && [ "$tries" = 1 ]; then
			# finished before the signal arrived: try again with a bigger source
			echo "note: convert finished before SIG$sig; retrying with a source twice as big"
			rm -f "$dst"
			src_gib=$((src_gib * 2))
			make_src
			sum0=$(sha1_of "$SRC")
			continue
		fi
		break
	done
	assert_eq "SIG$sig: exit status" "$want" "$rc"
	assert_contains "SIG$sig: message says interrupted" "interrupted" "$T/$sig.err"
	[ -e "$dst" ] && fail "SIG$sig: DST exists" || pass "SIG$sig: no DST"
	assert_eq "SIG$sig: no temporary file left" "" "$(tmp_files "$T")"
	assert_eq "SIG$sig: source unchanged" "$sum0" "$(sha1_of "$SRC")"
	rm -f "$dst" "$T"/.out-*
}
interrupt TERM 143
interrupt INT 130

# an uninterrupted run of the same conversion succeeds (the signal, not the
# size, made the others fail); -p progress goes to stderr only
assert_rc "uninterrupted convert" 0 "$VDISK" convert -p -O vdi "$SRC" "$T/full.vdi"
assert_eq "uninterrupted convert: nothing on stdout" "" "$(cat "$T/.out")"
assert_contains "-p shows progress on stderr" "100.0%" "$T/.err"
assert_rc "uninterrupted convert: identical" 0 "$VDISK" compare "$SRC" "$T/full.vdi"

finish
