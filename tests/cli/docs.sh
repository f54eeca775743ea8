#!/usr/bin/env bash
# Docs that cannot drift: for every command that `vdisk --help` lists,
#  - the command has a man page, and every long option of its --help option
#    list is an item of the man page's OPTIONS section, and the reverse;
#  - every list of formats in a --help text or a man page's OPTIONS section
#    names the registered formats (`vdisk --help`, "Formats:"), all of them;
#  - every environment variable the sources read is in vdisk(1) ENVIRONMENT;
#  - vdisk(1) lists every command, and every command has a --help.
. "$(dirname "$0")/../lib.sh"
MAN=$TOP/man

cmds=$("$VDISK" --help | awk '/^Commands:/ {f = 1; next} /^$/ {f = 0} f {print $1}')
[ -n "$cmds" ] || fail "vdisk --help lists no commands"
registered=$("$VDISK" --help | sed -n 's/^Formats: //p' | tr ' ' '\n' | sort -u | tr '\n' ' ')
[ -n "$registered" ] || fail "vdisk --help lists no formats"
# names a user could take for a format
universe="raw vdi vmdk qcow qcow2 qed vhd vhdx vpc parallels"

# the long options of a --help text: option-list lines ("  -f, --format FMT ...")
help_opts() { grep -E '^ +-' | sed -E 's/^ +//; s/  .*//' | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u; }
# the long options of the items (.TP headings) of a man page's OPTIONS
man_opts() {
	awk '/^\.SH OPTIONS/ {f = 1; next} /^\.SH/ {f = 0} f && tp {print; tp = 0} f && /^\.TP/ {tp = 1}' "$1" |
		grep -oE -- '\\-\\-[a-z][a-z0-9\\-]*' | sed 's/\\//g' | sort -u
}
# the formats a line names, if it names two or more of them
formats_of() {
	local w out=""
	for w in $universe; do
		grep -qE "(^|[^[:alnum:]_-])$w([^[:alnum:]_-]|$)" <<<"$1" && out+="$w "
	done
	[ "$(wc -w <<<"$out")" -ge 2 ] && echo "$out"
}
check_lists() { # WHERE TEXT
	local line got
	while IFS= read -r line; do
		# qemu-img's names for its own formats, not a list of vdisk's
		case $line in *qemu*|*vhdx*|*qcow*|*"does not read"*) continue ;; esac
		got=$(formats_of "$line") || continue
		got=$(tr ' ' '\n' <<<"$got" | sed '/^$/d' | sort -u | tr '\n' ' ')
		assert_eq "$1: format list in \"$(head -c 60 <<<"$line")\"" "$registered" "$got"
	done <<<"$2"
}

for c in $cmds; do
	page=$MAN/vdisk-$c.1
	if [ ! -f "$page" ]; then fail "$c has no man page"; continue; fi
	"$VDISK" "$c" --help >"$T/help" 2>&1 || fail "$c --help fails"
	h=$(help_opts <"$T/help")
	m=$(man_opts "$page")
	only_help=$(comm -23 <(echo "$h") <(echo "$m") | tr '\n' ' ')
	only_man=$(comm -13 <(echo "$h") <(echo "$m") | tr '\n' ' ')
	assert_eq "$c: options in --help but not in vdisk-$c(1) OPTIONS" "" "${only_help% }"
	assert_eq "$c: options in vdisk-$c(1) OPTIONS but not in --help" "" "${only_man% }"
	check_lists "$c --help" "$(grep -iE 'format' "$T/help")"
	check_lists "vdisk-$c(1)" "$(awk '/^\.SH OPTIONS/ {f = 1; next} /^\.SH/ {f = 0} f' "$page" | sed 's/\\//g' | grep -iE 'format')"
	grep -qE "^\.BR? vdisk\\\\-$c " "$MAN/vdisk.1" || grep -q "vdisk\\\\-$c (1)" "$MAN/vdisk.1" ||
		fail "vdisk(1) does not name vdisk-$c(1)"
done

# environment variables read by the code are documented
for v in $(grep -rhoE 'getenv\("[A-Z_]+"\)' "$TOP/src" "$TOP/formats" | sed 's/getenv("\(.*\)")/\1/' | sort -u); do
	if awk '/^\.SH ENVIRONMENT/ {f = 1; next} /^\.SH/ {f = 0} f' "$MAN/vdisk.1" | grep -q "$v"; then
		pass "vdisk(1) ENVIRONMENT names $v"
	else
		fail "vdisk(1) ENVIRONMENT does not name $v, which the code reads"
	fi
done
finish
