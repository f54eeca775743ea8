#!/usr/bin/env bash
# make bench: time vdisk and qemu-img on the same images in the same run,
# alternating, and print one line per case with the best times, the ratios
# (qemu-img time / vdisk time: > 1 means vdisk is faster) and peak memory.
#
# vdisk flushes its output to disk before renaming it into place (so a crash
# never leaves a damaged image under the final name); qemu-img convert does
# not flush (its default cache mode for convert is "unsafe").  So both are
# compared like for like: vdisk --no-sync against qemu-img, and vdisk
# against qemu-img followed by "sync -d" of its output.
#
#   BENCH_DIR    work directory on a real disk (default /var/tmp/vdisk-bench)
#   BENCH_RUNS   runs per tool and case (default 3)
#   BENCH_GUEST  guest image size (default 3G)
#   BENCH_RUNS_STREAM  runs of the (slow, deflate-bound) raw->streamOptimized case (default 1)
#   BENCH_DROP_CACHES=1  drop the page cache before every run (root)
#   BENCH_ONLY   run only the cases whose name contains this text (e.g. stream)
#   BENCH_STAT   min (default: the fastest run) or median of the runs
set -eu
VDISK=${VDISK:?}
command -v qemu-img >/dev/null || { echo "bench: qemu-img not installed (make deps)"; exit 1; }
DIR=${BENCH_DIR:-/var/tmp/vdisk-bench}
RUNS=${BENCH_RUNS:-3}
GUEST=${BENCH_GUEST:-3G}
mkdir -p "$DIR"
cd "$DIR"

rand() { (openssl enc -aes-128-ctr -pass "pass:$1" -nosalt -pbkdf2 </dev/zero 2>/dev/null || true) | head -c "$2"; }

if [ ! -f guest.raw ]; then
	echo "bench: building a guest-like ext4 image ($GUEST) in $DIR ..."
	rm -rf tree && mkdir -p tree/random tree/text tree/small
	rand seed1 $((400 << 20)) > tree/random/blob1
	rand seed2 $((200 << 20)) > tree/random/blob2
	for i in $(seq 1 40); do
		yes "log line $i: the quick brown fox jumps over the lazy dog 0123456789" | head -c $((8 << 20)) > tree/text/log$i
	done
	for i in $(seq 1 2000); do rand "s$i" 6000 > tree/small/f$i; done
	truncate -s "$GUEST" guest.raw
	# deleted files: old data the filesystem no longer uses but which is
	# still in the image
	rand old1 $((150 << 20)) | dd of=guest.raw bs=1M seek=1800 conv=notrunc status=none
	rand old2 $((100 << 20)) | dd of=guest.raw bs=1M seek=2600 conv=notrunc status=none
	mkfs.ext4 -q -F -E nodiscard -d tree guest.raw
	rm -rf tree
	qemu-img convert -O vdi guest.raw guest.vdi
fi
[ -f guest.vmdk ] || qemu-img convert -O vmdk guest.raw guest.vmdk
[ -f guest-stream.vmdk ] || qemu-img convert -O vmdk -o subformat=streamOptimized guest.raw guest-stream.vmdk
if [ ! -f sparse.raw ]; then
	echo "bench: building a mostly-empty 64 GiB sparse image ..."
	truncate -s 64G sparse.raw
	for i in 0 7 19 33 50 63; do
		rand "sp$i" $((8 << 20)) | dd of=sparse.raw bs=1M seek=$((i * 1024)) conv=notrunc status=none
	done
	qemu-img convert -O vdi sparse.raw sparse.vdi
fi

drop() { if [ "${BENCH_DROP_CACHES:-0}" = 1 ]; then sync; echo 3 > /proc/sys/vm/drop_caches; fi; }
# run1 OUT CMD... -> prints "seconds maxrss_kib"
run1() {
	local out=$1; shift
	rm -f "$out"
	drop
	/usr/bin/time -f "%e %M" -o time.txt "$@" >/dev/null 2>&1
	cat time.txt
}
# The best of the runs (BENCH_STAT=median for the median): on this kind of
# machine background memory reclaim makes single runs vary up to threefold,
# and the fastest run is the one least disturbed.
median() {
	if [ "${BENCH_STAT:-min}" = median ]; then
		sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
	else
		sort -n | head -1
	fi
}

