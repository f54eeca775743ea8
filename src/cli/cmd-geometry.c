/*
 * vdisk geometry: legacy CHS geometry, partition offsets, losetup/mkfs
 * numbers for a size or an image, and the CHS fields of an image's MBR.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage[] =
	"Usage: vdisk geometry [OPTIONS] SIZE|IMAGE\n"
	"\n"
	"Show the legacy geometry of a disk of SIZE bytes (\"4141875200\", \"10G\")\n"
	"or of IMAGE: cylinders, usable bytes, the first-partition offsets, and a\n"
	"whole-disk partition's size with the losetup and mkfs numbers.  For an\n"
	"image with an MBR, list its partitions with their CHS fields as stored\n"
	"and as computed, flagging the ones that disagree with the LBA fields,\n"
	"and (as for a GPT's) the losetup and mkfs numbers of each partition.\n"
	"\n"
	"  -H, --heads H        heads per cylinder (default 255)\n"
	"      --sectors S      sectors per track (default 63)\n"
	"      --output FMT     human (default) or json\n"
	"  -f, --format FMT     image format (default: probe the contents)\n"
	"      --allow-devices  allow a block device as IMAGE\n"
	"  -h, --help           show this help\n";

/* overlaps held in the list (the count may be larger) */


struct gpart {
	const struct vd_mbr_part *p;
	struct vd_chs s_st, s_en, c_st, c_en; /* stored, computed */
	bool mismatch;
};

static void chs_of(const struct vd_mbr_part *p, uint32_t H, uint32_t S, struct gpart *g)
{
	uint8_t a[3], b[3];

	g->p = p;
	vd_chs_decode(p->chs_start, &g->s_st);
	vd_chs_decode(p->chs_end, &g->s_en);
	vd_chs_encode(p->start, H, S, a);
	vd_chs_encode(p->start + p->size - 1, H, S, b);
	vd_chs_decode(a, &g->c_st);
	vd_chs_decode(b, &g->c_en);
	g->mismatch = memcmp(a, p->chs_start, 3) || memcmp(b, p->chs_end, 3);
}

static void whole_human(const char *what, uint64_t start, uint64_t sectors)
{
	printf("%s\n", what);
	if (!sectors) {
		printf("    does not fit\n");
		return;
	}
	printf("    start sector %" PRIu64 ", byte offset %" PRIu64 "\n", start, start * 512);
	printf("    %" PRIu64 " sectors, %" PRIu64 " bytes, %" PRIu64 " 1-KiB blocks\n",
	       sectors, sectors * 512, sectors / 2);
	printf("    losetup -o %" PRIu64 " --sizelimit %" PRIu64 "\n", start * 512, sectors * 512);
	printf("    mkfs ... %" PRIu64 "\n", sectors / 2);
}

static void whole_json(const char *key, uint64_t start, uint64_t sectors)
{
	printf(",\n    \"%s\": {\"start\": %" PRIu64 ", \"offset\": %" PRIu64 ", \"sectors\": %" PRIu64
	       ", \"bytes\": %" PRIu64 ", \"blocks-1k\": %" PRIu64 "}",
	       key, start, start * 512, sectors, sectors * 512, sectors / 2);
}

static void chs_json(const char *key, const struct vd_chs *c)
{
	printf(", \"%s\": [%" PRIu32 ", %" PRIu32 ", %" PRIu32 "]", key, c->cylinder, c->head, c->sector);
}


