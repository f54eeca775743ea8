#!/usr/bin/env bash
# NBD URIs as sources and destinations (libnbd), against nbdkit's memory
# and file plugins (and the vdisk plugin, outside ASan) and qemu-img/nbdinfo:
#   info (disk size unavailable, as qemu-img says), map == nbdinfo --map,
#   compare, check of the remote raw view;
#   convert from a file export (raw, and a VDI served by the file plugin)
#   to VDI/VMDK: qemu-img compare; convert into a memory export (-n
#   implied, the raw disk): byte for byte, the zero ranges sent as NBD
#   zero requests (nbdinfo --map shows them as holes), -O vdi refused,
#   a read-only export refused, an export smaller than the source refused;
#   an export that disconnects mid-copy: a clear error, no output renamed.
. "$(dirname "$0")/../lib.sh"
need qemu-img jq nbdkit nbdinfo
MiB=$((1 << 20))

pids=()
on_exit 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done'
# start NAME ARGS...: nbdkit on $T/NAME.sock
start() {
	local name=$1; shift
	rm -f "$T/$name.sock" "$T/$name.pid"
	nbdkit -U "$T/$name.sock" -P "$T/$name.pid" "$@" || return 1
	for _ in $(seq 100); do [ -S "$T/$name.sock" ] && break; sleep 0.05; done
	pids+=("$(cat "$T/$name.pid")")
}
uri() { echo "nbd+unix:///?socket=$T/$1.sock"; }
merge() { awk 'NR > 1 && $3 == t && $1 == s + l {l += $2; next} NR > 1 {print s, l, t} {s = $1; l = $2; t = $3} END {if (NR) print s, l, t}'; }

truncate -s 40M "$T/a.raw"
rand_bytes nbduri1 $((5 * MiB)) | dd of="$T/a.raw" bs=64K seek=$((3 * MiB)) oflag=seek_bytes conv=notrunc status=none
rand_bytes nbduri2 99999 | dd of="$T/a.raw" bs=64K seek=$((30 * MiB + 512)) oflag=seek_bytes conv=notrunc status=none
qemu-img convert -O vdi "$T/a.raw" "$T/a.vdi"

# ---- a file export as a source
start file file "$T/a.raw" || fail "nbdkit file"
F=$(uri file)
assert_rc "info of an export" 0 "$VDISK" info "$F"
assert_contains "info: raw" "file format: raw" "$T/.out"
assert_contains "info: disk size unavailable" "disk size: unavailable" "$T/.out"
assert_rc "info --output=json" 0 "$VDISK" info --output=json "$F"
assert_eq "json: virtual-size" $((40 * MiB)) "$(jq '."virtual-size"' "$T/.out")"
assert_eq "json: no actual-size (as qemu-img)" null "$(jq '."actual-size"' "$T/.out")"
assert_rc "compare export with the file" 0 "$VDISK" compare "$F" "$T/a.raw"
assert_rc "check of the export" 0 "$VDISK" check "$F"
# map: data/zero kinds as nbdinfo sees them (data 0, zero 3 or 2)
vm=$("$VDISK" map --output=json "$F" | jq -r '.[] | "\(.start) \(.length) \(if .zero then "z" else "d" end)"' | merge)
nm=$(nbdinfo --map "$F" | awk '{print $1, $2, (($3 % 4 >= 2) ? "z" : "d")}' | merge)
assert_eq "map == nbdinfo --map" "$nm" "$vm"
for o in vdi vmdk; do
	assert_rc "convert export -> $o" 0 "$VDISK" convert -q -O $o "$F" "$T/from-nbd.$o"
	assert_rc "export -> $o: qemu-img compare" 0 qemu-img compare -q "$T/a.raw" "$T/from-nbd.$o"
done
# a VDI served as a file: the export holds an image, probed as VDI
start vdifile file "$T/a.vdi" || fail "nbdkit file (vdi)"
assert_rc "info of a VDI export" 0 "$VDISK" info "$(uri vdifile)"
assert_contains "the export holds a VDI" "file format: vdi" "$T/.out"
assert_rc "convert a VDI export -> raw" 0 "$VDISK" convert -q -O raw "$(uri vdifile)" "$T/vdi-nbd.raw"
if cmp -s "$T/a.raw" "$T/vdi-nbd.raw"; then pass "VDI export read byte for byte"; else fail "VDI export read differs"; fi

