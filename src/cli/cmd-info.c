/*
 * vdisk info: format, sizes, allocation, UUIDs, geometry.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
	"Usage: vdisk info [-f FMT] [--backing-chain] [--output=human|json] IMAGE\n"
	"\n"
	"Show the format, subformat, virtual size, file size, allocated bytes,\n"
	"block size, UUIDs, header version and geometry of IMAGE, its MBR or GPT\n"
	"partitions and the filesystem or other content libblkid finds in each\n"
	"partition (or on the whole disk when it has no partition table).\n"
	"A child image (differencing VDI, VMDK delta) names its parent.\n"
	"\n"
	"  -f, --format FMT     image format (default: probe the contents)\n"
	"      --backing-chain  also show every parent of IMAGE, child first\n"
	"                       (JSON: an array of the objects)\n"
	"      --backing FILE   a parent candidate (repeatable; see vdisk(1))\n"
	"      --force          open a parent changed since the snapshot\n"
	"      --output FMT     human (default) or json\n"
	"      --allow-devices  allow a block device as IMAGE\n"
	"  -h, --help           show this help\n";

/* overlaps held in the list (the count may be larger) */


/* ---- partitions and content (libblkid through the block-I/O layer) ---- */

struct layout {
	bool has_table;
	struct vd_ptable pt;
	bool probed[VD_PTABLE_MAX_PARTS];
	struct vd_content part[VD_PTABLE_MAX_PARTS];
	struct vd_content disk; /* whole disk, when there is no table */
};

static void probe_layout(struct vd_image *img, struct layout *l)
{
	struct vd_error err = { 0 };

	if (vd_ptable_read_overlaps(img, &l->pt, &err) == 0) {
		char t[200];

		l->has_table = true;
		if (l->pt.note[0])
			cli_err("info", "warning: %s", l->pt.note);
		for (unsigned i = 0; i < cli_overlaps_listed(&l->pt); i++) {
			vd_ptable_overlap_text(&l->pt, &l->pt.overlap[i], t, sizeof(t));
			cli_err("info", "warning: %s", t);
		}
		for (unsigned i = 0; i < l->pt.nparts; i++) {
			const struct vd_ptable_part *p = &l->pt.part[i];
			if (p->extended || (p->start + p->size) * 512 > vd_size(img))
				continue;
			vd_error_clear(&err);
			if (vd_probe_content(img, p->start * 512, p->size * 512, &l->part[i], &err) < 0)
				cli_err("info", "partition %u: %s", p->number, err.msg);
			else
				l->probed[i] = true;
		}
		return;
	}
	if (err.code != -ENOENT)
		cli_err("info", "%s", err.msg);
	vd_error_clear(&err);
	if (vd_probe_content(img, 0, vd_size(img), &l->disk, &err) < 0)
		cli_err("info", "%s", err.msg);
}

static void content_human(const char *indent, const struct vd_content *c)
{
	printf("%scontent: %s", indent, c->type);
	if (c->usage[0])
		printf(" (%s)", c->usage);
	if (c->version[0])
		printf(", version %s", c->version);
	if (c->label[0])
		printf(", label \"%s\"", c->label);
	if (c->uuid[0])
		printf(", uuid %s", c->uuid);
	if (c->block_size)
		printf(", block size %llu", (unsigned long long)c->block_size);
	printf("\n");
}

static void layout_human(const struct layout *l)
{
	char a[32];

	if (!l->has_table) {
		if (l->disk.type[0])
			content_human("", &l->disk);
		return;
	}
	if (!strcmp(l->pt.label, "gpt"))
		printf("partition table: gpt, disk identifier %s\n", l->pt.disk_guid);
	else
		printf("partition table: dos, disk identifier 0x%08" PRIx32 "\n", l->pt.disk_id);
	if (!l->pt.nparts)
		printf("partitions: none\n");
	else
		printf("partitions:\n");
	for (unsigned i = 0; i < l->pt.nparts; i++) {
		const struct vd_ptable_part *p = &l->pt.part[i];
		if (p->type_guid[0]) {
			printf("    %u: start %" PRIu64 ", %" PRIu64 " sectors, %s at offset %" PRIu64
			       ", type %s (%s)",
			       p->number, p->start, p->size, cli_human(p->size * 512, a, sizeof(a)), p->start * 512,
			       p->type_guid, vd_gpt_type_name(p->type_guid));
			if (p->name[0])
				printf(", name \"%s\"", p->name);
			printf(", uuid %s", p->uuid);
			if (p->attrs)
				printf(", attributes 0x%016" PRIx64, p->attrs);
			printf("\n");
		} else {
			printf("    %u: %s, start %" PRIu64 ", %" PRIu64 " sectors, %s at offset %" PRIu64
			       ", type %02x (%s)%s\n",
			       p->number, p->number > 4 ? "logical" : p->extended ? "extended" : "primary",
			       p->start, p->size, cli_human(p->size * 512, a, sizeof(a)), p->start * 512, p->mbr_type,
			       vd_mbr_type_name(p->mbr_type), p->bootable ? ", bootable" : "");
		}
		if (l->probed[i]) {
			if (l->part[i].type[0])
				content_human("        ", &l->part[i]);
			else
				printf("        content: nothing recognised\n");
		}
	}
	if (l->pt.noverlaps) {
		char t[200];

		printf("overlapping partitions (%u):\n", l->pt.noverlaps);
		for (unsigned i = 0; i < cli_overlaps_listed(&l->pt); i++) {
			vd_ptable_overlap_text(&l->pt, &l->pt.overlap[i], t, sizeof(t));
			printf("    %s\n", t);
		}
	}
}


