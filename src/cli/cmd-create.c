/*
 * vdisk create: a new, empty image.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cli.h"

#include <getopt.h>
#include <string.h>

static const char usage[] =
	"Usage: vdisk create -O FMT [-o OPTS] [--force] [--deterministic] DST SIZE\n"
	"\n"
	"Create an empty image of SIZE bytes (suffixes K, M, G, T: 10G, 512M,\n"
	"4141875200).  The image is built in a temporary file beside DST and\n"
	"renamed into place when complete.\n"
	"\n"
	"  -O, --format FMT   output format: raw, vdi or vmdk (-f is accepted too)\n"
	"  -o OPTS            format options, comma separated:\n"
	"                       vdi: subformat=dynamic|fixed (static=on is fixed),\n"
	"                            block_size=SIZE (default 1M)\n"
	"                       raw: preallocation=off|falloc\n"
	"                       vmdk: subformat=monolithicSparse|monolithicFlat|\n"
	"                             twoGbMaxExtentSparse|twoGbMaxExtentFlat|streamOptimized,\n"
	"                             adapter_type=ide|buslogic|lsilogic|legacyESX,\n"
	"                             hwversion=N, compat=esxi|workstation|virtualbox\n"
	"      --force        replace an existing DST\n"
	"      --deterministic  fixed UUIDs, for reproducible images\n"
	"  -h, --help         show this help\n";

int cmd_create(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "format", required_argument, NULL, 'O' },
		{ "force", no_argument, NULL, 'F' },
		{ "deterministic", no_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *fmt = NULL, *opts = NULL;
	struct vd_error err = { 0 };
	unsigned flags = VD_CREATE_EXCL;
	uint64_t size;
	int c;

	while ((c = getopt_long(argc, argv, "O:f:o:h", lo, NULL)) != -1) {
		switch (c) {
		case 'O': case 'f': fmt = optarg; break;
		case 'o': opts = optarg; break;
		case 'F': flags &= ~(unsigned)VD_CREATE_EXCL; break;
		case 'd': flags |= VD_CREATE_DETERMINISTIC; break;
		case 'h': cli_usage(stdout, usage); return 0;
		default: cli_usage(stderr, usage); return 1;
		}
	}
	if (optind + 2 != argc || !fmt) {
		cli_usage(stderr, usage);
		return 1;
	}
	if (vd_parse_size(argv[optind + 1], &size) < 0) {
		cli_err("create", "invalid size '%s' (examples: 10G, 512M, 4141875200)", argv[optind + 1]);
		return 1;
	}
	cli_catch_signals();
	if (vd_create(argv[optind], fmt, size, opts, flags, &cli_cancel, &err) < 0)
		return cli_fail("create", &err, 1);
	return 0;
}