# ---- a memory export as a destination
start mem memory 48M || fail "nbdkit memory"
M=$(uri mem)
assert_rc "convert VDI into a memory export (-n implied)" 0 "$VDISK" convert -q "$T/a.vdi" "$M"
assert_rc "the export holds the disk (qemu-img compare)" 0 qemu-img compare -q -f raw "$T/a.raw" "$M"
assert_rc "nbdcopy of the export" 0 nbdcopy "$M" "$T/back.raw"
if cmp -s <(head -c $((40 * MiB)) "$T/back.raw") "$T/a.raw"; then pass "export byte for byte"; else fail "export differs"; fi
# zero ranges went as zero requests: the memory plugin shows them as holes
holes=$(nbdinfo --map "$M" | awk '$1 < 41943040 && $3 % 2 == 1 {n += $2} END {print n + 0}')
if [ "$holes" -ge $((30 * MiB)) ]; then pass "zero ranges sent as NBD zero requests ($holes bytes are holes)"
else fail "only $holes bytes of the export are holes: zeros were written"; fi
assert_rc "-n into the export" 0 "$VDISK" convert -q -n "$T/a.raw" "$M"
assert_rc "-O vdi into an export refused" 1 "$VDISK" convert -q -O vdi "$T/a.raw" "$M"
assert_contains "-O vdi: message" "an NBD export is written as the raw disk it serves" "$T/.err"
start small memory 8M || fail "nbdkit memory (small)"
assert_rc "an export smaller than the source refused" 1 "$VDISK" convert -q "$T/a.raw" "$(uri small)"
assert_contains "smaller: message" "target is smaller" "$T/.err"
start ro -r memory 48M || fail "nbdkit memory -r"
assert_rc "a read-only export refused" 1 "$VDISK" convert -q "$T/a.raw" "$(uri ro)"
assert_contains "read-only: message" "the export is read-only" "$T/.err"
assert_rc "no server: a clear error" 1 "$VDISK" info "nbd+unix:///?socket=$T/none.sock"
assert_contains "no server: names the URI" "nbd+unix:///?socket=$T/none.sock" "$T/.err"

# ---- the vdisk plugin as the server (not under ASan: see nbd.sh)
BUILD=${BUILD:-$(dirname "$VDISK")}
PLUGIN=$BUILD/nbdkit-vdisk-plugin.so
if [ -f "$PLUGIN" ] && ! nm -D "$PLUGIN" 2>/dev/null | grep -q __asan_init; then
	start vp "$PLUGIN" "$T/a.vdi" || fail "nbdkit vdisk plugin"
	assert_rc "convert from the vdisk plugin -> vmdk" 0 "$VDISK" convert -q -O vmdk "$(uri vp)" "$T/vp.vmdk"
	assert_rc "vdisk plugin -> vmdk: qemu-img compare" 0 qemu-img compare -q "$T/a.raw" "$T/vp.vmdk"
else
	echo "note: the vdisk plugin is absent or built with ASan: its case skipped"
fi

# ---- an export that goes away mid-copy
start slow --filter=delay file "$T/a.raw" rdelay=100ms || fail "nbdkit delay"
"$VDISK" convert -q -O vdi "$(uri slow)" "$T/cut.vdi" >"$T/cut.out" 2>"$T/cut.err" &
cpid=$!
sleep 0.5
kill "$(cat "$T/slow.pid")"
rc=0
wait "$cpid" || rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -lt 128 ]; then pass "disconnect mid-copy: convert fails (exit $rc)"; else fail "disconnect mid-copy: exit $rc"; fi
if grep -q "nbd+unix:///?socket=$T/slow.sock" "$T/cut.err"; then pass "disconnect: the message names the export"
else fail "disconnect: message '$(head -c 300 "$T/cut.err")'"; fi
[ -e "$T/cut.vdi" ] && fail "disconnect: the output was renamed into place" || pass "disconnect: no output"
assert_eq "disconnect: no temporary file left" "" "$(find "$T" -name '*vdisk-tmp*')"
finish
