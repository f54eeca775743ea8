#!/bin/sh
# Build the libFuzzer harness and run it.
#   tests/fuzz/run.sh [SECONDS] [extra libFuzzer args...]
# Environment: CC (default clang), OUT (default tests/fuzz/out), JOBS (default 1),
# FUZZ_STRICT=1 (enable the oracles that known bugs trip, see README.md).
set -eu
cd "$(dirname "$0")/../.."
SECS=${1:-60}
[ $# -gt 0 ] && shift
CC=${CC:-clang}
OUT=${OUT:-tests/fuzz/out}
JOBS=${JOBS:-1}
mkdir -p "$OUT/corpus" "$OUT/artifacts"

FLAGS="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1 -std=gnu11 -D_FILE_OFFSET_BITS=64 -Iinclude -Isrc/core"
# shellcheck disable=SC2086
$CC $FLAGS -o "$OUT/fuzz_image" tests/fuzz/fuzz_image.c \
	src/core/*.c src/ops/*.c formats/*.c -luuid -lpthread

# Seeds: the committed ones plus any generated (tests/fuzz/make-seeds.sh).
SEEDS=tests/fuzz/seeds
[ -d "$OUT/seeds" ] || sh tests/fuzz/make-seeds.sh "$OUT/seeds" || true
mkdir -p "$OUT/seeds"

set -- -max_len=70000 -timeout=10 -rss_limit_mb=1024 -max_total_time="$SECS" \
	-artifact_prefix="$OUT/artifacts/" -print_final_stats=1 "$@"
if [ "$JOBS" -gt 1 ]; then
	set -- -jobs="$JOBS" -workers="$JOBS" "$@"
fi
exec "$OUT/fuzz_image" "$@" "$OUT/corpus" "$SEEDS" "$OUT/seeds"