static void content_json(const struct vd_content *c)
{
	printf("{\"type\": ");
	json_str(stdout, c->type);
	printf(", \"usage\": ");
	json_str(stdout, c->usage);
	printf(", \"version\": ");
	json_str(stdout, c->version);
	printf(", \"label\": ");
	json_str(stdout, c->label);
	printf(", \"uuid\": ");
	json_str(stdout, c->uuid);
	printf(", \"block-size\": %llu}", (unsigned long long)c->block_size);
}

/* Extra keys, only where there is something: "partition-table" and
 * "partitions" for a disk with an MBR or GPT, "content" for a disk without one
 * on which libblkid recognised something. */
static void layout_json(const struct layout *l)
{
	if (!l->has_table) {
		if (l->disk.type[0]) {
			printf(",\n    \"content\": ");
			content_json(&l->disk);
		}
		return;
	}
	if (!strcmp(l->pt.label, "gpt"))
		printf(",\n    \"partition-table\": {\"type\": \"gpt\", \"id\": \"%s\", \"first-lba\": %" PRIu64
		       ", \"last-lba\": %" PRIu64 ", \"header-lba\": %" PRIu64 "}",
		       l->pt.disk_guid, l->pt.first_lba, l->pt.last_lba, l->pt.header_lba);
	else
		printf(",\n    \"partition-table\": {\"type\": \"dos\", \"id\": \"0x%08" PRIx32 "\"}",
		       l->pt.disk_id);
	printf(",\n    \"partitions\": [");
	for (unsigned i = 0; i < l->pt.nparts; i++) {
		const struct vd_ptable_part *p = &l->pt.part[i];
		printf("%s\n        {\"number\": %u, \"start\": %" PRIu64 ", \"sectors\": %" PRIu64
		       ", \"offset\": %" PRIu64 ", \"bytes\": %" PRIu64,
		       i ? "," : "", p->number, p->start, p->size, p->start * 512, p->size * 512);
		if (p->type_guid[0]) {
			printf(", \"type\": \"%s\", \"uuid\": \"%s\", \"name\": ", p->type_guid, p->uuid);
			json_str(stdout, p->name);
			printf(", \"attrs\": \"0x%016" PRIx64 "\", \"content\": ", p->attrs);
		} else {
			printf(", \"type\": \"%x\", \"bootable\": %s, \"content\": ", p->mbr_type,
			       p->bootable ? "true" : "false");
		}
		if (l->probed[i] && l->part[i].type[0])
			content_json(&l->part[i]);
		else
			printf("null");
		printf("}");
	}
	printf("%s]", l->pt.nparts ? "\n    " : "");
	cli_overlaps_json(&l->pt);
}

/*
 * The backend's extra keys as "format-specific"."data", in the one voice of
 * vdisk's JSON: kebab-case keys ("blocks_allocated" -> "blocks-allocated"),
 * numbers as numbers.  struct vd_info_kv only says "number or string", so
 * the VMDK keys that are something else are converted here, from this list:
 *
 *   cid, parent_cid   8 hex digits         -> a number, as qemu-img prints it
 *   hw_version        decimal digits       -> a number
 *   compressed        "yes" / "no"         -> a boolean
 *   extents           the extent count     -> dropped (the array's length)
 *   extentN           RW 16384 SPARSE "f"  -> "extents": [{"access": "RW",
 *                     "virtual-size": 8388608, "format": "SPARSE",
 *                     "filename": "f"}, ...] ("filename" null for ZERO)
 *
 * Parsing a text made for humans is a stopgap: a typed backend description
 * (per-extent fields, typed values) is to replace it.
 */
static bool all_digits(const char *s, int base)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!(base == 16 ? isxdigit((unsigned char)*s) : isdigit((unsigned char)*s)))
			return false;
	return true;
}

static void kebab_key(const char *key)
{
	char k[sizeof(((struct vd_info_kv *)0)->key)];

	snprintf(k, sizeof(k), "%s", key);
	for (char *p = k; *p; p++)
		if (*p == '_')
			*p = '-';
	json_str(stdout, k);
}