printf '%-24s %8s %8s %8s %8s %7s %7s %6s %6s\n' case "vdisk s" "v-nosync" "qemu s" "q+sync s" ratio "r.sync" "v MiB" "q MiB"
bench_case() {
	local name=$1 src=$2 vargs=$3 qargs=$4 out=$5 runs=${6:-$RUNS}
	local vt=() nt=() qt=() st=() vm=0 qm=0 r
	case $name in *"${BENCH_ONLY:-}"*) ;; *) return 0 ;; esac
	for i in $(seq 1 "$runs"); do
		# shellcheck disable=SC2086
		r=$(run1 "$out" "$VDISK" convert -q $vargs "$src" "$out"); vt+=("${r% *}"); vm=$(( ${r#* } > vm ? ${r#* } : vm ))
		# shellcheck disable=SC2086
		r=$(run1 "$out" "$VDISK" convert -q --no-sync $vargs "$src" "$out"); nt+=("${r% *}")
		# shellcheck disable=SC2086
		r=$(run1 "$out" qemu-img convert $qargs "$src" "$out"); qt+=("${r% *}"); qm=$(( ${r#* } > qm ? ${r#* } : qm ))
		# shellcheck disable=SC2086
		r=$(run1 "$out" bash -c 'qemu-img convert "$@" && sync -d "${@: -1}"' _ $qargs "$src" "$out"); st+=("${r% *}")
	done
	rm -f "$out"
	local v n q s
	v=$(printf '%s\n' "${vt[@]}" | median)
	n=$(printf '%s\n' "${nt[@]}" | median)
	q=$(printf '%s\n' "${qt[@]}" | median)
	s=$(printf '%s\n' "${st[@]}" | median)
	printf '%-24s %8s %8s %8s %8s %7s %7s %6s %6s\n' "$name" "$v" "$n" "$q" "$s" \
		"$(awk -v v="$n" -v q="$q" 'BEGIN { printf "%.2f", (v > 0 ? q / v : 0) }')" \
		"$(awk -v v="$v" -v q="$s" 'BEGIN { printf "%.2f", (v > 0 ? q / v : 0) }')" \
		$((vm / 1024)) $((qm / 1024))
}
bench_case "raw->vdi dynamic" guest.raw "-O vdi" "-O vdi" out.vdi
bench_case "raw->vdi fixed" guest.raw "-O vdi -o subformat=fixed" "-O vdi -o static=on" out.vdi
bench_case "vdi->raw" guest.vdi "-O raw" "-O raw" out.raw
bench_case "vdi->vdi" guest.vdi "-O vdi" "-O vdi" out.vdi
bench_case "raw->vmdk sparse" guest.raw "-O vmdk" "-O vmdk" out.vmdk
bench_case "vmdk->raw" guest.vmdk "-O raw" "-O raw" out.raw
bench_case "vdi->vmdk" guest.vdi "-O vmdk" "-O vmdk" out.vmdk
bench_case "raw->vmdk stream" guest.raw "-O vmdk -o subformat=streamOptimized" \
	"-O vmdk -o subformat=streamOptimized" out.vmdk "${BENCH_RUNS_STREAM:-1}"
bench_case "vmdk stream->raw" guest-stream.vmdk "-O raw" "-O raw" out.raw
bench_case "sparse 64G raw->vdi" sparse.raw "-O vdi" "-O vdi" out.vdi
bench_case "sparse 64G vdi->raw" sparse.vdi "-O raw" "-O raw" out.raw

bench_pair() { # NAME VDISK-SHELL-COMMAND OTHER-SHELL-COMMAND
	local name=$1 vc=$2 oc=$3 vt=() ot=() r v o
	case $name in *"${BENCH_ONLY:-}"*) ;; *) return 0 ;; esac
	for i in $(seq 1 "$RUNS"); do
		r=$(run1 out.tmp bash -c "$vc"); vt+=("${r% *}")
		r=$(run1 out.tmp bash -c "$oc"); ot+=("${r% *}")
	done
	rm -f out.tmp
	v=$(printf '%s\n' "${vt[@]}" | median)
	o=$(printf '%s\n' "${ot[@]}" | median)
	printf '%-24s %8s %8s %8s %8s %7s\n' "$name" "$v" - "$o" - \
		"$(awk -v v="$v" -v o="$o" 'BEGIN { printf "%.2f", (v > 0 ? o / v : 0) }')"
}

# Read-speed cases write vdisk's output on tmpfs when there is room, so that
# they do not measure how fast this machine's disk takes dirty pages.
SHM=$DIR
if [ -d /dev/shm ] && [ -w /dev/shm ] &&
   [ "$(df -k --output=avail /dev/shm | tail -1)" -gt $(( $(stat -c %s guest.raw) / 1024 )) ]; then
	SHM=$(mktemp -d /dev/shm/vdisk-bench.XXXXXX)
	trap 'rm -rf "$SHM"' EXIT
fi

# ---- snapshot chains (issue 13): what reading through three layers costs,
# against the same guest flattened into one image, and against qemu-img
case "chain" in *"${BENCH_ONLY:-}"*)
	if [ ! -f c3.vmdk ]; then
		echo "bench: building 3-deep VMDK and VDI chains over the guest ..."
		cp guest.vmdk c0.vmdk
		cp --sparse=always guest.raw cmod.raw
		prev=c0.vmdk pv=guest.vdi
		for l in 1 2 3; do
			qemu-img create -q -f vmdk -b "$prev" -F vmdk "c$l.vmdk"
			for k in 0 1 2; do   # 3 x 64 MiB per layer, spread over the disk
				o=$(( (l * 97 + k * 911) % 2900 ))
				qemu-io -c "write -P $((l * 16 + k)) ${o}M 64M" "c$l.vmdk" >/dev/null
				rand "c$l$k" $((64 << 20)) | dd of=cmod.raw bs=1M seek="$o" conv=notrunc status=none
			done
			"$VDISK" convert -q --no-sync -O vdi -B "$pv" cmod.raw "c$l.vdi"
			prev=c$l.vmdk pv=c$l.vdi
		done
		qemu-img convert -O vmdk c3.vmdk c3flat.vmdk
		"$VDISK" convert -q --no-sync -O vdi c3.vdi c3flat.vdi
		rm -f cmod.raw
	fi
	O="'$SHM/out.tmp'"
	bench_pair "chain3 vmdk->raw / qemu" "'$VDISK' convert -q --no-sync -O raw c3.vmdk $O; rm -f $O" \
		"qemu-img convert -O raw c3.vmdk $O; rm -f $O"
	bench_pair "chain3 vmdk / flat" "'$VDISK' convert -q --no-sync -O raw c3.vmdk $O; rm -f $O" \
		"'$VDISK' convert -q --no-sync -O raw c3flat.vmdk $O; rm -f $O"
	bench_pair "chain3 vdi / flat" "'$VDISK' convert -q --no-sync -O raw c3.vdi $O; rm -f $O" \
		"'$VDISK' convert -q --no-sync -O raw c3flat.vdi $O; rm -f $O"
	;;
esac

# ---- compressed sources (issue 18): vdisk against the tools a user would
# pipe instead, like for like in the same run
case "xz zstd loop" in *"${BENCH_ONLY:-}"*)
	command -v zstd >/dev/null && [ ! -f guest.raw.zst ] && zstd -q -T2 -3 guest.raw -o guest.raw.zst
	command -v xz >/dev/null && [ ! -f guest.raw.xz ] && xz -k -T2 -1 guest.raw
	;;
esac
# decompression throughput: vdisk's output on tmpfs (the tools' output goes
# through a pipe to cat), then onto a file on disk
if [ -f guest.raw.zst ]; then
	bench_pair "zstd -> raw (2 thr)" "'$VDISK' convert -q --no-sync -O raw guest.raw.zst '$SHM/out.tmp'; rm -f '$SHM/out.tmp'" \
		"zstd -q -T2 -dc guest.raw.zst | cat >/dev/null"
	bench_pair "zstd -> stdout | cat" "'$VDISK' convert -q -O raw guest.raw.zst - | cat >/dev/null" \
		"zstd -q -T2 -dc guest.raw.zst | cat >/dev/null"
	bench_pair "zstd -> disk file" "'$VDISK' convert -q --no-sync -O raw guest.raw.zst out.tmp" \
		"zstd -q -T2 -d -f guest.raw.zst -o out.tmp"
fi
if [ -f guest.raw.xz ]; then
	bench_pair "xz -> raw (2 thr)" "'$VDISK' convert -q --no-sync -O raw guest.raw.xz '$SHM/out.tmp'; rm -f '$SHM/out.tmp'" \
		"xz -T2 -dc guest.raw.xz | cat >/dev/null"
	bench_pair "xz -> stdout | cat" "'$VDISK' convert -q -O raw guest.raw.xz - | cat >/dev/null" \
		"xz -T2 -dc guest.raw.xz | cat >/dev/null"
	bench_pair "xz -> disk file" "'$VDISK' convert -q --no-sync -O raw guest.raw.xz out.tmp" \
		"xz -T2 -dc guest.raw.xz | cp --sparse=always /dev/stdin out.tmp"
	case "loop" in *"${BENCH_ONLY:-}"*)
		if [ "$(id -u)" = 0 ] && command -v losetup >/dev/null; then
			truncate -s "$GUEST" loop.img
			if LOOP=$(losetup -f --show loop.img 2>/dev/null); then
				bench_pair "xz -> /dev/loop" "'$VDISK' convert -q --force guest.raw.xz $LOOP" \
					"xzcat guest.raw.xz | dd of=$LOOP bs=4M conv=sparse,fsync status=none"
				if command -v bmaptool >/dev/null; then
					[ -f guest.bmap ] || bmaptool create -o guest.bmap guest.raw
					bench_pair "xz -> loop (bmaptool)" "'$VDISK' convert -q --force guest.raw.xz $LOOP" \
						"bmaptool -q copy --bmap guest.bmap guest.raw.xz $LOOP"
				fi
				losetup -d "$LOOP"
			fi
			rm -f loop.img
		fi
		;;
	esac
