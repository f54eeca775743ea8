/*
 * vdisk map: allocated, zero and unallocated ranges and where they live in
 * the image file.  The JSON form uses qemu-img map's keys.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cli.h"

#include <getopt.h>
#include <inttypes.h>
#include <string.h>

static const char usage[] =
	"Usage: vdisk map [-f FMT] [--output=human|json] IMAGE\n"
	"\n"
	"List the guest address space of IMAGE as ranges of data (with their\n"
	"offset in the image file), zero blocks and unallocated space.  The JSON\n"
	"form uses the keys of qemu-img map: start, length, depth, present,\n"
	"zero, data, offset, and \"filename\" when the data is in another file\n"
	"than IMAGE (extents of split VMDKs, a parent).  In a chain, depth is\n"
	"the layer that holds the range: 0 IMAGE, 1 its parent, ...\n"
	"\n"
	"  -f, --format FMT   image format (default: probe)\n"
	"      --backing FILE  a parent candidate (repeatable; see vdisk(1))\n"
	"      --force        open a parent changed since the snapshot\n"
	"      --allow-devices  allow a block device as IMAGE\n"
	"      --output FMT   human (default) or json\n"
	"  -h, --help         show this help\n";

static const char *kind(unsigned f)
{
	if ((f & VD_BS_DATA) && (f & VD_BS_ZERO))
		return "hole"; /* allocated, but a hole in the host file */
	if (f & VD_BS_DATA)
		return "data";
	if (f & VD_BS_ALLOCATED)
		return "zero";
	return "unallocated";
}

static void emit(int json, bool chain, int *n, const struct vd_extent *e)
{
	if (json) {
		printf("%s{ \"start\": %" PRIu64 ", \"length\": %" PRIu64
		       ", \"depth\": %u, \"present\": %s, \"zero\": %s, \"data\": %s",
		       *n ? ",\n" : "[", e->start, e->length, e->depth,
		       (e->flags & (VD_BS_DATA | VD_BS_ALLOCATED)) ? "true" : "false",
		       (e->flags & VD_BS_ZERO) ? "true" : "false",
		       (e->flags & VD_BS_DATA) ? "true" : "false");
		if (e->flags & VD_BS_OFFSET_VALID)
			printf(", \"offset\": %" PRIu64, e->offset);
		if (e->file) {
			printf(", \"filename\": ");
			json_str(stdout, e->file);
		}
		printf("}");
	} else {
		if (*n == 0)
			printf("%-20s %-20s %s%-12s %s\n", "Offset", "Length", chain ? "Depth " : "",
			       "Type", "File offset");
		printf("0x%-18" PRIx64 " 0x%-18" PRIx64 " ", e->start, e->length);
		if (chain)
			printf("%-5u ", e->depth);
		printf("%s", kind(e->flags));
		if (e->flags & VD_BS_OFFSET_VALID)
			printf("%*s0x%" PRIx64, (int)(13 - strlen(kind(e->flags))), "", e->offset);
		if (e->file)
			printf(" %s", e->file);
		printf("\n");
	}
	(*n)++;
}

int cmd_map(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "output", required_argument, NULL, 'o' },
		{ "allow-devices", no_argument, NULL, 'D' },
		{ "force", no_argument, NULL, 'F' },
		CLI_CHAIN_OPTION,
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *fmt = NULL;
	struct vd_error err = { 0 };
	struct vd_image *img;
	struct vd_extent cur = { 0 };
	uint64_t off = 0, size;
	int json = 0, c, r, n = 0;
	unsigned flags = 0;
	bool force = false, chain;

	while ((c = getopt_long(argc, argv, "f:h", lo, NULL)) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'D': flags |= VD_OPEN_ALLOW_DEVICES; break;
		case 'F': force = true; break;
		case CLI_OPT_BACKING:
			if (cli_chain_backing("map", optarg))
				return 1;
			break;
		case 'o':
			if ((json = cli_output_mode("map", optarg)) < 0)
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
	cli_chain_apply("map", force);
	r = vd_open(&img, argv[optind], fmt, flags, &err);
	if (r < 0)
		return cli_fail("map", &err, 1);
	chain = vd_backing(img) != NULL;
	size = vd_size(img);
	while (off < size) {
		struct vd_extent e;
		r = vd_block_status(img, off, size - off, &e, &err);
		if (r < 0) {
			vd_close(img, NULL);
			return cli_fail("map", &err, 1);
		}
		/* merge with the previous range when nothing but the length differs */
		if (cur.length && cur.flags == e.flags && cur.depth == e.depth &&
		    (cur.file == e.file || (cur.file && e.file && !strcmp(cur.file, e.file))) &&
		    (!(e.flags & VD_BS_OFFSET_VALID) || cur.offset + cur.length == e.offset)) {
			cur.length += e.length;
		} else {
			if (cur.length)
				emit(json, chain, &n, &cur);
			cur = e;
		}
		off += e.length;
	}
	if (cur.length)
		emit(json, chain, &n, &cur);
	if (json)
		printf("%s\n", n ? "]" : "[]");
	vd_close(img, NULL);
	return 0;
}
