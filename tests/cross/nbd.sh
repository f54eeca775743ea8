#!/usr/bin/env bash
# The nbdkit plugin (build/nbdkit-vdisk-plugin.so) and vdisk serve, against
# qemu-img, qemu-io and nbdinfo as NBD clients:
#   VDI, VMDK: qemu-img compare nbd+unix:// == the image; nbdinfo --map ==
#     vdisk map's kinds (data 0, allocated zeros 2, not held 3); read-only by
#     default (a write fails)
#   --rw: qemu-img convert -n into the export writes the image (qemu-img
#     check + compare afterwards); NBD write-zeroes with unmap releases the
#     VDI block, over part of a block it writes zeros there; fast zero is
#     advertised
#   nbdkit --filter=cow over the plugin: writes land in the overlay, the
#     image is unchanged
#   a second --rw server on the same image fails while the first has a client
#   vdisk serve without nbdkit on PATH says so
. "$(dirname "$0")/../lib.sh"
need qemu-img qemu-io jq nbdkit nbdinfo
BUILD=${BUILD:-$(dirname "$VDISK")}
PLUGIN=$BUILD/nbdkit-vdisk-plugin.so
[ -f "$PLUGIN" ] || skip "no $PLUGIN (built by make)"
MiB=$((1 << 20))
# a plugin built with make SANITIZE=1 needs the ASan runtime inside nbdkit,
# which hangs there (makecontext): not tested under ASan
nm -D "$PLUGIN" 2>/dev/null | grep -q __asan_init && skip "the plugin is built with ASan (make SANITIZE=1)"
export VDISK_NBDKIT_PLUGIN=$PLUGIN

pids=()
on_exit 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done'
# serve NAME ARGS...: vdisk serve on $T/NAME.sock, remember its PID
serve() {
	local name=$1; shift
	rm -f "$T/$name.sock" "$T/$name.pid"
	"$VDISK" serve --socket "$T/$name.sock" --pidfile "$T/$name.pid" "$@" || return 1
	pids+=("$(cat "$T/$name.pid")")
}
# stop NAME: SIGTERM, wait until it has exited (image flushed and closed)
stop() {
	local p
	p=$(cat "$T/$1.pid")
	kill "$p"
	for _ in $(seq 200); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.05; done
	fail "$1: nbdkit $p did not exit"
}
uri() { echo "nbd+unix:///?socket=$T/$1.sock"; }
# merged "start length type" lines
merge() { awk 'NR > 1 && $3 == t && $1 == s + l {l += $2; next} NR > 1 {print s, l, t} {s = $1; l = $2; t = $3} END {if (NR) print s, l, t}'; }
map_kinds() {
	"$VDISK" map --output=json "$1" | jq -r '.[] | "\(.start) \(.length) \(if (.data | not) then 3 elif .zero then 2 else 0 end)"' | merge
}
nbd_kinds() { nbdinfo --map "$1" | awk '{print $1, $2, $3}' | merge; }

# ---- an image with data, zero runs and holes
truncate -s 24M "$T/a.raw"
rand_bytes nbd1 $((3 * MiB)) | dd of="$T/a.raw" bs=64K seek=$((2 * MiB)) oflag=seek_bytes conv=notrunc status=none
rand_bytes nbd2 70000 | dd of="$T/a.raw" bs=64K seek=$((12 * MiB + 4096)) oflag=seek_bytes conv=notrunc status=none
qemu-img convert -O vdi "$T/a.raw" "$T/a.vdi"
qemu-img convert -O vmdk -o subformat=monolithicSparse "$T/a.raw" "$T/a.vmdk"
# a VDI with allocated space that reads as zeros (static=on) and a zero block
qemu-img convert -O vdi -o static=on "$T/a.raw" "$T/s.vdi"

for img in a.vdi a.vmdk s.vdi; do
	if ! serve r "$T/$img"; then fail "$img: vdisk serve"; continue; fi
	assert_rc "$img: qemu-img compare nbd+unix:// == image" 0 qemu-img compare "$(uri r)" "$T/$img"
	assert_eq "$img: nbdinfo --map == vdisk map kinds" "$(map_kinds "$T/$img")" "$(nbd_kinds "$(uri r)")"
	assert_rc "$img: read-only by default: a write fails" 1 qemu-io -f raw -c "write -P 0x55 0 4k" "$(uri r)"
	assert_contains "$img: the export is read-only" "Permission denied" "$T/.err"
	stop r
done

