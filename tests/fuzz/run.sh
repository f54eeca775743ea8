#!/bin/sh
# Build the libFuzzer harness and run it.
#   tests/fuzz/run.sh [SECONDS] [extra libFuzzer args...]
# Environment: CC (default clang), OUT (default tests/fuzz/out), JOBS (default 1),
# FUZZ_STRICT=1 (enable the oracles that known bugs trip, see README.md),
# HARNESS=fuzz_image (default: images and formats) or fuzz_fs (the guest
# filesystem walkers over a raw disk).
set -eu
cd "$(dirname "$0")/../.."
SECS=${1:-60}
[ $# -gt 0 ] && shift
CC=${CC:-clang}
OUT=${OUT:-tests/fuzz/out}
JOBS=${JOBS:-1}
HARNESS=${HARNESS:-fuzz_image}
mkdir -p "$OUT/corpus-$HARNESS" "$OUT/artifacts"

# libdeflate when installed, as the Makefile chooses it
DEFLATE_CFLAGS= DEFLATE_LIBS=
if pkg-config --exists libdeflate 2>/dev/null; then DEFLATE_CFLAGS=-DHAVE_LIBDEFLATE DEFLATE_LIBS=-ldeflate; fi
FLAGS="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1 -std=gnu11 -D_FILE_OFFSET_BITS=64 -Iinclude -Isrc/core"
# shellcheck disable=SC2086
$CC $FLAGS -o "$OUT/$HARNESS" "tests/fuzz/$HARNESS.c" \
	src/core/*.c src/ops/*.c src/fs/*.c formats/*.c $DEFLATE_CFLAGS -luuid -lpthread -lz -lblkid -llzma -lzstd -lbz2 -lnbd -lm $DEFLATE_LIBS

# Seeds: the committed ones plus any generated (tests/fuzz/make-seeds*.sh).
if [ "$HARNESS" = fuzz_chain ]; then
	SEEDS=tests/fuzz/seeds-chain
	GEN=$OUT/seeds-chain
elif [ "$HARNESS" = fuzz_fs ]; then
	SEEDS=$OUT/seeds-fs
	[ -d "$SEEDS" ] || sh tests/fuzz/make-seeds-fs.sh "$SEEDS" >/dev/null || true
	GEN=$SEEDS
else
	SEEDS=tests/fuzz/seeds
	GEN=$OUT/seeds
	[ -d "$GEN" ] || sh tests/fuzz/make-seeds.sh "$GEN" || true
fi
mkdir -p "$GEN"

MAXLEN=70000
[ "$HARNESS" = fuzz_fs ] && MAXLEN=270000 # the hand-built XFS seeds are 256 KiB
set -- -max_len=$MAXLEN -timeout=10 -rss_limit_mb=1024 -max_total_time="$SECS" \
	-artifact_prefix="$OUT/artifacts/" -print_final_stats=1 "$@"
if [ "$JOBS" -gt 1 ]; then
	set -- -jobs="$JOBS" -workers="$JOBS" "$@"
fi
exec "$OUT/$HARNESS" "$@" "$OUT/corpus-$HARNESS" "$SEEDS" "$GEN"
