/*
 * vdisk create: a new, empty image, or (with --script / --part) a
 * partitioned image filled from partition images in one pass (vd_build).
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
	"Usage: vdisk create -O FMT [-o OPTS] [--force] [--deterministic] DST SIZE\n"
	"       vdisk create -O FMT -B PARENT [-o OPTS] [--force] DST [SIZE]\n"
	"       vdisk create -O FMT [-o OPTS] --script FILE [--part N=FILE ...]\n"
	"                    [--bootcode FILE] [--deterministic] [--uuid U]\n"
	"                    [--label-id X] [--output=json] [-p|-q] DST [SIZE]\n"
	"\n"
	"Create an empty image of SIZE bytes (suffixes K, M, G, T: 10G, 512M,\n"
	"4141875200).  The image is built in a temporary file beside DST and\n"
	"renamed into place when complete.\n"
	"\n"
	"With -B, create an empty child of PARENT (a differencing VDI or a VMDK\n"
	"delta): it reads as PARENT until written, and holds only what changes.\n"
	"A relative PARENT is relative to DST's folder, and stored so.\n"
	"\n"
	"With --script, write an MBR table from an sfdisk-style script (as vdisk\n"
	"mbr does) and copy partition images (any format vdisk reads, a raw\n"
	"image compressed with xz, zstd, gzip or bzip2, or - for standard input)\n"
	"into the partitions, in one pass in guest order straight into FMT (also\n"
	"streamOptimized VMDK).  Zero blocks are not written.  Without SIZE the\n"
	"disk ends at the 1 MiB boundary after the last partition.\n"
	"\n"
	"  -f, --format FMT   output format: raw, vdi or vmdk (as qemu-img create -f)\n"
	"  -O FMT             the same (as vdisk convert -O)\n"
	"  -o OPTS            format options, comma separated:\n"
	"                       vdi: subformat=dynamic|fixed (static=on is fixed),\n"
	"                            block_size=SIZE (default 1M)\n"
	"                       raw: preallocation=off|falloc\n"
	"                       vmdk: subformat=monolithicSparse|monolithicFlat|\n"
	"                             twoGbMaxExtentSparse|twoGbMaxExtentFlat|streamOptimized|\n"
	"                             vmfs, adapter_type=ide|buslogic|lsilogic|legacyESX|pvscsi,\n"
	"                             hwversion=N, compat=esxi|workstation|virtualbox,\n"
	"                             grain_size=SIZE (sparse; default 64K)\n"
	"                       vdi, vmdk: uuid=U, uuid_modify=U; vmdk: cid=HEX\n"
	"  -B, --backing PARENT  the parent of the new child image (vdi, vmdk)\n"
	"      --force        replace an existing DST\n"
	"      --deterministic  fixed UUIDs, for reproducible images; with a script,\n"
	"                     UUIDs, CID and disk identifier derived from the inputs\n"
	"                     (also when SOURCE_DATE_EPOCH is set)\n"
	"      --script FILE  sfdisk-style script ('-': standard input); a partition\n"
	"                     line may carry file=PATH\n"
	"      --part N=FILE  copy FILE into partition N (repeatable)\n"
	"  -b, --bootcode FILE  the first 440 bytes of FILE as boot code\n"
	"  -a, --align MODE   mib (default) or cylinder\n"
	"      --uuid U       the image UUID (vdi, vmdk)\n"
	"      --label-id X   the disk identifier (hex), over the script's\n"
	"      --output FMT   human (default) or json: partitions, sizes and the\n"
	"                     SHA-256 of every output file\n"
	"  -p, --progress     show progress (default: when stderr is a terminal)\n"
	"  -q, --quiet        no progress\n"
	"  -h, --help         show this help\n";

/* 1: bad arguments or inputs; 2: the output could not be written */
static int build_fail(const struct vd_error *err)
{
	int c = -err->code;
	return cli_fail("create", err, c == EIO || c == ENOSPC || c == EDQUOT || c == EROFS ||
				       c == ENOMEM || c == EFAULT ? 2 : 1);
}

