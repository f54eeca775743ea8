/*
 * vdisk info: format, sizes, allocation, UUIDs, geometry.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cli.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
	"Usage: vdisk info [-f FMT] [--output=human|json] IMAGE\n"
	"\n"
	"Show the format, subformat, virtual size, file size, allocated bytes,\n"
	"block size, UUIDs, header version and geometry of IMAGE.\n"
	"\n"
	"  -f, --format FMT     image format (default: probe the contents)\n"
	"      --output FMT     human (default) or json\n"
	"      --allow-devices  allow a block device as IMAGE\n"
	"  -h, --help           show this help\n";

static void print_human(const char *path, const struct vd_info *in)
{
	char a[32];

	printf("image: %s\n", path);
	printf("file format: %s\n", in->format);
	if (in->subformat[0])
		printf("subformat: %s\n", in->subformat);
	printf("virtual size: %s (%" PRIu64 " bytes)\n", cli_human(in->virtual_size, a, sizeof(a)), in->virtual_size);
	printf("file size: %s (%" PRIu64 " bytes)\n", cli_human(in->file_size, a, sizeof(a)), in->file_size);
	printf("disk size: %s (%" PRIu64 " bytes)\n", cli_human(in->host_bytes, a, sizeof(a)), in->host_bytes);
	printf("allocated: %s (%" PRIu64 " bytes)\n", cli_human(in->allocated_bytes, a, sizeof(a)), in->allocated_bytes);
	if (in->block_size)
		printf("block size: %" PRIu32 "\n", in->block_size);
	if (in->header_version[0])
		printf("header version: %s\n", in->header_version);
	if (in->uuid[0])
		printf("uuid: %s\n", in->uuid);
	if (in->uuid_modify[0])
		printf("modification uuid: %s\n", in->uuid_modify);
	if (in->uuid_parent[0])
		printf("parent uuid: %s\n", in->uuid_parent);
	if (in->uuid_parent_modify[0])
		printf("parent modification uuid: %s\n", in->uuid_parent_modify);
	if (in->heads)
		printf("geometry: %" PRIu32 "/%" PRIu32 "/%" PRIu32 " (cylinders/heads/sectors)\n",
		       in->cylinders, in->heads, in->sectors);
	if (in->nextra) {
		printf("format specific information:\n");
		for (unsigned i = 0; i < in->nextra; i++)
			printf("    %s: %s\n", in->extra[i].key, in->extra[i].value);
	}
}

static void print_json(const char *path, const struct vd_info *in)
{
	printf("{\n    \"filename\": ");
	json_str(stdout, path);
	printf(",\n    \"format\": ");
	json_str(stdout, in->format);
	printf(",\n    \"subformat\": ");
	json_str(stdout, in->subformat);
	printf(",\n    \"virtual-size\": %" PRIu64, in->virtual_size);
	printf(",\n    \"file-size\": %" PRIu64, in->file_size);
	printf(",\n    \"actual-size\": %" PRIu64, in->host_bytes);
	printf(",\n    \"allocated-bytes\": %" PRIu64, in->allocated_bytes);
	printf(",\n    \"cluster-size\": %" PRIu32, in->block_size);
	printf(",\n    \"header-version\": ");
	json_str(stdout, in->header_version);
	printf(",\n    \"uuid\": ");
	json_str(stdout, in->uuid);
	printf(",\n    \"modification-uuid\": ");
	json_str(stdout, in->uuid_modify);
	printf(",\n    \"parent-uuid\": ");
	json_str(stdout, in->uuid_parent);
	printf(",\n    \"parent-modification-uuid\": ");
	json_str(stdout, in->uuid_parent_modify);
	printf(",\n    \"geometry\": {\"cylinders\": %" PRIu32 ", \"heads\": %" PRIu32 ", \"sectors\": %" PRIu32 "}",
	       in->cylinders, in->heads, in->sectors);
	printf(",\n    \"format-specific\": {");
	for (unsigned i = 0; i < in->nextra; i++) {
		printf("%s\n        ", i ? "," : "");
		json_str(stdout, in->extra[i].key);
		printf(": ");
		if (in->extra[i].is_number)
			printf("%s", in->extra[i].value);
		else
			json_str(stdout, in->extra[i].value);
	}
	printf("%s}\n}\n", in->nextra ? "\n    " : "");
}

int cmd_info(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "output", required_argument, NULL, 'o' },
		{ "allow-devices", no_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *fmt = NULL;
	struct vd_error err = { 0 };
	struct vd_image *img;
	struct vd_info info;
	unsigned flags = 0;
	int json = 0, c, r;

	while ((c = getopt_long(argc, argv, "f:h", lo, NULL)) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'o':
			if ((json = cli_output_mode("info", optarg)) < 0)
				return 1;
			break;
		case 'D': flags |= VD_OPEN_ALLOW_DEVICES; break;
		case 'h': cli_usage(stdout, usage); return 0;
		default: cli_usage(stderr, usage); return 1;
		}
	}
	if (optind + 1 != argc) {
		cli_usage(stderr, usage);
		return 1;
	}
	r = vd_open(&img, argv[optind], fmt, flags, &err);
	if (r < 0)
		return cli_fail("info", &err, 1);
	r = vd_get_info(img, &info, &err);
	if (r < 0) {
		vd_close(img, NULL);
		return cli_fail("info", &err, 1);
	}
	if (json)
		print_json(argv[optind], &info);
	else
		print_human(argv[optind], &info);
	vd_close(img, NULL);
	return 0;
}
