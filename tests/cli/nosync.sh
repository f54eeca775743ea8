#!/usr/bin/env bash
# convert --no-sync: the same output, written without flushing it to disk.
#  - raw -> VDI, VMDK (sparse, split sparse, stream) and raw with --no-sync
#    read back equal to the source (vdisk compare, qemu-img compare when
#    installed) and pass vdisk check;
#  - with strace: the default convert calls fdatasync/fsync on its output,
#    --no-sync calls none of fsync, fdatasync, sync_file_range;
#  - --no-sync is refused for a block-device target (always fsynced).
. "$(dirname "$0")/../lib.sh"
MiB=$((1 << 20))

# 6 MiB of data with a hole and a zero run, not a multiple of 64 KiB
{ rand_bytes ns1 $((2 * MiB)); head -c $((MiB + 4096)) /dev/zero; rand_bytes ns2 $((3 * MiB - 12345)); } >"$T/src.raw"
truncate -s +3M "$T/src.raw"

for spec in "raw:" "vdi:" "vdi:subformat=fixed" "vmdk:" "vmdk:subformat=twoGbMaxExtentSparse" \
	"vmdk:subformat=monolithicFlat" "vmdk:subformat=streamOptimized"; do
	fmt=${spec%%:*} opt=${spec#*:}
	d=$T/o-$fmt-${opt#subformat=}
	mkdir -p "$d"
	assert_rc "--no-sync $fmt $opt: convert" 0 "$VDISK" convert -q --no-sync -O "$fmt" ${opt:+-o "$opt"} "$T/src.raw" "$d/x.$fmt"
	assert_rc "--no-sync $fmt $opt: same contents (vdisk compare)" 0 "$VDISK" compare "$T/src.raw" "$d/x.$fmt"
	[ "$fmt" = raw ] || assert_rc "--no-sync $fmt $opt: vdisk check" 0 "$VDISK" check "$d/x.$fmt"
	if command -v qemu-img >/dev/null; then
		assert_rc "--no-sync $fmt $opt: qemu-img compare" 0 qemu-img compare -q "$T/src.raw" "$d/x.$fmt"
	fi
	assert_eq "--no-sync $fmt $opt: no temporary file left" "" "$(find "$d" -name '.*vdisk-tmp*')"
done

if command -v strace >/dev/null && strace -f -qq -e trace=none true 2>/dev/null; then
	syncs() { grep -cE '^([0-9]+ +)?(fsync|fdatasync|sync_file_range)\(' "$1" || true; }
	for args in "-O vdi" "-O vmdk -o subformat=twoGbMaxExtentSparse" "-O raw"; do
		rm -f "$T"/s.img*
		strace -f -qq -o "$T/trace" -e trace=fsync,fdatasync,sync_file_range \
			"$VDISK" convert -q $args "$T/src.raw" "$T/s.img"
		n=$(syncs "$T/trace")
		[ "$n" -gt 0 ] && pass "default ($args): output flushed ($n sync calls)" ||
			fail "default ($args): no sync call: $(head -5 "$T/trace")"
		rm -f "$T"/s.img*
		strace -f -qq -o "$T/trace" -e trace=fsync,fdatasync,sync_file_range \
			"$VDISK" convert -q --no-sync $args "$T/src.raw" "$T/s.img"
		assert_eq "--no-sync ($args): no fsync, fdatasync or sync_file_range" 0 "$(syncs "$T/trace")"
	done
else
	echo "strace not usable: the sync-call checks are skipped"
fi

# a block device target is always fsynced: --no-sync is refused before
# anything is opened (a loop device over a file, which must stay unchanged)
truncate -s 16M "$T/dev.img"
if dev=$(losetup -f --show "$T/dev.img" 2>/dev/null); then
	on_exit "losetup -d $dev"
	assert_rc "--no-sync with a device target: refused" 1 "$VDISK" convert -q --no-sync "$T/src.raw" "$dev"
	assert_contains "--no-sync with a device target: says why" "always ends with fsync" "$T/.err"
	assert_eq "--no-sync with a device target: device unchanged" "" "$(tr -d '\0' <"$T/dev.img" | head -c 1)"
else
	echo "no loop device: the device refusal check is skipped"
fi

finish
