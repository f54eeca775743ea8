/*
 * vdisk zerofree: make the free space of the guest filesystems read as
 * zeros (discarding whole blocks where the format can).
 *
 * SPDX-License-Identifier: MIT
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
	"Usage: vdisk zerofree [-f FMT] [-P N] [--dry-run] [-p|-q] [--force] [--list]\n"
	"                      [--output=human|json] IMAGE\n"
	"\n"
	"Make the free space of the filesystems in IMAGE read as zeros, from the\n"
	"filesystems' own allocation maps (ext2/3/4, XFS, NTFS, FAT12/16/32,\n"
	"Linux swap), without mounting.  Whole free blocks of a dynamic VDI or grains of a\n"
	"sparse VMDK are released, holes are punched into a raw file; elsewhere\n"
	"(partly free blocks, fixed VDI, flat VMDK) zeros are written only where\n"
	"the data is not zero already.  The image never grows.  Without\n"
	"--partition: the whole disk if it holds a filesystem, else every MBR or\n"
	"GPT partition (others are reported and left alone).  Refuses an image\n"
	"that is in use (mounted or behind a loop device, swap, held by another\n"
	"vdisk or by QEMU, open for writing elsewhere: see vdisk(1) IN USE;\n"
	"--force never overrides that).  The slots of released VDI blocks are\n"
	"given back before it returns: the file gets shorter.\n"
	"\n"
	"  -f, --format FMT     image format (default: probe)\n"
	"  -P, --partition N    only partition N (MBR or GPT)\n"
	"      --dry-run        report what would be done; change nothing\n"
	"      --force          walk filesystems that need recovery or have errors\n"
	"      --list           print each free range: free OFFSET LENGTH (bytes)\n"
	"  -p, --progress       show progress (default when stderr is a terminal)\n"
	"  -q, --quiet          no progress\n"
	"      --output=FMT     human (default) or json\n"
	"  -h, --help           show this help\n";

struct out {
	int json;
	bool dry;
	unsigned n;
	uint32_t unit;
	const char *path;
	struct cli_progress *prog;  /* its line ends before a report */
};

static void human_counts(const struct vd_zerofree_part *p, bool dry)
{
	char a[32], b[32], c[32], d[32];

	printf("  free %s, already zero %s, %s %s, %s %" PRIu64 " blocks (%s)\n",
	       cli_human(p->free_bytes, a, sizeof(a)), cli_human(p->zero_bytes, b, sizeof(b)),
	       dry ? "to zero" : "zeroed", cli_human(p->zeroed_bytes, c, sizeof(c)),
	       dry ? "to release" : "released", p->released_blocks,
	       cli_human(p->released_bytes, d, sizeof(d)));
}

static void json_counts(const struct vd_zerofree_part *p, const char *ind)
{
	printf("%s\"free-bytes\": %" PRIu64 ",\n%s\"zero-bytes\": %" PRIu64 ",\n"
	       "%s\"zeroed-bytes\": %" PRIu64 ",\n%s\"released-bytes\": %" PRIu64 ",\n"
	       "%s\"released-blocks\": %" PRIu64 ",\n%s\"read-bytes\": %" PRIu64,
	       ind, p->free_bytes, ind, p->zero_bytes, ind, p->zeroed_bytes,
	       ind, p->released_bytes, ind, p->released_blocks, ind, p->read_bytes);
}

static void report(void *ctx, const struct vd_zerofree_part *p)
{
	struct out *o = ctx;
	char a[32], b[32];

	cli_progress_break(o->prog);
	if (o->json) {
		printf("%s\n    {\n      \"partition\": %u,\n      \"offset\": %" PRIu64 ",\n"
		       "      \"length\": %" PRIu64 ",\n",
		       o->n ? "," : "", p->number, p->offset, p->length);
		printf("      \"skipped\": %s,\n", p->status ? "true" : "false");
		if (p->status) {
			printf("      \"note\": ");
			json_str(stdout, p->note);
			printf("\n    }");
		} else {
			printf("      \"type\": ");
			json_str(stdout, p->fs.type);
			printf(",\n      \"label\": ");
			json_str(stdout, p->fs.label);
			printf(",\n      \"uuid\": ");
			json_str(stdout, p->fs.uuid);
			printf(",\n      \"block-size\": %" PRIu32 ",\n      \"total-bytes\": %" PRIu64 ",\n",
			       p->fs.block_size, p->fs.total_bytes);
			json_counts(p, "      ");
			printf("\n    }");
		}
		o->n++;
		fflush(stdout);
		return;
	}
	if (p->number && p->type_guid[0])
		printf("partition %u (type %s, %s at %" PRIu64 "): ", p->number,
		       strcmp(vd_gpt_type_name(p->type_guid), "unknown") ? vd_gpt_type_name(p->type_guid) : p->type_guid,
		       cli_human(p->length, a, sizeof(a)), p->offset);
	else if (p->number)
		printf("partition %u (type %02x, %s at %" PRIu64 "): ", p->number, p->mbr_type,
		       cli_human(p->length, a, sizeof(a)), p->offset);
	else
		printf("whole disk: ");
	if (p->status) {
		printf("left alone: %s\n", p->note);
		fflush(stdout);
		return;
	}
	printf("%s", p->fs.type);
	if (p->fs.label[0])
		printf(" \"%s\"", p->fs.label);
	printf(", %s, block size %" PRIu32 "\n", cli_human(p->fs.total_bytes, b, sizeof(b)),
	       p->fs.block_size);
	human_counts(p, o->dry);
	o->n++;
	fflush(stdout); /* in order with the progress lines on stderr */
}