/* "RW 16384 SPARSE \"name\"" (vmdk.c); false when it is not of that form */
static bool extent_json(const char *v)
{
	char access[16], type[16];
	unsigned long long sectors;
	const char *q, *qe;
	int n = 0;

	if (sscanf(v, "%15s %llu %15s%n", access, &sectors, type, &n) != 3)
		return false;
	printf("{\"access\": ");
	json_str(stdout, access);
	printf(", \"virtual-size\": %llu, \"format\": ", sectors * 512ULL);
	json_str(stdout, type);
	printf(", \"filename\": ");
	q = strchr(v + n, '"');
	qe = q ? strrchr(q + 1, '"') : NULL;
	if (q && qe) {
		char name[sizeof(((struct vd_info_kv *)0)->value)];
		snprintf(name, sizeof(name), "%.*s", (int)(qe - q - 1), q + 1);
		json_str(stdout, name);
	} else {
		printf("null");
	}
	printf("}");
	return true;
}

static void extra_json(const struct vd_info *in)
{
	bool vmdk = !strcmp(in->format, "vmdk");
	unsigned n = 0, next = 0;

	printf("{");
	for (unsigned i = 0; i < in->nextra; i++) {
		const struct vd_info_kv *kv = &in->extra[i];

		if (vmdk && (!strcmp(kv->key, "extents") ||
			     (!strncmp(kv->key, "extent", 6) && all_digits(kv->key + 6, 10))))
			continue;
		printf("%s\n            ", n++ ? "," : "");
		kebab_key(kv->key);
		printf(": ");
		if (kv->is_number)
			printf("%s", kv->value);
		else if (vmdk && (!strcmp(kv->key, "cid") || !strcmp(kv->key, "parent_cid")) &&
			 all_digits(kv->value, 16) && strlen(kv->value) <= 8)
			printf("%lu", strtoul(kv->value, NULL, 16));
		else if (vmdk && !strcmp(kv->key, "hw_version") && all_digits(kv->value, 10) &&
			 strlen(kv->value) <= 9)
			printf("%s", kv->value);
		else if (vmdk && !strcmp(kv->key, "compressed") &&
			 (!strcmp(kv->value, "yes") || !strcmp(kv->value, "no")))
			printf("%s", kv->value[0] == 'y' ? "true" : "false");
		else
			json_str(stdout, kv->value);
	}
	if (vmdk) {
		printf("%s\n            \"extents\": [", n++ ? "," : "");
		for (unsigned i = 0; i < in->nextra; i++) {
			const struct vd_info_kv *kv = &in->extra[i];
			char want[16];

			snprintf(want, sizeof(want), "extent%u", next);
			if (strcmp(kv->key, want))
				continue;
			printf("%s\n                ", next ? "," : "");
			if (!extent_json(kv->value))
				json_str(stdout, kv->value);
			next++;
		}
		printf("%s]", next ? "\n            " : "");
	}
	printf("%s}", n ? "\n        " : "");
}

/* What the child stores about its parent, and what was opened for it. */
static void backing_names(struct vd_image *img, const char **stored, const char **full,
			  const char **format)
{
	struct vd_image *b = vd_backing(img);

	*stored = vd_parent_hint(img);
	*full = b ? vd_path(b) : "";
	*format = b ? vd_format(b) : "";
	if (!(*stored)[0])
		*stored = *full; /* a VDI child stores only the parent's UUID */
}

static void print_human(const char *path, struct vd_image *img, const struct vd_info *in,
			const struct layout *l)
{
	char a[32];

	printf("image: %s\n", path);
	printf("file format: %s\n", in->format);
	if (in->subformat[0])
		printf("subformat: %s\n", in->subformat);
	printf("virtual size: %s (%" PRIu64 " bytes)\n", cli_human(in->virtual_size, a, sizeof(a)), in->virtual_size);
	printf("file size: %s (%" PRIu64 " bytes)\n", cli_human(in->file_size, a, sizeof(a)), in->file_size);
	if (in->host_bytes_unknown)
		printf("disk size: unavailable\n");
	else
		printf("disk size: %s (%" PRIu64 " bytes)\n", cli_human(in->host_bytes, a, sizeof(a)), in->host_bytes);
	printf("allocated: %s (%" PRIu64 " bytes)\n", cli_human(in->allocated_bytes, a, sizeof(a)), in->allocated_bytes);
	if (in->block_size)
		printf("block size: %" PRIu32 "\n", in->block_size);
	if (vd_has_parent_link(img)) {
		const char *stored, *full, *bformat;

		backing_names(img, &stored, &full, &bformat);
		if (!full[0])
			printf("backing file: %s (not opened)\n", stored[0] ? stored : "(only its UUID is stored)");
		else if (strcmp(stored, full))
			printf("backing file: %s (actual path: %s)\n", stored, full);
		else
			printf("backing file: %s\n", full);
		if (bformat[0])
			printf("backing file format: %s\n", bformat);
	}
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
	layout_human(l);
}

