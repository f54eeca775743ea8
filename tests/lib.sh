# Shared helpers for the shell test groups.  Source it first thing:
#   . "$(dirname "$0")/../lib.sh"
# Each test script exits 0 (pass), 77 (skipped) or anything else (fail).
set -u
VDISK=${VDISK:?VDISK must point to the vdisk binary}
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TESTDATA=$TOP/testdata
TESTIMAGES=${VDISK_TESTIMAGES:-$(cd "$TOP/.." && pwd)/shared/testimages}
T=$(mktemp -d "${TMPDIR:-/tmp}/vdisk-test.XXXXXX")
_cleanup_hooks=()
_cleanup() {
	local h
	for h in "${_cleanup_hooks[@]}"; do eval "$h" || true; done
	rm -rf "$T"
}
trap _cleanup EXIT
on_exit() { _cleanup_hooks+=("$1"); }

_failures=0
_failed=()
fail() { echo "FAIL: $*" >&2; _failures=$((_failures + 1)); _failed+=("$*"); }
pass() { echo "ok: $*"; }
skip() { echo "SKIP: $*"; exit 77; }
need() { local c; for c in "$@"; do command -v "$c" >/dev/null 2>&1 || skip "$c not installed"; done; }

# assert_eq WHAT EXPECTED ACTUAL
assert_eq() {
	if [ "$2" == "$3" ]; then pass "$1"; else fail "$1: expected '$2', got '$3'"; fi
}
# assert_rc WHAT EXPECTED_RC CMD...
assert_rc() {
	local what=$1 want=$2; shift 2
	local rc=0
	"$@" >"$T/.out" 2>"$T/.err" || rc=$?
	if [ "$rc" == "$want" ]; then pass "$what"; else
		fail "$what: exit $rc, expected $want ($(head -c 300 "$T/.err"))"; fi
}
# assert_contains WHAT NEEDLE FILE
assert_contains() {
	if grep -qF -- "$2" "$3"; then pass "$1"; else fail "$1: '$2' not in $(head -c 300 "$3")"; fi
}
# deterministic pseudo-random bytes: rand_bytes SEED COUNT
rand_bytes() { openssl enc -aes-128-ctr -pass "pass:$1" -nosalt -pbkdf2 </dev/zero 2>/dev/null | head -c "$2"; }
finish() {
	local m
	# repeat failures at the end, where tests/run.sh's tail of the log shows them
	for m in "${_failed[@]}"; do echo "FAIL (summary): $m" >&2; done
	if [ "$_failures" -gt 0 ]; then echo "$_failures failure(s)" >&2; exit 1; fi
	exit 0
}