static void list_range(void *ctx, uint64_t off, uint64_t len)
{
	struct out *o = ctx;

	cli_progress_break(o->prog);
	printf("free %" PRIu64 " %" PRIu64 "\n", off, len);
	fflush(stdout);
}

int cmd_zerofree(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "partition", required_argument, NULL, 'P' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "force", no_argument, NULL, 'F' },
		{ "list", no_argument, NULL, 'L' },
		{ "progress", no_argument, NULL, 'p' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct vd_zerofree_opts opts = { 0 };
	struct vd_zerofree_result res;
	struct vd_error err = { 0 };
	struct cli_progress prog;
	struct out o = { 0 };
	int c, r, pmode = CLI_PROGRESS_AUTO;
	bool list = false;
	char *end;

	/* -n (--dry-run) is still accepted, not shown: -n is convert's
	 * --no-create (vdisk(1), OPTIONS ACROSS COMMANDS) */
	while ((c = getopt_long(argc, argv, "f:P:npqh", lo, NULL)) != -1) {
		switch (c) {
		case 'f': opts.format = optarg; break;
		case 'P': {
			unsigned long v = strtoul(optarg, &end, 10);
			if (*optarg == '\0' || *end || v == 0 || v > 255) {
				cli_err("zerofree", "--partition: '%s' is not a partition number (1..255)", optarg);
				return 1;
			}
			opts.part = (unsigned)v;
			break;
		}
		case 'n': opts.dry_run = true; break;
		case 'F': opts.force = true; break;
		case 'L': list = true; break;
		case 'p': pmode = CLI_PROGRESS_ON; break;
		case 'q': pmode = CLI_PROGRESS_OFF; break;
		case 'o':
			if ((o.json = cli_output_mode("zerofree", optarg)) < 0)
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
	o.dry = opts.dry_run;
	o.path = argv[optind];
	if (list && !o.json) {
		opts.range = list_range;
		opts.range_ctx = &o;
	}
	opts.report = report;
	opts.report_ctx = &o;
	o.prog = &prog;
	cli_catch_signals();
	cli_progress_init(&prog, pmode);
	opts.progress = cli_progress_cb;
	opts.progress_ctx = &prog;
	opts.cancel = &cli_cancel;
	if (o.json) {
		printf("{\n  \"filename\": ");
		json_str(stdout, o.path);
		printf(",\n  \"dry-run\": %s,\n  \"filesystems\": [", o.dry ? "true" : "false");
	}
	fflush(stdout);
	r = vd_zerofree(o.path, &opts, &res, &err);
	cli_progress_end(&prog);
	if (o.json) {
		printf("%s]", o.n ? "\n  " : "");
		if (r == 0) {
			printf(",\n  \"format\": ");
			json_str(stdout, res.format ? res.format : "");
			printf(",\n  \"subformat\": ");
			json_str(stdout, res.subformat);
			printf(",\n  \"unit\": %" PRIu32 ",\n  \"walked\": %u,\n  \"skipped\": %u,\n",
			       res.unit, res.parts, res.skipped);
			json_counts(&res.total, "  ");
			printf(",\n  \"file-size-before\": %" PRIu64 ",\n  \"file-size-after\": %" PRIu64
			       ",\n  \"slots-moved\": %u", res.file_size_before, res.file_size_after, res.slots_moved);
		}
		printf("\n}\n");
	}
	if (res.table_note[0])
		cli_err("zerofree", "warning: %s", res.table_note);
	if (r < 0)
		return cli_fail("zerofree", &err, 1);
	if (!o.json) {
		char a[32];
		printf("%s: %s%s%s%s, release unit %s%s\n", o.path, res.format,
		       res.subformat[0] ? " (" : "", res.subformat, res.subformat[0] ? ")" : "",
		       cli_human(res.unit, a, sizeof(a)), o.dry ? "; dry run, nothing changed" : "");
		if (res.parts > 1) {
			printf("total of %u filesystems:\n", res.parts);
			human_counts(&res.total, o.dry);
		}
		if (res.file_size_after < res.file_size_before) {
			char b[32];
			printf("image file shortened from %s to %s (%u blocks moved into released slots)\n",
			       cli_human(res.file_size_before, a, sizeof(a)),
			       cli_human(res.file_size_after, b, sizeof(b)), res.slots_moved);
		}
	}
	return 0;
}