# ---- --rw: qemu-img writes the image through the plugin
rand_bytes nbd3 $((24 * MiB)) >"$T/src.raw"
head -c $((8 * MiB)) /dev/zero | dd of="$T/src.raw" bs=1M seek=8 conv=notrunc status=none
cp "$T/a.vdi" "$T/w.vdi"
if serve w --rw "$T/w.vdi"; then
	# a client holds the image open for writing while a second server starts
	(sleep 2) | qemu-io -f raw "$(uri w)" >/dev/null 2>&1 &
	holder=$!
	sleep 0.5
	assert_rc "a second server is refused while a --rw client is connected" 1 \
		nbdkit -U "$T/w2.sock" --run 'qemu-img info "$uri"' "$PLUGIN" "$T/w.vdi"
	assert_contains "the refusal names the other vdisk process" "another vdisk process" "$T/.err"
	wait "$holder"
	assert_rc "qemu-img convert -n into the export" 0 qemu-img convert -n -f raw -O raw "$T/src.raw" "$(uri w)"
	assert_rc "qemu-img compare over NBD after the write" 0 qemu-img compare -f raw -F raw "$T/src.raw" "$(uri w)"
	# NBD write-zeroes with unmap over a whole 1 MiB VDI block
	assert_rc "write zeroes (unmap) over a whole block" 0 qemu-io -f raw -c "write -z -u $((3 * MiB)) 1M" "$(uri w)"
	# fast zero of part of a data block: refused, the data stays
	nbdinfo --can fast-zero "$(uri w)" && pass "fast zero advertised" || fail "fast zero not advertised"
	stop w
	head -c $MiB /dev/zero | dd of="$T/src.raw" bs=1M seek=3 conv=notrunc status=none
	assert_rc "qemu-img check after writing over NBD" 0 qemu-img check "$T/w.vdi"
	assert_rc "qemu-img compare: the image holds what was written" 0 qemu-img compare -F raw "$T/w.vdi" "$T/src.raw"
	z=$("$VDISK" map --output=json "$T/w.vdi" | jq -c --argjson o $((3 * MiB)) '[.[] | select(.start <= $o and .start + .length > $o) | .data]')
	assert_eq "the zeroed block is released (not data)" "[false]" "$z"
else fail "vdisk serve --rw"; fi

# ---- a zero over part of a data block writes zeros there, the rest stays
cp "$T/a.vdi" "$T/z.vdi"
if serve z --rw "$T/z.vdi"; then
	assert_rc "zero of a partial block" 0 qemu-io -f raw -c "write -z -u $((2 * MiB + 4096)) 4k" "$(uri z)"
	stop z
	assert_rc "qemu-img check after zeroing" 0 qemu-img check "$T/z.vdi"
	qemu-img convert -O raw "$T/z.vdi" "$T/z.raw"
	cp "$T/a.raw" "$T/z.want"
	head -c 4096 /dev/zero | dd of="$T/z.want" bs=4096 seek=$((512 + 1)) conv=notrunc status=none
	assert_rc "the partial zero reads zeros, the rest unchanged" 0 cmp "$T/z.raw" "$T/z.want"
else fail "serve z"; fi

# ---- nbdkit --filter=cow: the image stays as it was
cp "$T/a.vdi" "$T/c.vdi"
sum=$(md5sum <"$T/c.vdi")
rm -f "$T/c.sock"
nbdkit -U "$T/c.sock" -P "$T/c.pid" --filter=cow "$PLUGIN" "$T/c.vdi" && pids+=("$(cat "$T/c.pid")")
assert_rc "cow: qemu-img convert -n into the overlay" 0 qemu-img convert -n -f raw -O raw "$T/src.raw" "$(uri c)"
assert_rc "cow: the overlay reads what was written" 0 qemu-img compare -f raw -F raw "$T/src.raw" "$(uri c)"
stop c
assert_eq "cow: the image is unchanged" "$sum" "$(md5sum <"$T/c.vdi")"

