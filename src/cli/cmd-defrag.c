/*
 * vdisk defrag: rewrite an image with its blocks in guest order, into a
 * file allocated up front.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cli.h"

#include <getopt.h>
#include <string.h>

static const char usage[] =
	"Usage: vdisk defrag [-f FMT] [-p|-q] [--output=human|json] IMAGE\n"
	"\n"
	"Rewrite IMAGE so that its blocks lie in the file in guest order and the\n"
	"file gets few host extents: the image is copied into a new file beside\n"
	"it, allocated up front with one fallocate of its final size, which then\n"
	"replaces IMAGE atomically.  Every allocated block is kept; UUIDs, VMDK\n"
	"CID, adapter type and hardware version are kept.  Works for VDI (dynamic,\n"
	"fixed), sparse and flat VMDK and raw files (zero ranges stay holes).\n"
	"The filesystem needs free space for the new file; vdisk refuses to start\n"
	"otherwise.  Killed at any moment, IMAGE is intact.\n"
	"\n"
	"  -f, --format FMT   image format (default: probe)\n"
	"  -p, --progress     show progress (default when stderr is a terminal)\n"
	"  -q, --quiet        no progress\n"
	"      --output=FMT   human (default) or json\n"
	"  -h, --help         show this help\n";

int cmd_defrag(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "progress", no_argument, NULL, 'p' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct vd_rewrite_opts o = { 0 };
	struct vd_rewrite_result res;
	struct vd_error err = { 0 };
	struct cli_progress prog;
	int c, r, pflag = 0, quiet = 0, json = 0;

	while ((c = getopt_long(argc, argv, "f:pqh", lo, NULL)) != -1) {
		switch (c) {
		case 'f': o.format = optarg; break;
		case 'p': pflag = 1; break;
		case 'q': quiet = 1; break;
		case 'o':
			json = cli_output_mode("defrag", optarg);
			if (json < 0)
				return 1;
			break;
		case 'h': cli_usage(stdout, usage); return 0;
		default: cli_usage(stderr, usage); return 1;
		}
	}
	if (optind + 1 != argc) {
		cli_usage(stderr, usage);
		return 1;
	}
	cli_catch_signals();
	cli_progress_init(&prog, pflag);
	if (quiet)
		prog.enabled = 0;
	o.progress = cli_progress_cb;
	o.progress_ctx = &prog;
	o.cancel = &cli_cancel;
	r = vd_defrag(argv[optind], &o, &res, &err);
	cli_progress_end(&prog);
	if (r < 0)
		return cli_fail("defrag", &err, 1);
	cli_rewrite_report("defrag", argv[optind], json, &res);
	return 0;
}