static void print_json(const char *dst, const char *fmt, const struct vd_build_summary *s)
{
	printf("{\n  \"filename\": ");
	json_str(stdout, dst);
	printf(",\n  \"format\": ");
	json_str(stdout, fmt);
	printf(",\n  \"virtual-size\": %" PRIu64, s->size);
	if (s->has_table)
		printf(",\n  \"partition-table\": {\"type\": \"dos\", \"id\": \"0x%08" PRIx32 "\"}",
		       s->mbr.disk_id);
	if (s->uuid[0])
		printf(",\n  \"uuid\": \"%s\"", s->uuid);
	if (s->uuid_modify[0])
		printf(",\n  \"modification-uuid\": \"%s\"", s->uuid_modify);
	if (s->cid[0]) /* 8 hex digits; a number, as in vdisk info */
		printf(",\n  \"cid\": %lu", strtoul(s->cid, NULL, 16));
	printf(",\n  \"data-written\": %" PRIu64 ",\n  \"partitions\": [", s->data_bytes);
	for (unsigned i = 0; i < s->mbr.nparts; i++) {
		const struct vd_mbr_part *p = &s->mbr.part[i];
		printf("%s\n    {\"number\": %u, \"start\": %" PRIu64 ", \"sectors\": %" PRIu64
		       ", \"offset\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"type\": \"%x\", \"bootable\": %s",
		       i ? "," : "", p->number, p->start, p->size, p->start * 512, p->size * 512, p->type,
		       p->bootable ? "true" : "false");
		if (s->part_file[i]) {
			printf(", \"filename\": ");
			json_str(stdout, s->part_file[i]);
			printf(", \"file-size\": %" PRIu64 ", \"data-written\": %" PRIu64,
			       s->part_file_size[i], s->part_data[i]);
		}
		printf("}");
	}
	printf("%s],\n  \"files\": [", s->mbr.nparts ? "\n  " : "");
	for (unsigned i = 0; i < s->nfiles; i++) {
		printf("%s\n    {\"filename\": ", i ? "," : "");
		json_str(stdout, s->files[i].path);
		printf(", \"file-size\": %" PRIu64 ", \"sha256\": \"%s\"}", s->files[i].size, s->files[i].sha256);
	}
	printf("%s]\n}\n", s->nfiles ? "\n  " : "");
}

static void print_human(const char *dst, const char *fmt, const struct vd_build_summary *s)
{
	char a[32], b[32];

	printf("%s: %s, %s (%" PRIu64 " bytes)", dst, fmt, cli_human(s->size, a, sizeof(a)), s->size);
	if (s->has_table)
		printf(", disk identifier 0x%08" PRIx32, s->mbr.disk_id);
	printf("\n");
	for (unsigned i = 0; i < s->mbr.nparts; i++) {
		const struct vd_mbr_part *p = &s->mbr.part[i];
		printf("  %u: start %" PRIu64 ", %" PRIu64 " sectors at offset %" PRIu64 ", type %x%s",
		       p->number, p->start, p->size, p->start * 512, p->type, p->bootable ? ", bootable" : "");
		if (s->part_file[i])
			printf(", from %s (%s, %s written)", s->part_file[i],
			       cli_human(s->part_file_size[i], a, sizeof(a)), cli_human(s->part_data[i], b, sizeof(b)));
		printf("\n");
	}
}

