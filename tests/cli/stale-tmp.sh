#!/usr/bin/env bash
# Temporary files a killed run leaves behind (issue 12, defect 16):
#  - a convert killed with SIGKILL midway (VDISK_TEST_KILL_AFTER) leaves
#    .DST.vdisk-tmp-PID-XXXXXX, named with its PID;
#  - the next convert to DST removes it, says so with its name and size on
#    stderr, and succeeds; create, compact and defrag do the same for their
#    destination;
#  - a temporary file whose PID is alive (a running sleep), or whose PID is
#    gone but which is locked (flock(1) in the background), or whose name
#    is not vdisk's PID form, or which belongs to another destination, is
#    left alone.
. "$(dirname "$0")/../lib.sh"
need flock
cd "$T" || exit 1

tmp_of() { find . -maxdepth 1 -name ".$1.vdisk-tmp-*" | sort; }
bgpids=()
on_exit 'for p in "${bgpids[@]}"; do kill "$p" 2>/dev/null; done'

# a sparse 256 MiB source with data spread over it
truncate -s 256M src.raw
for i in 0 40 80 120 160 200 240; do
	printf 'block %s' "$i" | dd of=src.raw bs=1M seek="$i" conv=notrunc status=none
done

# ---- SIGKILL midway leaves a temporary file with the PID in its name
rc=0
VDISK_TEST_KILL_AFTER=4 "$VDISK" convert -O vdi src.raw out.vdi >/dev/null 2>&1 || rc=$?
assert_eq "convert killed midway: SIGKILL" 137 "$rc"
left=$(tmp_of out.vdi)
[ -n "$left" ] && pass "a killed convert leaves $left" || fail "a killed convert left no temporary file"
case $left in
./.out.vdi.vdisk-tmp-[1-9]*-??????) pass "its name carries a PID" ;;
*) fail "temporary file name without a PID: $left" ;;
esac
[ -e out.vdi ] && fail "a killed convert made out.vdi" || pass "no out.vdi yet"
size=$(stat -c %s "$left")

# ---- the next convert to the same destination removes and reports it
rc=0
"$VDISK" convert -O vdi src.raw out.vdi >conv.out 2>conv.err || rc=$?
assert_eq "next convert succeeds" 0 "$rc"
assert_eq "next convert: the stale file is gone" "" "$(tmp_of out.vdi)"
assert_contains "next convert names the stale file" "${left#./}" conv.err
assert_contains "next convert says it removed it" "removed the stale temporary file" conv.err
assert_contains "next convert gives its size" "$((size >> 20)) MiB" conv.err
assert_rc "the new out.vdi is valid" 0 "$VDISK" check out.vdi
assert_rc "the new out.vdi holds the source" 0 "$VDISK" compare src.raw out.vdi
"$VDISK" convert -O vdi --force src.raw out.vdi >/dev/null 2>conv.err
assert_eq "a convert with nothing stale says nothing" "" "$(cat conv.err)"

# ---- what is left alone
sleep 300 &
live=$!
bgpids+=("$live")
sh -c 'exit 0' &
dead=$!
wait "$dead"
kill -0 "$dead" 2>/dev/null && skip "PID $dead was reused at once"
touch ".out.vdi.vdisk-tmp-$live-aaaaaa"            # live PID
touch ".out.vdi.vdisk-tmp-$dead-bbbbbb"            # dead PID, locked below
touch ".out.vdi.vdisk-tmp-XXXXXX"                  # the old name form
touch ".other.vdi.vdisk-tmp-$dead-cccccc"          # another destination
touch ".out.vdi.vdisk-tmp-$dead-dddddd"            # dead and unlocked: garbage
# a process that holds an flock on FILE (the lock goes with it)
hold_lock() { (exec 9<"$1" && flock 9 && exec sleep 300) & bgpids+=("$!"); }
hold_lock ".out.vdi.vdisk-tmp-$live-aaaaaa"
hold_lock ".out.vdi.vdisk-tmp-$dead-bbbbbb"
# wait until flock(1) holds both
for _ in $(seq 50); do
	flock -n ".out.vdi.vdisk-tmp-$dead-bbbbbb" true 2>/dev/null || break
	sleep 0.1
done
flock -n ".out.vdi.vdisk-tmp-$dead-bbbbbb" true 2>/dev/null && fail "flock(1) never took its lock"
"$VDISK" convert -O vdi --force src.raw out.vdi >/dev/null 2>conv.err
assert_eq "stale file with a dead PID, unlocked: removed" "" "$(tmp_of out.vdi | grep dddddd)"
assert_contains "and reported" "vdisk-tmp-$dead-dddddd" conv.err
[ -e ".out.vdi.vdisk-tmp-$live-aaaaaa" ] && pass "a live PID's temporary file stays" || fail "a live PID's temporary file was removed"
[ -e ".out.vdi.vdisk-tmp-$dead-bbbbbb" ] && pass "a locked temporary file stays, though its PID is gone" ||
	fail "a locked temporary file was removed (PID reuse guard)"
[ -e ".out.vdi.vdisk-tmp-XXXXXX" ] && pass "a name without a PID stays" || fail "a name without a PID was removed"
[ -e ".other.vdi.vdisk-tmp-$dead-cccccc" ] && pass "another destination's file stays" || fail "another destination's file was removed"
case $(cat conv.err) in *aaaaaa* | *bbbbbb* | *XXXXXX* | *cccccc*) fail "a file left alone was reported: $(cat conv.err)" ;; *) pass "only the removed file is reported" ;; esac

# ---- create, compact and defrag clean up their destination too
for cmd in create compact defrag; do
	f=.out.vdi.vdisk-tmp-$dead-e${cmd:0:5}
	# a zero block for compact to drop (with nothing to do it leaves
	# everything alone)
	if [ "$cmd" = compact ]; then
		head -c 1048576 /dev/zero >zero.raw
		"$VDISK" convert -O vdi -S 0 --force zero.raw out.vdi >/dev/null 2>&1 || fail "convert zero.raw"
	fi
	printf 'garbage' >"$f"
	case $cmd in
	create) "$VDISK" create -O vdi --force out.vdi 64M >/dev/null 2>cmd.err ;;
	compact) "$VDISK" compact out.vdi >/dev/null 2>cmd.err ;;
	defrag) "$VDISK" defrag out.vdi >/dev/null 2>cmd.err ;;
	esac
	rc=$?
	assert_eq "$cmd succeeds" 0 "$rc"
	[ -e "$f" ] && fail "$cmd: stale file $f stays" || pass "$cmd: stale file removed"
	assert_contains "$cmd: reported with its size" "${f} (7 B" cmd.err
done
finish
