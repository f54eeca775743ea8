#!/usr/bin/env bash
# Runs every test group: the cmocka unit binaries given as arguments, then
# the shell groups tests/cli, tests/cross and tests/real.  Exit 77 = skipped.
set -u
cd "$(dirname "$0")/.."
pass=0 failn=0 skipn=0 failed=()
run() {
	local name=$1; shift
	local start=$SECONDS rc=0
	"$@" >"$LOG" 2>&1 || rc=$?
	case $rc in
	0) pass=$((pass + 1)); printf 'PASS  %-40s %3ss\n' "$name" $((SECONDS - start)) ;;
	77) skipn=$((skipn + 1)); printf 'SKIP  %-40s %s\n' "$name" "$(grep -m1 SKIP "$LOG")" ;;
	*) failn=$((failn + 1)); failed+=("$name"); printf 'FAIL  %-40s (exit %s)\n' "$name" "$rc"
	   sed 's/^/    | /' "$LOG" | tail -40 ;;
	esac
}
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
for t in "$@"; do run "unit/$(basename "$t")" "$t"; done
for t in tests/cli/*.sh tests/cross/*.sh tests/real/*.sh; do
	[ -e "$t" ] || continue
	run "${t#tests/}" bash "$t"
done
echo "passed $pass, failed $failn, skipped $skipn"
[ "$failn" -eq 0 ] || { echo "failed: ${failed[*]}"; exit 1; }