static void print_json(const char *path, struct vd_image *img, const struct vd_info *in,
		       const struct layout *l)
{
	const char *stored, *full, *bformat;

	printf("{\n    \"filename\": ");
	json_str(stdout, path);
	printf(",\n    \"format\": ");
	json_str(stdout, in->format);
	printf(",\n    \"subformat\": ");
	json_str(stdout, in->subformat);
	printf(",\n    \"virtual-size\": %" PRIu64, in->virtual_size);
	printf(",\n    \"file-size\": %" PRIu64, in->file_size);
	if (!in->host_bytes_unknown) /* qemu-img leaves it out too */
		printf(",\n    \"actual-size\": %" PRIu64, in->host_bytes);
	printf(",\n    \"allocated-bytes\": %" PRIu64, in->allocated_bytes);
	printf(",\n    \"cluster-size\": %" PRIu32, in->block_size);
	if (vd_has_parent_link(img)) {
		backing_names(img, &stored, &full, &bformat);
		printf(",\n    \"backing-filename\": ");
		json_str(stdout, stored);
		printf(",\n    \"full-backing-filename\": ");
		json_str(stdout, full);
		printf(",\n    \"backing-filename-format\": ");
		json_str(stdout, bformat);
	}
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
	printf(",\n    \"geometry\": {\"cylinders\": %" PRIu32 ", \"heads\": %" PRIu32
	       ", \"sectors-per-track\": %" PRIu32 "}",
	       in->cylinders, in->heads, in->sectors);
	printf(",\n    \"format-specific\": {\n        \"type\": ");
	json_str(stdout, in->format);
	printf(",\n        \"data\": ");
	extra_json(in);
	printf("\n    }");
	layout_json(l);
	printf("\n}\n");
}

int cmd_info(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "output", required_argument, NULL, 'o' },
		{ "allow-devices", no_argument, NULL, 'D' },
		{ "backing-chain", no_argument, NULL, 'C' },
		{ "force", no_argument, NULL, 'F' },
		CLI_CHAIN_OPTION,
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *fmt = NULL;
	struct vd_error err = { 0 };
	struct vd_image *img, *layer;
	struct vd_info info;
	struct layout *lay;
	unsigned flags = 0;
	int json = 0, c, r, n = 0;
	bool chain = false, force = false;

	while ((c = getopt_long(argc, argv, "f:h", lo, NULL)) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'o':
			if ((json = cli_output_mode("info", optarg)) < 0)
				return 1;
			break;
		case 'D': flags |= VD_OPEN_ALLOW_DEVICES; break;
		case 'C': chain = true; break;
		case 'F': force = true; break;
		case CLI_OPT_BACKING:
			if (cli_chain_backing("info", optarg))
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
	cli_chain_apply("info", force);
	r = vd_open(&img, argv[optind], fmt, flags, &err);
	if (r < 0 && !chain && (r == -ENOENT || r == -EINVAL)) {
		/* a child whose parent is missing or changed: show what it
		 * stores about the link (that is how a chain is rebuilt) */
		struct vd_error e2 = { 0 };
		if (vd_open(&img, argv[optind], fmt, flags | VD_OPEN_NO_BACKING, &e2) == 0 &&
		    vd_has_parent_link(img)) {
			cli_err("info", "warning: %s", err.msg);
			r = 0;
		} else if (img) {
			vd_close(img, NULL);
			img = NULL;
		}
	}
	if (r < 0)
		return cli_fail("info", &err, 1);
	lay = calloc(1, sizeof(*lay));
	if (!lay) {
		vd_close(img, NULL);
		cli_err("info", "out of memory");
		return 1;
	}
	if (chain && json)
		printf("[");
	for (layer = img; layer; layer = chain ? vd_backing(layer) : NULL, n++) {
		/* the top image as named on the command line, parents as opened */
		const char *name = layer == img ? argv[optind] : vd_path(layer);

		r = vd_get_info(layer, &info, &err);
		if (r < 0) {
			free(lay);
			vd_close(img, NULL);
			return cli_fail("info", &err, 1);
		}
		memset(lay, 0, sizeof(*lay));
		/* partitions are the guest's: shown for the top image only */
		if (layer == img)
			probe_layout(img, lay);
		if (chain && json && n)
			printf(",");
		if (chain && !json && n)
			printf("\n");
		if (json)
			print_json(name, layer, &info, lay);
		else
			print_human(name, layer, &info, lay);
	}
	if (chain && json)
		printf("]\n");
	free(lay);
	vd_close(img, NULL);
	return 0;
}