int cmd_create(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "force", no_argument, NULL, 'F' },
		{ "deterministic", no_argument, NULL, 'd' },
		{ "script", required_argument, NULL, 's' },
		{ "part", required_argument, NULL, 'P' },
		{ "bootcode", required_argument, NULL, 'b' },
		{ "backing", required_argument, NULL, 'B' },
		{ "align", required_argument, NULL, 'a' },
		{ "uuid", required_argument, NULL, 'U' },
		{ "label-id", required_argument, NULL, 'L' },
		{ "output", required_argument, NULL, 'J' },
		{ "progress", no_argument, NULL, 'p' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *fmt = NULL, *opts = NULL, *script_path = NULL, *boot_path = NULL;
	const char *parent = NULL;
	const char *sde = getenv("SOURCE_DATE_EPOCH");
	struct vd_error err = { 0 };
	char warn[512];
	struct vd_build_opts bo = { .align = VD_ALIGN_MIB };
	struct vd_build_part parts[VD_MBR_MAX_PARTS];
	unsigned flags = VD_CREATE_EXCL, nparts = 0;
	int json = 0, pmode = CLI_PROGRESS_AUTO, build;
	uint64_t size = 0;
	int c;

	/* -s (--script) and -P (--part) are still accepted, not shown: -s is
	 * compare's --strict, -P the partition selection of rawvmdk and
	 * zerofree (vdisk(1), OPTIONS ACROSS COMMANDS) */
	while ((c = getopt_long(argc, argv, "f:O:o:s:P:b:a:B:pqh", lo, NULL)) != -1) {
		switch (c) {
		case 'B': parent = optarg; break;
		case 'f': case 'O': fmt = optarg; break;
		case 'o': opts = optarg; break;
		case 'F': flags &= ~(unsigned)VD_CREATE_EXCL; break;
		case 'd': flags |= VD_CREATE_DETERMINISTIC; break;
		case 's': script_path = optarg; break;
		case 'P': {
			char *eq = strchr(optarg, '='), *end;
			unsigned long n = strtoul(optarg, &end, 10);
			if (!eq || end != eq || eq == optarg || n < 1 || n > VD_MBR_MAX_PARTS || !eq[1]) {
				cli_err("create", "--part takes N=FILE (N a partition number), not '%s'", optarg);
				return 1;
			}
			if (nparts == VD_MBR_MAX_PARTS) {
				cli_err("create", "too many --part options");
				return 1;
			}
			parts[nparts++] = (struct vd_build_part){ (unsigned)n, eq + 1, NULL };
			break;
		}
		case 'b': boot_path = optarg; break;
		case 'a':
			/* the spellings vdisk mbr takes */
			if (!strcmp(optarg, "mib") || !strcmp(optarg, "1MiB") || !strcmp(optarg, "MiB"))
				bo.align = VD_ALIGN_MIB;
			else if (!strcmp(optarg, "cylinder") || !strcmp(optarg, "cyl"))
				bo.align = VD_ALIGN_CYLINDER;
			else {
				cli_err("create", "--align must be 'mib' or 'cylinder', not '%s'", optarg);
				return 1;
			}
			break;
		case 'U': bo.uuid = optarg; break;
		case 'L': {
			char *end;
			unsigned long long v;
			errno = 0;
			v = strtoull(optarg, &end, 16);
			if (!*optarg || *end || errno || v > UINT32_MAX || *optarg == '-') {
				cli_err("create", "--label-id must be a 32-bit hex number, not '%s'", optarg);
				return 1;
			}
			bo.label_id = (uint32_t)v;
			bo.label_id_set = true;
			break;
		}
		case 'J':
			if ((json = cli_output_mode("create", optarg)) < 0)
				return 1;
			break;
		case 'p': pmode = CLI_PROGRESS_ON; break;
		case 'q': pmode = CLI_PROGRESS_OFF; break;
		case 'h': cli_usage(stdout, usage); return 0;
		default: cli_usage(stderr, usage); return 1;
		}
	}
	if (sde && *sde)
		flags |= VD_CREATE_DETERMINISTIC;
	build = script_path || nparts || boot_path || bo.uuid || bo.label_id_set || json;
	if (parent && !build && fmt && optind < argc && optind + 2 >= argc) {
		if (optind + 1 < argc && vd_parse_size(argv[optind + 1], &size) < 0) {
			cli_err("create", "invalid size '%s' (examples: 10G, 512M, 4141875200)", argv[optind + 1]);
			return 1;
		}
		if (vd_create_child(argv[optind], fmt, parent, NULL, size, opts, flags, &err) < 0)
			return cli_fail("create", &err, 1);
		return 0;
	}
	if (parent) {
		cli_err("create", "-B (a child image) does not go with --script, --part or --output");
		return 1;
	}
	if (!fmt || optind + 2 < argc || optind + (script_path ? 1 : 2) > argc) {
		cli_usage(stderr, usage);
		return 1;
	}
	if (optind + 1 < argc && vd_parse_size(argv[optind + 1], &size) < 0) {
		cli_err("create", "invalid size '%s' (examples: 10G, 512M, 4141875200)", argv[optind + 1]);
		return 1;
	}
	if (build) {
		struct vd_build_summary sum;
		struct cli_progress pr;
		uint8_t boot[440];
		char *text = NULL;
		int r;

		if (script_path && !(text = cli_read_script("create", script_path)))
			return 1;
		if (boot_path) {
			FILE *f = fopen(boot_path, "rb");
			size_t n = f ? fread(boot, 1, sizeof(boot), f) : 0;
			if (!f || n != sizeof(boot)) {
				if (f)
					cli_err("create", "%s: %zu bytes, boot code needs at least 440", boot_path, n);
				else
					cli_err("create", "%s: %s", boot_path, strerror(errno));
				if (f)
					fclose(f);
				free(text);
				return 1;
			}
			fclose(f);
			bo.bootcode = boot;
		}
		bo.format = fmt;
		bo.format_opts = opts;
		bo.size = size;
		bo.script = text;
		bo.script_name = script_path && strcmp(script_path, "-") ? script_path : "script";
		bo.parts = parts;
		bo.nparts = nparts;
		bo.deterministic = flags & VD_CREATE_DETERMINISTIC;
		bo.force = !(flags & VD_CREATE_EXCL);
		bo.checksums = json;
		cli_progress_init(&pr, pmode);
		if (pr.enabled) {
			bo.progress = cli_progress_cb;
			bo.progress_ctx = &pr;
		}
		bo.cancel = &cli_cancel;
		cli_catch_signals();
		r = vd_build(argv[optind], &bo, &sum, &err);
		cli_progress_end(&pr);
		free(text);
		if (r < 0)
			return build_fail(&err);
		vd_create_warning(fmt, opts, warn, sizeof(warn));
		if (warn[0])
			cli_err("create", "warning: %s", warn);
		if (json)
			print_json(argv[optind], fmt, &sum);
		else
			print_human(argv[optind], fmt, &sum);
		vd_build_summary_free(&sum);
		return 0;
	}
	if (optind + 2 != argc) {
		cli_usage(stderr, usage);
		return 1;
	}
	cli_catch_signals();
	if (vd_create(argv[optind], fmt, size, opts, flags, &cli_cancel, &err) < 0)
		return cli_fail("create", &err, 1);
	vd_create_warning(fmt, opts, warn, sizeof(warn));
	if (warn[0])
		cli_err("create", "warning: %s", warn);
	return 0;
}