# ---- snapshot=true: writes into a temporary overlay, kept across
# connections, the image only read; qemu-io writes a part of a 64 KiB
# granule, whole granules and zeros, qemu-img reads the same as from a raw
# copy written the same way
cp "$T/a.vdi" "$T/sn.vdi"
sum=$(md5sum <"$T/sn.vdi")
qemu-img convert -O raw "$T/sn.vdi" "$T/sn.raw"
rm -f "$T/sn.sock"
TMPDIR=$T nbdkit -U "$T/sn.sock" -P "$T/sn.pid" "$PLUGIN" "$T/sn.vdi" snapshot=true && pids+=("$(cat "$T/sn.pid")")
w=(-c 'write -P 0x55 1000 3000' -c 'write -P 0x66 9M 192k' -c 'write -z 5M 64k' -c 'write -z 100 50')
assert_rc "snapshot: qemu-io writes into the export" 0 qemu-io -f raw "${w[@]}" "$(uri sn)"
qemu-io -f raw "${w[@]}" "$T/sn.raw" >/dev/null
assert_rc "snapshot: the next connection reads the writes (qemu-img compare)" 0 qemu-img compare -f raw -F raw "$(uri sn)" "$T/sn.raw"
nbdinfo --map "$(uri sn)" | awk '$3 == 0 {print $1, $2}' >"$T/sn.map"
[ "$("$VDISK" map --output=json "$T/sn.vdi" | jq "[.[] | select(.data and .start <= $((9 * MiB)) and .start + .length > $((9 * MiB)))] | length")" = 0 ] &&
	pass "snapshot: the image has a hole where the test writes" || fail "snapshot: the image has data at 9 MiB: the map check proves nothing"
awk -v a=$((9 * MiB)) -v b=$((9 * MiB + 196608)) '$1 <= a && $1 + $2 >= b {ok = 1} END {exit !ok}' "$T/sn.map" &&
	pass "snapshot: the written range is data in base:allocation" ||
	fail "snapshot: base:allocation misses the written range: $(tr '\n' ';' <"$T/sn.map")"
ls -a "$T" | grep -q 'vdisk-snapshot' && fail "snapshot: the overlay file has a name" || pass "snapshot: the overlay file is unlinked"
stop sn
assert_eq "snapshot: the image is unchanged" "$sum" "$(md5sum <"$T/sn.vdi")"

# vdisk serve --snapshot: the same through the command
cp "$T/a.vdi" "$T/sv.vdi"
sum=$(md5sum <"$T/sv.vdi")
if TMPDIR=$T serve sv --snapshot "$T/sv.vdi"; then
	assert_rc "serve --snapshot: qemu-img convert -n into the export" 0 qemu-img convert -n -f raw -O raw "$T/src.raw" "$(uri sv)"
	assert_rc "serve --snapshot: the export reads what was written" 0 qemu-img compare -f raw -F raw "$T/src.raw" "$(uri sv)"
	stop sv
	assert_eq "serve --snapshot: the image is unchanged" "$sum" "$(md5sum <"$T/sv.vdi")"
else fail "serve --snapshot"; fi
assert_rc "serve --rw --snapshot refused" 1 "$VDISK" serve --rw --snapshot --socket "$T/x.sock" "$T/sv.vdi"

# ---- backing=: a child whose parent vdisk cannot find by itself
mkdir -p "$T/bp" "$T/bc"
qemu-img convert -O vdi "$T/a.raw" "$T/bp/base.vdi"
"$VDISK" create -O vdi -B "$T/bp/base.vdi" "$T/bc/child.vdi"
cp "$T/a.raw" "$T/b.raw"
printf 'child data' | dd of="$T/b.raw" bs=1 seek=$((7 * MiB)) conv=notrunc status=none
"$VDISK" convert -q -n --backing "$T/bp/base.vdi" -O vdi "$T/b.raw" "$T/bc/child.vdi"
rm -f "$T/bk.sock"
assert_rc "a child without its parent fails at start-up" 1 nbdkit -U "$T/bk.sock" "$PLUGIN" "$T/bc/child.vdi"
nbdkit -U "$T/bk.sock" -P "$T/bk.pid" "$PLUGIN" "$T/bc/child.vdi" backing="$T/bp/base.vdi" && pids+=("$(cat "$T/bk.pid")")
assert_rc "backing=: the chain reads as the flattened disk" 0 qemu-img compare -f raw -F raw "$(uri bk)" "$T/b.raw"
stop bk
if serve bs --backing "$T/bp/base.vdi" "$T/bc/child.vdi"; then
	assert_rc "serve --backing: the chain reads as the flattened disk" 0 qemu-img compare -f raw -F raw "$(uri bs)" "$T/b.raw"
	stop bs
else fail "serve --backing"; fi

# ---- errors
assert_rc "vdisk serve without nbdkit on PATH" 1 env PATH=/nonexistent "$VDISK" serve --socket "$T/x.sock" "$T/a.vdi"
assert_contains "it says nbdkit is not installed" "nbdkit is not installed" "$T/.err"
assert_rc "vdisk serve of a missing image" 1 "$VDISK" serve --socket "$T/x.sock" "$T/none.vdi"
assert_rc "nbdkit vdisk of a damaged image fails at start-up" 1 nbdkit -U "$T/x.sock" "$PLUGIN" "$T/src.raw" format=vdi
finish