fi

# ---- live access (issue 16): NBD URIs, the nbdkit plugin, FUSE
PLUGIN=${VDISK_NBDKIT_PLUGIN:-$(dirname "$VDISK")/nbdkit-vdisk-plugin.so}
nbd_pids=()
nbd_start() { # SOCK ARGS... (nbdkit, or qemu-nbd when the first arg is qemu-nbd)
	local sock=$1; shift
	rm -f "$sock" "$sock.pid"
	if [ "$1" = qemu-nbd ]; then
		shift
		qemu-nbd --fork --persistent --pid-file="$sock.pid" -k "$sock" "$@" || return 1
	else
		nbdkit -U "$sock" -P "$sock.pid" "$@" || return 1
	fi
	for _ in $(seq 100); do [ -S "$sock" ] && [ -s "$sock.pid" ] && break; sleep 0.05; done
	nbd_pids+=("$(cat "$sock.pid")")
}
nbd_stop() { for p in "${nbd_pids[@]}"; do kill "$p" 2>/dev/null || true; done; nbd_pids=(); }
case "nbd fuse" in *"${BENCH_ONLY:-}"*)
	if command -v nbdkit >/dev/null && command -v nbdcopy >/dev/null; then
		S=$DIR/file.sock
		nbd_start "$S" file guest.raw
		U="nbd+unix:///?socket=$S"
		bench_pair "nbd export -> vdi" "'$VDISK' convert -q --no-sync -O vdi '$U' out.tmp" \
			"qemu-img convert -O vdi '$U' out.tmp"
		nbd_stop
		GB=$(stat -c %s guest.raw)
		nbd_start "$DIR/mem.sock" memory "$GB"
		U="nbd+unix:///?socket=$DIR/mem.sock"
		bench_pair "vdi -> nbd memory" "'$VDISK' convert -q guest.vdi '$U'" \
			"qemu-img convert -n -O raw guest.vdi '$U'"
		nbd_stop
		if [ -f "$PLUGIN" ]; then
			# read-only (-r): a read-write open is refused while qemu-nbd holds its lock
			nbd_start "$DIR/vp.sock" -r "$PLUGIN" guest.vdi
			nbd_start "$DIR/qn.sock" qemu-nbd -r -f vdi guest.vdi
			bench_pair "nbdcopy plugin/qemu-nbd" "nbdcopy 'nbd+unix:///?socket=$DIR/vp.sock' null:" \
				"nbdcopy 'nbd+unix:///?socket=$DIR/qn.sock' null:"
			nbd_stop
		fi
	fi
	if [ -c /dev/fuse ]; then
		mkdir -p mnt
		bench_pair "fuse dd / vdisk read" "'$VDISK' mount guest.vdi mnt && dd if=mnt/disk of=/dev/null bs=1M status=none; '$VDISK' umount mnt" \
			"'$VDISK' convert -q --no-sync -O raw guest.vdi '$SHM/out.tmp'; rm -f '$SHM/out.tmp'"
	fi
	;;
