/*
 * vdisk commit and vdisk rebase (both here: they change a snapshot chain
 * and share its options).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cli.h"

#include <getopt.h>
#include <inttypes.h>
#include <string.h>

static const char commit_usage[] =
	"Usage: vdisk commit [-f FMT] [--remove|--empty] [-p|-q] [--output=human|json] CHILD\n"
	"\n"
	"Merge the child image CHILD (a differencing VDI or a VMDK delta) into its\n"
	"parent: every block the child holds is written into the parent, in place.\n"
	"The parent gets a new modification UUID (VDI) or CID (VMDK), so that its\n"
	"other children refuse it from now on; CHILD is relinked to the changed\n"
	"parent (its guest view stays the same), emptied with --empty, or removed\n"
	"with --remove.\n"
	"Interrupted, CHILD is intact: run the command again.\n"
	"\n"
	"  -f, --format FMT   format of CHILD (default: probe)\n"
	"      --remove       remove CHILD's files once its blocks are in the parent\n"
	"      --empty        keep CHILD as an empty child of the changed parent\n"
	"      --backing FILE  a parent candidate (repeatable; see vdisk(1))\n"
	"      --force        commit into a parent changed since the snapshot\n"
	"  -p, --progress     show progress (default when stderr is a terminal)\n"
	"  -q, --quiet        no progress\n"
	"      --output FMT   human (default) or json\n"
	"  -h, --help         show this help\n";

int cmd_commit(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "remove", no_argument, NULL, 'R' },
		{ "empty", no_argument, NULL, 'E' },
		{ "force", no_argument, NULL, 'F' },
		CLI_CHAIN_OPTION,
		{ "progress", no_argument, NULL, 'p' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct vd_commit_opts o = { 0 };
	struct vd_commit_result res;
	struct vd_error err = { 0 };
	struct cli_progress prog;
	const char *fmt = NULL;
	int c, json = 0, pmode = CLI_PROGRESS_AUTO;
	bool force = false;
	char a[32], b[32];

	while ((c = getopt_long(argc, argv, "f:pqh", lo, NULL)) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'R': o.remove_child = true; break;
		case 'E': o.empty_child = true; break;
		case 'F': force = true; break;
		case CLI_OPT_BACKING:
			if (cli_chain_backing("commit", optarg))
				return 1;
			break;
		case 'p': pmode = CLI_PROGRESS_ON; break;
		case 'q': pmode = CLI_PROGRESS_OFF; break;
		case 'o':
			if ((json = cli_output_mode("commit", optarg)) < 0)
				return 1;
			break;
		case 'h': cli_usage(stdout, commit_usage); return 0;
		default: cli_usage(stderr, commit_usage); return 1;
		}
	}
	if (optind + 1 != argc) {
		cli_usage(stderr, commit_usage);
		return 1;
	}
	if (o.remove_child && o.empty_child) {
		cli_err("commit", "--remove and --empty exclude each other");
		return 1;
	}
	cli_chain_apply("commit", force);
	cli_catch_signals();
	cli_progress_init(&prog, pmode);
	o.progress = cli_progress_cb;
	o.progress_ctx = &prog;
	o.cancel = &cli_cancel;
	if (vd_commit(argv[optind], fmt, &o, &res, &err) < 0) {
		cli_progress_end(&prog);
		return cli_fail("commit", &err, 1);
	}
	cli_progress_end(&prog);
	if (json) {
		printf("{ \"filename\": ");
		json_str(stdout, argv[optind]);
		printf(", \"parent\": ");
		json_str(stdout, res.parent);
		printf(", \"data-bytes\": %" PRIu64 ", \"zero-bytes\": %" PRIu64 ", \"removed\": %s, \"emptied\": %s }\n",
		       res.data_bytes, res.zero_bytes, res.removed ? "true" : "false",
		       res.emptied ? "true" : "false");
	} else {
		printf("Committed %s of data and %s of zeros from %s into %s; %s.\n",
		       cli_human(res.data_bytes, a, sizeof(a)), cli_human(res.zero_bytes, b, sizeof(b)),
		       argv[optind], res.parent,
		       res.removed ? "the child was removed" :
		       res.emptied ? "the child is an empty child of the changed parent" :
		       "the child is linked to the changed parent");
	}
	return 0;
}

static const char rebase_usage[] =
	"Usage: vdisk rebase [-f FMT] -B PARENT [-u] [-p|-q] [--output=human|json] CHILD\n"
	"\n"
	"Link the child image CHILD to the parent PARENT (relative to CHILD's\n"
	"folder, and stored so where the format stores a name).  By default\n"
	"(safe) what CHILD does not hold and PARENT holds differently is first\n"
	"copied into CHILD, so the guest sees the same disk afterwards; with -u\n"
	"only the link is rewritten (for a parent that was moved, or copied with\n"
	"the same contents).\n"
	"\n"
	"  -f, --format FMT      format of CHILD (default: probe)\n"
	"  -B, --backing PARENT  the new parent\n"
	"  -u, --unsafe          rewrite the link only\n"
	"      --force           read a current parent changed since the snapshot\n"
	"  -p, --progress        show progress (default when stderr is a terminal)\n"
	"  -q, --quiet           no progress\n"
	"      --output FMT      human (default) or json\n"
	"  -h, --help            show this help\n";

int cmd_rebase(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "backing", required_argument, NULL, 'B' },
		{ "unsafe", no_argument, NULL, 'u' },
		{ "force", no_argument, NULL, 'F' },
		{ "progress", no_argument, NULL, 'p' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct vd_rebase_opts o = { 0 };
	int json = 0;
	struct vd_rebase_result res;
	struct vd_error err = { 0 };
	struct cli_progress prog;
	const char *fmt = NULL;
	int c, pmode = CLI_PROGRESS_AUTO;
	bool force = false;
	char a[32];

	while ((c = getopt_long(argc, argv, "f:B:upqh", lo, NULL)) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'B': o.backing = optarg; break;
		case 'u': o.unsafe = true; break;
		case 'F': force = true; break;
		case 'p': pmode = CLI_PROGRESS_ON; break;
		case 'q': pmode = CLI_PROGRESS_OFF; break;
		case 'o':
			if ((json = cli_output_mode("rebase", optarg)) < 0)
				return 1;
			break;
		case 'h': cli_usage(stdout, rebase_usage); return 0;
		default: cli_usage(stderr, rebase_usage); return 1;
		}
	}
	if (optind + 1 != argc || !o.backing) {
		cli_usage(stderr, rebase_usage);
		return 1;
	}
	cli_chain_apply("rebase", force);
	cli_catch_signals();
	cli_progress_init(&prog, pmode);
	o.progress = cli_progress_cb;
	o.progress_ctx = &prog;
	o.cancel = &cli_cancel;
	if (vd_rebase(argv[optind], fmt, &o, &res, &err) < 0) {
		cli_progress_end(&prog);
		return cli_fail("rebase", &err, 1);
	}
	cli_progress_end(&prog);
	if (json) {
		printf("{ \"filename\": ");
		json_str(stdout, argv[optind]);
		printf(", \"backing-filename\": ");
		json_str(stdout, o.backing);
		printf(", \"copied-bytes\": %" PRIu64 ", \"unsafe\": %s }\n", res.copied_bytes,
		       o.unsafe ? "true" : "false");
	} else if (!o.unsafe) {
		printf("Copied %s into %s; it is now a child of %s.\n",
		       cli_human(res.copied_bytes, a, sizeof(a)), argv[optind], o.backing);
	}
	return 0;
}
