/*
 * vdisk compact: drop the blocks of an image that read as zeros; and the
 * report compact and defrag share.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cli.h"

#include <getopt.h>
#include <inttypes.h>
#include <string.h>

static const char usage[] =
	"Usage: vdisk compact [-f FMT] [--fs-aware] [-p|-q] [--output=human|json] IMAGE\n"
	"\n"
	"Make IMAGE smaller: blocks (VDI) or grains (sparse VMDK) that read as\n"
	"zeros are dropped, the others are written in guest order into a new file\n"
	"beside IMAGE, allocated up front, which then replaces IMAGE atomically\n"
	"(UUIDs, VMDK CID, adapter type and hardware version are kept).  The\n"
	"filesystem needs free space for the new file; vdisk refuses to start\n"
	"otherwise.  Killed at any moment, IMAGE is intact.  With nothing to\n"
	"drop (and nothing to zero), IMAGE is left as it is.\n"
	"A raw image is compacted in place: runs of zeros become holes.  A fixed\n"
	"VDI or flat VMDK has nothing to drop (see vdisk defrag).\n"
	"\n"
	"  -f, --format FMT   image format (default: probe)\n"
	"      --fs-aware     also drop blocks the guest filesystems (ext2/3/4, XFS,\n"
	"                     NTFS, FAT, swap) do not use, and write zeros over\n"
	"                     the free parts of the blocks kept\n"
	"  -p, --progress     show progress (default when stderr is a terminal)\n"
	"  -q, --quiet        no progress\n"
	"      --output=FMT   human (default) or json\n"
	"  -h, --help         show this help\n";

static double pct(uint64_t a, uint64_t b)
{
	return b ? 100.0 * (double)a / (double)b : 0.0;
}

void cli_rewrite_report(const char *cmd, const char *path, int json,
			const struct vd_rewrite_result *r)
{
	static const char *methods[] = { "new file", "in place", "nothing to do" };
	char a[32], b[32];

	if (json) {
		printf("{\n  \"filename\": ");
		json_str(stdout, path);
		printf(",\n  \"command\": \"%s\",\n  \"format\": ", cmd);
		json_str(stdout, r->format ? r->format : "");
		printf(",\n  \"subformat\": ");
		json_str(stdout, r->subformat);
		printf(",\n  \"method\": \"%s\",\n", methods[r->method]);
		printf("  \"cluster-size\": %" PRIu32 ",\n", r->block_size);
		printf("  \"blocks-before\": %" PRIu64 ",\n  \"blocks-kept\": %" PRIu64 ",\n",
		       r->blocks_before, r->blocks_kept);
		printf("  \"blocks-zero\": %" PRIu64 ",\n  \"blocks-free\": %" PRIu64 ",\n",
		       r->blocks_zero, r->blocks_free);
		printf("  \"bytes-kept\": %" PRIu64 ",\n  \"bytes-punched\": %" PRIu64 ",\n",
		       r->bytes_kept, r->bytes_punched);
		printf("  \"blocks-free-zeroed\": %" PRIu64 ",\n  \"bytes-free-zeroed\": %" PRIu64 ",\n",
		       r->blocks_free_zeroed, r->bytes_free_zeroed);
		printf("  \"file-size-before\": %" PRIu64 ",\n  \"file-size-after\": %" PRIu64 ",\n",
		       r->file_size_before, r->file_size_after);
		printf("  \"host-bytes-before\": %" PRIu64 ",\n  \"host-bytes-after\": %" PRIu64 ",\n",
		       r->host_bytes_before, r->host_bytes_after);
		printf("  \"space-needed\": %" PRIu64 ",\n  \"space-available\": %" PRIu64 ",\n",
		       r->space_needed, r->space_available);
		printf("  \"note\": ");
		json_str(stdout, r->note);
		printf("\n}\n");
		return;
	}
	printf("Image:        %s (%s%s%s", path, r->format ? r->format : "?",
	       r->subformat[0] ? ", " : "", r->subformat);
	if (r->block_size)
		printf(", block size %s", cli_human(r->block_size, a, sizeof(a)));
	printf(")\n");
	if (r->method == VD_REWRITE_NOTHING) {
		printf("Nothing to do: %s\n", r->note);
		return;
	}
	if (r->method == VD_REWRITE_IN_PLACE) {
		printf("Method:       in place (zero runs turned into holes)\n");
		/* stored bytes turned into holes, out of what the file held on
		 * the host before (st_blocks); what it holds now is below */
		printf("Punched:      %s (%" PRIu64 " bytes) of the %s allocated on the host before\n",
		       cli_human(r->bytes_punched, a, sizeof(a)), r->bytes_punched,
		       cli_human(r->host_bytes_before, b, sizeof(b)));
		printf("Data left:    %s in the ranges still stored\n", cli_human(r->bytes_kept, a, sizeof(a)));
	} else {
		printf("Method:       new file, renamed over the original\n");
		if (r->block_size)
			printf("Blocks:       %" PRIu64 " allocated, %" PRIu64 " kept, %" PRIu64
			       " dropped as zeros, %" PRIu64 " dropped as free\n",
			       r->blocks_before, r->blocks_kept, r->blocks_zero, r->blocks_free);
		else
			printf("Data:         %s in %" PRIu64 " ranges\n",
			       cli_human(r->bytes_kept, a, sizeof(a)), r->blocks_kept);
		if (r->bytes_free_zeroed)
			printf("Zeroed:       %s of free space inside the kept blocks (%" PRIu64
			       " block%s held old data there)\n",
			       cli_human(r->bytes_free_zeroed, a, sizeof(a)), r->blocks_free_zeroed,
			       r->blocks_free_zeroed == 1 ? "" : "s");
		if (r->space_available)
			printf("Free space:   %s needed, %s available\n",
			       cli_human(r->space_needed, a, sizeof(a)),
			       cli_human(r->space_available, b, sizeof(b)));
	}
	printf("File size:    %s -> %s", cli_human(r->file_size_before, a, sizeof(a)),
	       cli_human(r->file_size_after, b, sizeof(b)));
	printf(" (%" PRIu64 " -> %" PRIu64 " bytes)\n", r->file_size_before, r->file_size_after);
	printf("Disk usage:   %s -> %s", cli_human(r->host_bytes_before, a, sizeof(a)),
	       cli_human(r->host_bytes_after, b, sizeof(b)));
	printf(" (%.1f%%)\n", pct(r->host_bytes_after, r->host_bytes_before));
	if (r->note[0])
		printf("Note:         %s\n", r->note);
}