esac
echo "(chains: vdisk reading a 3-deep chain (vdisk) against qemu-img reading it, or"
echo " against vdisk reading the same guest flattened into one image (other): a ratio"
echo " below 1 is what the chain costs.)"
echo "(live: nbd export -> vdi and vdi -> nbd memory: other = qemu-img on the same URI;"
echo " nbdcopy to null: from the vdisk plugin (vdisk) against qemu-nbd (other);"
echo " fuse: mount, dd of mnt/disk and umount (vdisk) against vdisk convert -O raw of the"
echo " same VDI onto tmpfs (other):"
echo " a ratio of 0.5 or more meets the target of half of vdisk's own read speed.)"
echo "(compressed sources: the other column is the tool's own decompression piped to cat"
echo " (throughput; vdisk's output on tmpfs), the tool writing a sparse file on disk"
echo " (zstd -o, xz | cp --sparse=always), xzcat | dd conv=sparse onto the device, or"
echo " bmaptool copy with a bmap made beforehand; ratio = other / vdisk.)"

BENCH_STAT_NAME=$([ "${BENCH_STAT:-min}" = median ] && echo median || echo minimum)
echo "(ratio  = qemu-img time / vdisk --no-sync time: neither flushes its output (qemu-img"
echo "          convert's default cache mode is unsafe);"
echo " r.sync = (qemu-img + sync -d) time / vdisk time: both outputs on disk (vdisk's"
echo "          default: it flushes before renaming the output into place);"
echo " > 1.00 means vdisk is faster.  Times: the $BENCH_STAT_NAME of $RUNS runs (stream: ${BENCH_RUNS_STREAM:-1}), peak RSS in MiB."
echo " qemu-img's static=on VDI is sparse, vdisk's fixed VDI is really preallocated.)"
