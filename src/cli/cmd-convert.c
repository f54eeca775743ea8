/*
 * vdisk convert: copy an image into another format (or onto an existing
 * image with -n).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cli.h"

#include <getopt.h>
#include <string.h>

static const char usage[] =
	"Usage: vdisk convert [-f FMT] -O FMT [-o OPTS] [-p|-q] [-S BYTES] [--force]\n"
	"                     [--deterministic] [--allow-devices] SRC DST\n"
	"       vdisk convert [-f FMT] [-O FMT] -n [--target-is-zero] [-p|-q] SRC DST\n"
	"\n"
	"Copy the guest contents of SRC into DST.  Ranges SRC reports as zero\n"
	"or unallocated are never read.  A new DST is built in a temporary file\n"
	"beside it and renamed into place only on success; on error or on\n"
	"SIGINT/SIGTERM the temporary file is removed and SRC is untouched.\n"
	"\n"
	"  -f, --source-format FMT  source format (default: probe)\n"
	"  -O, --format FMT         output format: raw, vdi or vmdk\n"
	"  -o OPTS                  output options (see vdisk-create(1)):\n"
	"                             vdi: subformat=dynamic|fixed, block_size=SIZE\n"
	"                             raw: preallocation=off|falloc\n"
	"                             vmdk: subformat=, adapter_type=, hwversion=, compat=\n"
	"  -S, --sparse-size BYTES  zero runs of at least BYTES are left unallocated\n"
	"                           (default 4K; 0 allocates everything)\n"
	"  -n, --no-create          write into the existing image DST (not atomic:\n"
	"                           an interrupted run leaves DST partly written)\n"
	"      --target-is-zero     with -n: DST already reads as zeros\n"
	"      --force              replace an existing DST\n"
	"      --deterministic      fixed UUIDs, for reproducible images\n"
	"      --allow-devices      allow block devices as SRC or (with -n) DST\n"
	"  -p, --progress           show progress (default when stderr is a terminal)\n"
	"  -q, --quiet              no progress\n"
	"  -h, --help               show this help\n";

int cmd_convert(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "source-format", required_argument, NULL, 'f' },
		{ "format", required_argument, NULL, 'O' },
		{ "sparse-size", required_argument, NULL, 'S' },
		{ "no-create", no_argument, NULL, 'n' },
		{ "target-is-zero", no_argument, NULL, 'z' },
		{ "force", no_argument, NULL, 'F' },
		{ "deterministic", no_argument, NULL, 'd' },
		{ "allow-devices", no_argument, NULL, 'D' },
		{ "progress", no_argument, NULL, 'p' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct vd_convert_opts o = { 0 };
	struct vd_error err = { 0 };
	struct cli_progress prog;
	int c, r, pflag = 0, quiet = 0;

	o.min_sparse = 4096;
	while ((c = getopt_long(argc, argv, "f:O:o:S:npqh", lo, NULL)) != -1) {
		switch (c) {
		case 'f': o.src_format = optarg; break;
		case 'O': o.dst_format = optarg; break;
		case 'o': o.dst_opts = optarg; break;
		case 'S':
			if (vd_parse_size(optarg, &o.min_sparse) < 0) {
				cli_err("convert", "invalid -S size '%s'", optarg);
				return 1;
			}
			break;
		case 'n': o.existing_target = true; break;
		case 'z': o.target_is_zero = true; break;
		case 'F': o.force = true; break;
		case 'd': o.create_flags |= VD_CREATE_DETERMINISTIC; break;
		case 'D': o.src_open_flags |= VD_OPEN_ALLOW_DEVICES; break;
		case 'p': pflag = 1; break;
		case 'q': quiet = 1; break;
		case 'h': cli_usage(stdout, usage); return 0;
		default: cli_usage(stderr, usage); return 1;
		}
	}
	if (optind + 2 != argc || (!o.dst_format && !o.existing_target)) {
		cli_usage(stderr, usage);
		return 1;
	}
	if (o.target_is_zero && !o.existing_target) {
		cli_err("convert", "--target-is-zero needs -n");
		return 1;
	}
	if (o.existing_target && o.dst_opts) {
		cli_err("convert", "-o cannot be used with -n (the target exists)");
		return 1;
	}
	cli_catch_signals();
	cli_progress_init(&prog, pflag);
	if (quiet)
		prog.enabled = 0;
	o.progress = cli_progress_cb;
	o.progress_ctx = &prog;
	o.cancel = &cli_cancel;
	r = vd_convert(argv[optind], argv[optind + 1], &o, &err);
	cli_progress_end(&prog);
	if (r < 0)
		return cli_fail("convert", &err, 1);
	return 0;
}