int cmd_geometry(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "heads", required_argument, NULL, 'H' },
		{ "sectors", required_argument, NULL, 'S' },
		{ "output", required_argument, NULL, 'o' },
		{ "format", required_argument, NULL, 'f' },
		{ "allow-devices", no_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct vd_error err = { 0 };
	struct vd_image *img = NULL;
	struct vd_geometry g;
	struct vd_mbr *m = NULL;
	struct vd_ptable *pt = NULL; /* the table (GPT entries, MBR overlaps) */
	struct gpart *gp = NULL;
	const char *fmt = NULL, *arg;
	unsigned long heads = 255, sectors = 63;
	unsigned flags = 0, np = 0;
	int json = 0, c, r, rc = 1, have_table = 0, gpt = 0;
	uint64_t size;
	struct stat st;
	char h[32];

	/* -S (--sectors) is still accepted, not shown: -S is convert's
	 * --sparse-size (vdisk(1), OPTIONS ACROSS COMMANDS) */
	while ((c = getopt_long(argc, argv, "H:S:f:h", lo, NULL)) != -1) {
		char *e;
		switch (c) {
		case 'H':
			heads = strtoul(optarg, &e, 10);
			if (*e || !*optarg || heads < 1 || heads > 255) {
				cli_err("geometry", "--heads must be 1..255, not '%s'", optarg);
				return 1;
			}
			break;
		case 'S':
			sectors = strtoul(optarg, &e, 10);
			if (*e || !*optarg || sectors < 1 || sectors > 63) {
				cli_err("geometry", "--sectors must be 1..63, not '%s'", optarg);
				return 1;
			}
			break;
		case 'o':
			if ((json = cli_output_mode("geometry", optarg)) < 0)
				return 1;
			break;
		case 'f': fmt = optarg; break;
		case 'D': flags |= VD_OPEN_ALLOW_DEVICES; break;
		case 'h': cli_usage(stdout, usage); return 0;
		default: cli_usage(stderr, usage); return 1;
		}
	}
	if (optind + 1 != argc) {
		cli_usage(stderr, usage);
		return 1;
	}
	arg = argv[optind];
	/* an existing file is an image; anything else must be a size */
	if (stat(arg, &st) == 0 || fmt) {
		if (vd_open(&img, arg, fmt, flags, &err) < 0)
			return cli_fail("geometry", &err, 1);
		size = vd_size(img);
		m = calloc(1, sizeof(*m));
		if (!m) {
			cli_err("geometry", "out of memory");
			goto out;
		}
		pt = calloc(1, sizeof(*pt));
		if (!pt) {
			cli_err("geometry", "out of memory");
			goto out;
		}
		/* a GPT disk: its protective MBR entry says nothing (its CHS
		 * fields are 0xFFFFFF by definition); list the GPT entries */
		r = vd_ptable_read_overlaps(img, pt, &err);
		if (r == 0 && !strcmp(pt->label, "gpt")) {
			have_table = 1;
			gpt = 1;
		} else if (r == 0 && vd_mbr_read(img, m, &err) == 0) {
			/* MBR: read again for the CHS fields as stored; PT
			 * stays for its overlaps */
			have_table = 1;
			gp = calloc(m->nparts + 1, sizeof(*gp));
			if (!gp) {
				cli_err("geometry", "out of memory");
				goto out;
			}
			for (unsigned i = 0; i < m->nparts; i++)
				chs_of(&m->part[i], (uint32_t)heads, (uint32_t)sectors, &gp[np++]);
		} else if (err.code != -ENOENT) {
			/* a broken EBR chain, or a GPT damaged in both copies */
			rc = cli_fail("geometry", &err, 1);
			goto out;
		} else {
			free(pt);
			pt = NULL;
		}
	} else if (vd_parse_size(arg, &size) < 0) {
		cli_err("geometry", "'%s' is neither an existing image nor a size like 4141875200 or 10G", arg);
		return 1;
	}
	if (vd_geometry_compute(size, (uint32_t)heads, (uint32_t)sectors, &g, &err) < 0) {
		rc = cli_fail("geometry", &err, 1);
		goto out;
	}

	if (json) {
		printf("{\n    \"size\": %" PRIu64 ",\n    \"sectors\": %" PRIu64, g.size, g.total_sectors);
		printf(",\n    \"heads\": %" PRIu32 ",\n    \"sectors-per-track\": %" PRIu32, g.heads, g.sectors);
		printf(",\n    \"cylinder-sectors\": %" PRIu64 ",\n    \"cylinder-bytes\": %" PRIu64,
		       g.cylinder_sectors, g.cylinder_bytes);
		printf(",\n    \"cylinders\": %" PRIu64 ",\n    \"usable-bytes\": %" PRIu64
		       ",\n    \"lost-bytes\": %" PRIu64, g.cylinders, g.usable_bytes, g.lost_bytes);
		printf(",\n    \"legacy-first-offset\": %" PRIu64 ",\n    \"modern-first-offset\": %" PRIu64,
		       g.legacy_start * 512, g.modern_start * 512);
		whole_json("whole-disk-legacy", g.legacy_start, g.legacy_sectors);
		whole_json("whole-disk-modern", g.modern_start, g.modern_sectors);
		if (have_table && gpt) {
			printf(",\n    \"partition-table\": {\"type\": \"gpt\", \"id\": \"%s\"},\n    \"partitions\": [",
			       pt->disk_guid);
			for (unsigned i = 0; i < pt->nparts; i++) {
				const struct vd_ptable_part *p = &pt->part[i];
				printf("%s\n        {\"number\": %u, \"start\": %" PRIu64 ", \"end\": %" PRIu64
				       ", \"sectors\": %" PRIu64 ", \"offset\": %" PRIu64 ", \"bytes\": %" PRIu64
				       ", \"blocks-1k\": %" PRIu64 ", \"type\": \"%s\", \"name\": ",
				       i ? "," : "", p->number, p->start, p->start + p->size - 1, p->size,
				       p->start * 512, p->size * 512, p->size / 2, p->type_guid);
				json_str(stdout, p->name);
				printf("}");
			}
			printf("%s]", pt->nparts ? "\n    " : "");
		} else if (have_table) {
			printf(",\n    \"partition-table\": {\"type\": \"dos\", \"id\": \"0x%08" PRIx32 "\"},\n"
			       "    \"partitions\": [", m->disk_id);
			for (unsigned i = 0; i < np; i++) {
				const struct vd_mbr_part *p = gp[i].p;
				printf("%s\n        {\"number\": %u, \"start\": %" PRIu64 ", \"end\": %" PRIu64
				       ", \"sectors\": %" PRIu64 ", \"offset\": %" PRIu64 ", \"bytes\": %" PRIu64
				       ", \"blocks-1k\": %" PRIu64 ", \"type\": \"%x\"",
				       i ? "," : "", p->number, p->start, p->start + p->size - 1, p->size,
				       p->start * 512, p->size * 512, p->size / 2, p->type);
				chs_json("chs-start", &gp[i].s_st);
				chs_json("chs-end", &gp[i].s_en);
				chs_json("chs-start-computed", &gp[i].c_st);
				chs_json("chs-end-computed", &gp[i].c_en);
				printf(", \"chs-mismatch\": %s}", gp[i].mismatch ? "true" : "false");
			}
			printf("%s]", np ? "\n    " : "");
		}
		if (have_table)
			cli_overlaps_json(pt);
		printf("\n}\n");
		rc = 0;
		goto out;
	}

	printf("size: %s (%" PRIu64 " bytes), %" PRIu64 " sectors\n", cli_human(g.size, h, sizeof(h)),
	       g.size, g.total_sectors);
	printf("geometry: %" PRIu32 " heads, %" PRIu32 " sectors/track, %" PRIu64
	       " sectors (%" PRIu64 " bytes) per cylinder\n",
	       g.heads, g.sectors, g.cylinder_sectors, g.cylinder_bytes);
	printf("cylinders: %" PRIu64 " (%" PRIu64 " usable bytes, %" PRIu64 " bytes past the last whole cylinder)\n",
	       g.cylinders, g.usable_bytes, g.lost_bytes);
	printf("first partition: legacy sector %" PRIu64 " (offset %" PRIu64 "), modern sector %" PRIu64
	       " (offset %" PRIu64 ")\n",
	       g.legacy_start, g.legacy_start * 512, g.modern_start, g.modern_start * 512);
	whole_human("whole-disk partition, legacy (by cylinders, to the last whole cylinder):",
		    g.legacy_start, g.legacy_sectors);
	whole_human("whole-disk partition, modern (1 MiB aligned, to the end of the disk):",
		    g.modern_start, g.modern_sectors);
	if (have_table && gpt) {
		if (pt->backup_used)
			cli_err("geometry", "warning: %s", pt->note);
		printf("partitions (GPT: LBAs only, CHS does not apply; usable sectors %" PRIu64 "..%" PRIu64 "):\n",
		       pt->first_lba, pt->last_lba);
		if (!pt->nparts)
			printf("    none\n");
		else
			printf("    %-3s %10s %10s %10s %14s %14s  %s\n", "#", "Start", "End", "Sectors",
			       "Offset", "Bytes", "Name");
		for (unsigned i = 0; i < pt->nparts; i++) {
			const struct vd_ptable_part *p = &pt->part[i];
			printf("    %-3u %10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %14" PRIu64 " %14" PRIu64 "  %s\n",
			       p->number, p->start, p->start + p->size - 1, p->size, p->start * 512,
			       p->size * 512, p->name);
			printf("        losetup -o %" PRIu64 " --sizelimit %" PRIu64 "; mkfs ... %" PRIu64 "\n",
			       p->start * 512, p->size * 512, p->size / 2);
		}
	} else if (have_table) {
		unsigned bad = 0;
		printf("partitions (MBR, CHS as cylinder/head/sector, stored | computed):\n");
		if (!np)
			printf("    none\n");
		else
			printf("    %-3s %10s %10s %10s %14s %14s  %-11s %-11s %-11s %-11s\n", "#", "Start", "End",
			       "Sectors", "Offset", "Bytes", "CHS start", "CHS end", "computed", "computed");
		for (unsigned i = 0; i < np; i++) {
			const struct vd_mbr_part *p = gp[i].p;
			char b[4][16];
			const struct vd_chs *v[4] = { &gp[i].s_st, &gp[i].s_en, &gp[i].c_st, &gp[i].c_en };
			for (int k = 0; k < 4; k++)
				snprintf(b[k], sizeof(b[k]), "%" PRIu32 "/%" PRIu32 "/%" PRIu32,
					 v[k]->cylinder, v[k]->head, v[k]->sector);
			printf("    %-3u %10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %14" PRIu64 " %14" PRIu64
			       "  %-11s %-11s %-11s %-11s%s\n",
			       p->number, p->start, p->start + p->size - 1, p->size, p->start * 512,
			       p->size * 512, b[0], b[1], b[2], b[3], gp[i].mismatch ? "  CHS mismatch" : "");
			/* as for GPT; an extended partition only holds the
			 * logical ones (and their EBRs): no filesystem */
			if (p->number <= 4 && vd_mbr_is_extended(p->type))
				printf("        extended: holds the logical partitions, no losetup/mkfs of its own\n");
			else
				printf("        losetup -o %" PRIu64 " --sizelimit %" PRIu64 "; mkfs ... %" PRIu64 "\n",
				       p->start * 512, p->size * 512, p->size / 2);
			bad += gp[i].mismatch;
		}
		if (bad)
			printf("%u partition(s) have CHS fields that disagree with their LBA fields\n", bad);
	}
	if (have_table && pt->noverlaps) {
		char t[200];

		printf("overlapping partitions (%u):\n", pt->noverlaps);
		for (unsigned i = 0; i < cli_overlaps_listed(pt); i++) {
			vd_ptable_overlap_text(pt, &pt->overlap[i], t, sizeof(t));
			printf("    %s\n", t);
			cli_err("geometry", "warning: %s", t);
		}
	}
	rc = 0;
out:
	free(gp);
	free(pt);
	free(m);
	if (img)
		vd_close(img, NULL);
	return rc;
}
