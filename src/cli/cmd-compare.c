/*
 * vdisk compare: exit 0 when the guest contents are equal, 1 when they
 * differ, 2 on error.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cli.h"

#include <getopt.h>
#include <inttypes.h>
#include <string.h>

static const char usage[] =
	"Usage: vdisk compare [-f FMT] [-F FMT] [-s] [-p|-q] [--output=human|json] A B\n"
	"\n"
	"Compare the guest contents of images A and B.  When the sizes differ,\n"
	"the extra part of the larger image must read as zeros (unless -s).\n"
	"A or B may be a compressed raw disk (xz, zstd, gzip, bzip2) or - for\n"
	"standard input: it is read once, front to back.\n"
	"Exit status: 0 identical, 1 different, 2 error.\n"
	"\n"
	"  -f FMT          format of A (default: probe)\n"
	"  -F FMT          format of B (default: probe)\n"
	"  -s, --strict    images of different sizes differ\n"
	"      --allow-devices  allow block devices as A or B\n"
	"      --backing FILE  a parent candidate (repeatable; see vdisk(1))\n"
	"      --force     open a parent changed since the snapshot\n"
	"  -p, --progress  show progress (default when stderr is a terminal)\n"
	"  -q, --quiet     no progress\n"
	"      --output FMT  human (default) or json\n"
	"  -h, --help      show this help\n";

int cmd_compare(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "strict", no_argument, NULL, 's' },
		{ "allow-devices", no_argument, NULL, 'D' },
		{ "progress", no_argument, NULL, 'p' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "force", no_argument, NULL, 1001 },
		CLI_CHAIN_OPTION,
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *fa = NULL, *fb = NULL;
	struct vd_compare_opts o = { 0 };
	struct vd_source_opts sa = { 0 }, sb = { 0 };
	struct vd_error err = { 0 };
	struct vd_image *a = NULL, *b = NULL;
	struct cli_progress prog;
	uint64_t diff = 0;
	int c, r, json = 0, pmode = CLI_PROGRESS_AUTO;
	unsigned flags = 0;
	bool size_differs, force = false;

	while ((c = getopt_long(argc, argv, "f:F:spqh", lo, NULL)) != -1) {
		switch (c) {
		case 'f': fa = optarg; break;
		case 'F': fb = optarg; break;
		case 's': o.strict = true; break;
		case 'D': flags |= VD_OPEN_ALLOW_DEVICES; break;
		case 'p': pmode = CLI_PROGRESS_ON; break;
		case 'q': pmode = CLI_PROGRESS_OFF; break;
		case 1001: force = true; break;
		case CLI_OPT_BACKING:
			if (cli_chain_backing("compare", optarg))
				return 2;
			break;
		case 'o':
			if ((json = cli_output_mode("compare", optarg)) < 0)
				return 2;
			break;
		case 'h': cli_usage(stdout, usage); return 0;
		default: cli_usage(stderr, usage); return 2;
		}
	}
	if (optind + 2 != argc) {
		cli_usage(stderr, usage);
		return 2;
	}
	cli_catch_signals();
	cli_chain_apply("compare", force);
	if (!strcmp(argv[optind], "-") && !strcmp(argv[optind + 1], "-")) {
		fprintf(stderr, "vdisk compare: only one of A and B can be standard input\n");
		return 2;
	}
	sa.format = fa;
	sb.format = fb;
	sa.flags = sb.flags = flags;
	sa.spool_dir = sb.spool_dir = vd_spool_dir_default();
	sa.cancel = sb.cancel = &cli_cancel;
	if (vd_open_source(&a, argv[optind], &sa, &err) < 0 ||
	    vd_open_source(&b, argv[optind + 1], &sb, &err) < 0) {
		vd_close(a, NULL);
		return cli_fail("compare", &err, 2);
	}
	cli_progress_init(&prog, pmode);
	o.progress = cli_progress_cb;
	o.progress_ctx = &prog;
	o.cancel = &cli_cancel;
	r = vd_compare(a, b, &o, &diff, &err);
	size_differs = vd_size(a) != vd_size(b);
	cli_progress_end(&prog);
	vd_close(a, NULL);
	vd_close(b, NULL);
	if (r < 0)
		return cli_fail("compare", &err, 2);
	if (json) {
		printf("{ \"identical\": %s", r == 0 ? "true" : "false");
		if (r)
			printf(", \"offset\": %" PRIu64, diff);
		printf(" }\n");
	} else if (r == 0) {
		printf("Images are identical.\n");
	} else if (o.strict && size_differs) {
		printf("Image size mismatch!\n");
	} else {
		printf("Content mismatch at offset %" PRIu64 "!\n", diff);
	}
	return r == 0 ? 0 : 1;
}
