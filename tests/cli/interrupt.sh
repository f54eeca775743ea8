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
	# the exact message vdisk-convert(1) promises for a new DST
	assert_contains "SIG$sig: message says nothing was changed" \
		"vdisk convert: interrupted by signal $((want - 128)); nothing was changed (the temporary file was removed, $dst left as it was)" \
		"$T/$sig.err"
	[ -e "$dst" ] && fail "SIG$sig: DST exists" || pass "SIG$sig: no DST"
	assert_eq "SIG$sig: no temporary file left" "" "$(tmp_files "$T")"
	assert_eq "SIG$sig: source unchanged" "$sum0" "$(sha1_of "$SRC")"
	rm -f "$dst" "$T"/.out-*
}
interrupt TERM 143
interrupt INT 130

# ------------------------------------------- SIGINT, slowed down by strace
# Every write held 300 ms by strace, so the signal surely lands mid-copy of
# a small source: onto an existing DST with --force (left as it was) and
# with -n (written in place: the message says it is partly written).
if command -v strace >/dev/null 2>&1 && strace -o /dev/null true 2>/dev/null; then
	rand_bytes slow $((24 * MiB)) >"$T/slow.raw"
	slow_convert() { # NAME ARGS...: start a delayed convert, SIGINT it, wait
		local name=$1 spid vpid i rc=0; shift
		# LeakSanitizer cannot run under ptrace (make SANITIZE=1)
		ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
			strace -f -o /dev/null -e trace=pwrite64,pwritev,write \
				-e inject=pwrite64,pwritev,write:delay_enter=300000 \
				"$VDISK" convert -q "$@" >"$T/$name.out" 2>"$T/$name.err" &
		spid=$!
		vpid=
		for ((i = 0; i < 200; i++)); do
			vpid=$(cat /proc/"$spid"/task/"$spid"/children 2>/dev/null)
			[ -n "$vpid" ] && break
			sleep 0.05
		done
		# well into the copy: a new DST once its temporary file exists (on
		# a loaded machine the start can take long), then 0.5 s; even 3
		# writes take 0.9 s
		if [ "$name" = force ]; then
			for ((i = 0; i < 200; i++)); do
				[ -n "$(tmp_files "$T")" ] && break
				sleep 0.05
			done
		fi
		sleep 0.5
		[ -n "$vpid" ] && kill -INT $vpid
		wait "$spid" || rc=$?
		echo "$rc"
	}
	rand_bytes old $((24 * MiB)) >"$T/old.raw"
	cp "$T/old.raw" "$T/keep.raw"
	old_sum=$(sha1_of "$T/old.raw")
	# on a loaded machine the signal may still come too late: up to 3 tries,
	# each with the DST as it was
	for try in 1 2 3; do
		cp "$T/old.raw" "$T/keep.raw"
		rc=$(slow_convert force -O raw --force "$T/slow.raw" "$T/keep.raw")
		[ "$rc" = 0 ] || break
		echo "note: convert finished before SIGINT (try $try)"
	done
	assert_eq "SIGINT, --force over an existing DST: exit 130" 130 "$rc"
	assert_contains "SIGINT, --force: exact message" \
		"vdisk convert: interrupted by signal 2; nothing was changed (the temporary file was removed, $T/keep.raw left as it was)" \
		"$T/force.err"
	assert_eq "SIGINT, --force: DST left as it was" "$old_sum" "$(sha1_of "$T/keep.raw")"
	assert_eq "SIGINT, --force: no temporary file left" "" "$(tmp_files "$T")"
	for try in 1 2 3; do
		cp "$T/keep.raw" "$T/old.raw"
		rc=$(slow_convert inplace -n "$T/slow.raw" "$T/old.raw")
		[ "$rc" = 0 ] || break
		echo "note: convert -n finished before SIGINT (try $try)"
	done
	assert_eq "SIGINT, -n: exit 130" 130 "$rc"
	assert_contains "SIGINT, -n: exact message" \
		"vdisk convert: interrupted by signal 2; $T/old.raw is partly written (-n writes in place)" \
		"$T/inplace.err"
	if grep -q "nothing was changed" "$T/inplace.err"; then fail "SIGINT, -n: says nothing was changed"
	else pass "SIGINT, -n: does not claim nothing was changed"; fi
	if [ "$(sha1_of "$T/old.raw")" != "$old_sum" ]; then pass "SIGINT, -n: DST was indeed partly written"
	else fail "SIGINT, -n: DST unchanged (the signal came before any write?)"; fi
	# to standard output: what was sent stays sent, and the message says so
	for try in 1 2 3; do
		rc=$(slow_convert stdout -O raw "$T/slow.raw" -)
		[ "$rc" = 0 ] || break
		echo "note: convert to stdout finished before SIGINT (try $try)"
	done
	assert_eq "SIGINT, to standard output: exit 130" 130 "$rc"
	assert_contains "SIGINT, to standard output: exact message" \
		"vdisk convert: interrupted by signal 2; standard output got part of the image" "$T/stdout.err"
	n=$(stat -c %s "$T/stdout.out")
	[ "$n" -lt $((24 * MiB)) ] && cmp -s -n "$n" "$T/stdout.out" "$T/slow.raw" &&
		pass "SIGINT, to standard output: a prefix of the disk was sent ($n bytes)" ||
		fail "SIGINT, to standard output: $n bytes, not a prefix of the disk"
	rm -f "$T/slow.raw" "$T/old.raw" "$T/keep.raw"
else
	echo "SKIP: strace-delayed SIGINT tests (no usable strace)"
fi

# an uninterrupted run of the same conversion succeeds (the signal, not the
# size, made the others fail); -p progress goes to stderr only
assert_rc "uninterrupted convert" 0 "$VDISK" convert -p -O vdi "$SRC" "$T/full.vdi"
assert_eq "uninterrupted convert: nothing on stdout" "" "$(cat "$T/.out")"
assert_contains "-p shows progress on stderr" "100.0%" "$T/.err"
assert_rc "uninterrupted convert: identical" 0 "$VDISK" compare "$SRC" "$T/full.vdi"

finish