/* The command line of compact and defrag: one image, the same options
 * (--fs-aware only where FS_AWARE_OK), the same report. */
int cli_rewrite_cmd(const char *cmd, const char *usage_text, bool fs_aware_ok,
		    int (*op)(const char *, const struct vd_rewrite_opts *,
			      struct vd_rewrite_result *, struct vd_error *),
		    int argc, char **argv)
{
	static const struct option lo[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "fs-aware", no_argument, NULL, 'A' },
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
	int c, r, pmode = CLI_PROGRESS_AUTO, json = 0;

	while ((c = getopt_long(argc, argv, "f:pqh", lo, NULL)) != -1) {
		switch (c) {
		case 'f': o.format = optarg; break;
		case 'A':
			if (!fs_aware_ok) {
				fprintf(stderr, "vdisk %s: unrecognized option '--fs-aware'\n", cmd);
				cli_usage(stderr, usage_text);
				return 1;
			}
			o.fs_aware = true;
			break;
		case 'p': pmode = CLI_PROGRESS_ON; break;
		case 'q': pmode = CLI_PROGRESS_OFF; break;
		case 'o':
			json = cli_output_mode(cmd, optarg);
			if (json < 0)
				return 1;
			break;
		case 'h': cli_usage(stdout, usage_text); return 0;
		default: cli_usage(stderr, usage_text); return 1;
		}
	}
	if (optind + 1 != argc) {
		cli_usage(stderr, usage_text);
		return 1;
	}
	cli_catch_signals();
	cli_progress_init(&prog, pmode);
	o.progress = cli_progress_cb;
	o.progress_ctx = &prog;
	o.cancel = &cli_cancel;
	r = op(argv[optind], &o, &res, &err);
	cli_progress_end(&prog);
	if (r < 0)
		return cli_fail(cmd, &err, 1);
	cli_rewrite_report(cmd, argv[optind], json, &res);
	return 0;
}

int cmd_compact(int argc, char **argv)
{
	return cli_rewrite_cmd("compact", usage, true, vd_compact, argc, argv);
}
