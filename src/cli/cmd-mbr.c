/*
 * vdisk mbr: write an MBR partition table from an sfdisk-style script, or
 * show one (--dump, --list, --output=json).
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
#include <sys/random.h>

static const char usage[] =
	"Usage: vdisk mbr [OPTIONS] IMAGE < SCRIPT\n"
	"       vdisk mbr --dump|--list|--output=json IMAGE\n"
	"\n"
	"Write an MBR partition table into IMAGE (any format) from an sfdisk-style\n"
	"script, or print the table of IMAGE.  The table is checked completely\n"
	"before anything is written; EBRs are written before the MBR.\n"
	"\n"
	"      --script FILE    read the script from FILE (default: standard input)\n"
	"  -a, --align MODE     mib (default: 1 MiB) or cylinder (legacy layout)\n"
	"  -b, --bootcode FILE  install the first 440 bytes of FILE as boot code\n"
	"                       (default: keep the boot code already there)\n"
	"      --heads H        heads for the CHS fields (default 255)\n"
	"      --sectors S      sectors per track for the CHS fields (default 63)\n"
	"      --dry-run        check and print the table (dump format), write nothing\n"
	"  -d, --dump           print the table in sfdisk's dump format\n"
	"  -l, --list           print the table like fdisk -l\n"
	"      --output FMT     with no script: json prints it like sfdisk --json\n"
	"  -f, --format FMT     image format (default: probe the contents)\n"
	"      --allow-devices  allow a block device as IMAGE\n"
	"      --wipe-gpt       IMAGE holds a GPT: replace it by the MBR and erase the\n"
	"                       GPT header signatures (refused without this option)\n"
	"  -h, --help           show this help\n";

/* "disk.img" -> "disk.img1", "disk1" -> "disk1p1" (as sfdisk names them) */
static void node(char *out, size_t len, const char *path, unsigned n)
{
	size_t l = strlen(path);
	snprintf(out, len, "%s%s%u", path, l && isdigit((unsigned char)path[l - 1]) ? "p" : "", n);
}

static void print_dump(FILE *f, const char *path, const struct vd_mbr *m)
{
	char name[4200];

	fprintf(f, "label: dos\nlabel-id: 0x%08" PRIx32 "\ndevice: %s\nunit: sectors\nsector-size: 512\n",
		m->disk_id, path);
	if (m->nparts)
		fputc('\n', f);
	for (unsigned i = 0; i < m->nparts; i++) {
		const struct vd_mbr_part *p = &m->part[i];
		node(name, sizeof(name), path, p->number);
		fprintf(f, "%s : start=%12" PRIu64 ", size=%12" PRIu64 ", type=%x%s\n", name,
			p->start, p->size, p->type, p->bootable ? ", bootable" : "");
	}
}

static void print_json(const char *path, const struct vd_mbr *m)
{
	char name[4200], id[16];

	snprintf(id, sizeof(id), "0x%08" PRIx32, m->disk_id);
	printf("{\n   \"partitiontable\": {\n      \"label\": \"dos\",\n      \"id\": \"%s\",\n      \"device\": ", id);
	json_str(stdout, path);
	printf(",\n      \"unit\": \"sectors\",\n      \"sectorsize\": 512");
	if (m->nparts) {
		printf(",\n      \"partitions\": [\n");
		printf("         {\n");
		for (unsigned i = 0; i < m->nparts; i++) {
			const struct vd_mbr_part *p = &m->part[i];
			node(name, sizeof(name), path, p->number);
			printf("            \"node\": ");
			json_str(stdout, name);
			printf(",\n            \"start\": %" PRIu64 ",\n            \"size\": %" PRIu64
			       ",\n            \"type\": \"%x\"", p->start, p->size, p->type);
			if (p->bootable)
				printf(",\n            \"bootable\": true");
			printf("\n         }%s\n", i + 1 < m->nparts ? ",{" : "");
		}
		printf("      ]");
	}
	printf("\n   }\n}\n");
}

/* fdisk's sizes: "3M", "1.5G" */
static const char *short_size(uint64_t bytes, char *buf, size_t len)
{
	static const char u[] = "BKMGTPE";
	unsigned i = 0;
	uint64_t div = 1;

	while (i + 1 < sizeof(u) - 1 && bytes / div >= 1024) {
		div *= 1024;
		i++;
	}
	if (bytes % div == 0 || i == 0)
		snprintf(buf, len, "%" PRIu64 "%c", bytes / div, u[i]);
	else
		snprintf(buf, len, "%.1f%c", (double)bytes / (double)div, u[i]);
	return buf;
}

static void print_list(const char *path, const struct vd_mbr *m, uint64_t size)
{
	char name[4200], sz[32], h[32];
	int wn = 6, ws = 5, we = 3, wc = 7, wz = 4;

	printf("Disk %s: %s, %" PRIu64 " bytes, %" PRIu64 " sectors\n", path,
	       cli_human(size, h, sizeof(h)), size, size / 512);
	printf("Units: sectors of 1 * 512 = 512 bytes\n");
	printf("Sector size (logical/physical): 512 bytes / 512 bytes\n");
	printf("Disklabel type: dos\n");
	printf("Disk identifier: 0x%08" PRIx32 "\n", m->disk_id);
	if (!m->nparts)
		return;
	for (unsigned i = 0; i < m->nparts; i++) {
		const struct vd_mbr_part *p = &m->part[i];
		char num[32];
		int l;
		node(name, sizeof(name), path, p->number);
		l = (int)strlen(name);
		wn = l > wn ? l : wn;
		l = snprintf(num, sizeof(num), "%" PRIu64, p->start);
		ws = l > ws ? l : ws;
		l = snprintf(num, sizeof(num), "%" PRIu64, p->start + p->size - 1);
		we = l > we ? l : we;
		l = snprintf(num, sizeof(num), "%" PRIu64, p->size);
		wc = l > wc ? l : wc;
		l = (int)strlen(short_size(p->size * 512, sz, sizeof(sz)));
		wz = l > wz ? l : wz;
	}
	printf("\n%-*s Boot %*s %*s %*s %*s Id Type\n", wn, "Device", ws, "Start", we, "End",
	       wc, "Sectors", wz, "Size");
	for (unsigned i = 0; i < m->nparts; i++) {
		const struct vd_mbr_part *p = &m->part[i];
		node(name, sizeof(name), path, p->number);
		printf("%-*s %-4s %*" PRIu64 " %*" PRIu64 " %*" PRIu64 " %*s %2x %s\n", wn, name,
		       p->bootable ? "*" : "", ws, p->start, we, p->start + p->size - 1, wc, p->size,
		       wz, short_size(p->size * 512, sz, sizeof(sz)), p->type, vd_mbr_type_name(p->type));
	}
}

static int parse_geo(const char *s, unsigned max, uint32_t *out, const char *what)
{
	char *e;
	unsigned long v = strtoul(s, &e, 10);

	if (!*s || *e || v < 1 || v > max) {
		cli_err("mbr", "%s must be 1..%u, not '%s'", what, max, s);
		return -1;
	}
	*out = (uint32_t)v;
	return 0;
}

int cmd_mbr(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "script", required_argument, NULL, 's' },
		{ "align", required_argument, NULL, 'a' },
		{ "bootcode", required_argument, NULL, 'b' },
		{ "heads", required_argument, NULL, 'H' },
		{ "sectors", required_argument, NULL, 'S' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "dump", no_argument, NULL, 'd' },
		{ "list", no_argument, NULL, 'l' },
		{ "output", required_argument, NULL, 'o' },
		{ "format", required_argument, NULL, 'f' },
		{ "allow-devices", no_argument, NULL, 'D' },
		{ "wipe-gpt", no_argument, NULL, 'W' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *script_path = NULL, *boot_path = NULL, *fmt = NULL, *path;
	struct vd_error err = { 0 };
	struct vd_image *img = NULL;
	struct vd_mbr_script *script = NULL;
	struct vd_mbr *m = NULL;
	uint8_t boot[440];
	uint32_t heads = 255, sectors = 63, id;
	unsigned flags = 0;
	int align = VD_ALIGN_MIB, show = 0, json = 0, dry = 0, wipe_gpt = 0, gpt, c, r, rc = 1;
	char *text = NULL;

	/* -s (--script) and -n (--dry-run) are still accepted, not shown: -s is
	 * compare's --strict, -n convert's --no-create (vdisk(1), OPTIONS
	 * ACROSS COMMANDS) */
	while ((c = getopt_long(argc, argv, "s:a:b:ndlf:h", lo, NULL)) != -1) {
		switch (c) {
		case 's': script_path = optarg; break;
		case 'a':
			if (!strcmp(optarg, "mib") || !strcmp(optarg, "1MiB") || !strcmp(optarg, "MiB"))
				align = VD_ALIGN_MIB;
			else if (!strcmp(optarg, "cylinder") || !strcmp(optarg, "cyl"))
				align = VD_ALIGN_CYLINDER;
			else {
				cli_err("mbr", "--align must be 'mib' or 'cylinder', not '%s'", optarg);
				return 1;
			}
			break;
		case 'b': boot_path = optarg; break;
		case 'H':
			if (parse_geo(optarg, 255, &heads, "--heads") < 0)
				return 1;
			break;
		case 'S':
			if (parse_geo(optarg, 63, &sectors, "--sectors") < 0)
				return 1;
			break;
		case 'n': dry = 1; break;
		case 'd': show = 'd'; break;
		case 'l': show = 'l'; break;
		case 'o':
			if ((json = cli_output_mode("mbr", optarg)) < 0)
				return 1;
			if (json)
				show = 'j';
			break;
		case 'f': fmt = optarg; break;
		case 'D': flags |= VD_OPEN_ALLOW_DEVICES; break;
		case 'W': wipe_gpt = 1; break;
		case 'h': cli_usage(stdout, usage); return 0;
		default: cli_usage(stderr, usage); return 1;
		}
	}
	if (optind + 1 != argc) {
		cli_usage(stderr, usage);
		return 1;
	}
	path = argv[optind];
	if (show && (script_path || boot_path || dry)) {
		cli_err("mbr", "--dump, --list and --output=json only read the table; they take no script, --bootcode or --dry-run");
		return 1;
	}
	m = calloc(1, sizeof(*m));
	script = calloc(1, sizeof(*script));
	if (!m || !script) {
		cli_err("mbr", "out of memory");
		goto out;
	}

	if (show) {
		r = vd_open(&img, path, fmt, flags, &err);
		if (r < 0) {
			rc = cli_fail("mbr", &err, 1);
			goto out;
		}
		r = vd_mbr_read(img, m, &err);
		if (r < 0) {
			rc = cli_fail("mbr", &err, 1);
			goto out;
		}
		for (unsigned i = 0; i < m->nparts; i++)
			if (m->part[i].type == 0xee) {
				cli_err("mbr", "note: %s is a GPT disk and this is its protective MBR; vdisk info and vdisk geometry list the GPT partitions",
					path);
				break;
			}
		if (show == 'd')
			print_dump(stdout, path, m);
		else if (show == 'l')
			print_list(path, m, vd_size(img));
		else
			print_json(path, m);
		rc = 0;
		goto out;
	}

	/* everything is read and checked before the image is opened for writing */
	text = cli_read_script("mbr", script_path);
	if (!text)
		goto out;
	if (boot_path) {
		FILE *f = fopen(boot_path, "rb");
		size_t n;
		if (!f) {
			cli_err("mbr", "%s: %s", boot_path, strerror(errno));
			goto out;
		}
		n = fread(boot, 1, sizeof(boot), f);
		fclose(f);
		if (n != sizeof(boot)) {
			cli_err("mbr", "%s: %zu bytes, boot code needs at least 440", boot_path, n);
			goto out;
		}
	}
	r = vd_mbr_parse_script(text, script, &err);
	if (r < 0) {
		cli_err("mbr", "%s: %s", script_path ? script_path : "script", err.msg);
		goto out;
	}
	r = vd_open(&img, path, fmt, flags | (dry ? 0 : VD_OPEN_RDWR), &err);
	if (r < 0) {
		rc = cli_fail("mbr", &err, 1);
		goto out;
	}
	/* no label-id in the script: keep the disk's, else a random one */
	if (vd_mbr_read(img, m, &err) == 0 && m->disk_id) {
		id = m->disk_id;
	} else if (getrandom(&id, sizeof(id), 0) != sizeof(id)) {
		cli_err("mbr", "getrandom: %s", strerror(errno));
		goto out;
	}
	r = vd_mbr_layout(script, vd_size(img) / 512, align, heads, sectors, id, m, &err);
	if (r < 0) {
		cli_err("mbr", "%s: %s (nothing written)", path, err.msg);
		goto out;
	}
	/* a GPT disk: the new MBR would replace its protective MBR and leave
	 * two tables on the disk; only with --wipe-gpt, which erases them */
	gpt = vd_gpt_signatures(img, &err);
	if (gpt < 0) {
		rc = cli_fail("mbr", &err, 1);
		goto out;
	}
	if (gpt && !wipe_gpt) {
		cli_err("mbr", "%s holds a GPT partition table (\"EFI PART\" at %s); vdisk writes MBR tables only: pass --wipe-gpt to replace it, which erases the GPT header signatures (nothing written)",
			path, gpt == 3 ? "sector 1 and the last sector" : gpt == 1 ? "sector 1" : "the last sector");
		goto out;
	}
	if (dry) {
		print_dump(stdout, path, m);
		rc = 0;
		goto out;
	}
	r = vd_mbr_write(img, m, boot_path ? boot : NULL, heads, sectors, &err);
	/* after the MBR: killed in between, the disk has the new MBR (no
	 * protective entry any more) and stale GPT signatures, which a rerun
	 * with --wipe-gpt removes */
	if (r == 0 && gpt)
		r = vd_gpt_wipe(img, &err);
	if (r < 0) {
		rc = cli_fail("mbr", &err, 1);
		goto out;
	}
	if (gpt)
		printf("%s: GPT header signatures erased\n", path);
	r = vd_close(img, &err);
	img = NULL;
	if (r < 0) {
		rc = cli_fail("mbr", &err, 1);
		goto out;
	}
	rc = 0;
out:
	if (img)
		vd_close(img, NULL);
	free(text);
	free(script);
	free(m);
	return rc;
}
