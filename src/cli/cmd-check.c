/*
 * vdisk check: validate image metadata, optionally repair it.
 * Exit: 0 consistent, 1 could not check, 2 corrupted, 3 only leaked space.
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
	"Usage: vdisk check [-f FMT] [-r] [--output=human|json] IMAGE\n"
	"\n"
	"Validate the metadata of IMAGE: block map entries in range and unique,\n"
	"allocation counts, file long enough.  With -r, repair what can be\n"
	"repaired without losing data (counts, leaked blocks) and report it.\n"
	"Exit status: 0 consistent, 1 could not check, 2 corrupted,\n"
	"3 only leaked space.\n"
	"\n"
	"  -f, --format FMT   image format (default: probe)\n"
	"  -r, --repair       repair counts and leaks\n"
	"      --allow-devices  allow a block device as IMAGE\n"
	"      --backing FILE  a parent candidate (repeatable; see vdisk(1))\n"
	"      --force        open a parent changed since the snapshot (else\n"
	"                     reported as an error)\n"
	"      --output FMT   human (default) or json\n"
	"  -h, --help         show this help\n";

struct notes {
	int json;
	unsigned n;
	char **msgs;
	int *kinds;
};

static const char *kind_name(int k)
{
	switch (k) {
	case VD_CHECK_NOTE_ERROR: return "error";
	case VD_CHECK_NOTE_LEAK: return "leak";
	case VD_CHECK_NOTE_FIXED: return "repaired";
	default: return "info";
	}
}

static void note(void *ctx, int kind, const char *msg)
{
	struct notes *n = ctx;
	char **m;
	int *k;

	if (!n->json) {
		printf("%s: %s\n", kind == VD_CHECK_NOTE_ERROR ? "ERROR" :
		       kind == VD_CHECK_NOTE_LEAK ? "Leaked" :
		       kind == VD_CHECK_NOTE_FIXED ? "Repaired" : "Note", msg);
		return;
	}
	m = realloc(n->msgs, (n->n + 1) * sizeof(*m));
	if (m)
		n->msgs = m;
	k = realloc(n->kinds, (n->n + 1) * sizeof(*k));
	if (k)
		n->kinds = k;
	if (m && k && (n->msgs[n->n] = strdup(msg))) {
		n->kinds[n->n] = kind;
		n->n++;
	}
}

/* Overlapping partitions are not image corruption, but every writer that
 * walks partitions refuses them: say so (a note, the exit status stays). */
static void partition_notes(struct vd_image *img, struct notes *n)
{
	struct vd_ptable *pt = calloc(1, sizeof(*pt));
	struct vd_error e = { 0 };
	char text[256], msg[320];

	if (pt && vd_ptable_read_overlaps(img, pt, &e) == 0) {
		for (unsigned i = 0; i < pt->noverlaps && i < VD_PTABLE_MAX_OVERLAPS; i++) {
			vd_ptable_overlap_text(pt, &pt->overlap[i], text, sizeof(text));
			snprintf(msg, sizeof(msg), "partition table: %s (zerofree and compact --fs-aware refuse this disk)",
				 text);
			note(n, VD_CHECK_NOTE_INFO, msg);
		}
		if (pt->noverlaps > VD_PTABLE_MAX_OVERLAPS) {
			snprintf(msg, sizeof(msg), "partition table: %u more overlaps",
				 pt->noverlaps - VD_PTABLE_MAX_OVERLAPS);
			note(n, VD_CHECK_NOTE_INFO, msg);
		}
	}
	free(pt);
}

/* qemu-img check's keys ("check-errors" counts what stopped the check: a
 * check that could not run prints no JSON, so it is 0), and vdisk's. */
static void print_json(const char *path, const char *format, bool supported,
		       const struct vd_check *res, struct notes *notes)
{
	printf("{\n    \"filename\": ");
	json_str(stdout, path);
	printf(",\n    \"format\": ");
	json_str(stdout, format);
	printf(",\n    \"supported\": %s", supported ? "true" : "false");
	printf(",\n    \"check-errors\": 0,\n    \"corruptions\": %u,\n    \"leaks\": %u,\n"
	       "    \"corruptions-fixed\": %u,\n    \"leaks-fixed\": %u,\n"
	       "    \"leaked-bytes\": %" PRIu64 ",\n    \"messages\": [",
	       res->corruptions, res->leaks, res->corruptions_fixed, res->leaks_fixed,
	       res->leaked_bytes);
	for (unsigned i = 0; i < notes->n; i++) {
		printf("%s\n        {\"kind\": \"%s\", \"message\": ", i ? "," : "",
		       kind_name(notes->kinds[i]));
		json_str(stdout, notes->msgs[i]);
		printf("}");
		free(notes->msgs[i]);
	}
	printf("%s]\n}\n", notes->n ? "\n    " : "");
	free(notes->msgs);
	free(notes->kinds);
	notes->msgs = NULL;
	notes->kinds = NULL;
	notes->n = 0;
}

int cmd_check(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "repair", no_argument, NULL, 'r' },
		{ "allow-devices", no_argument, NULL, 'D' },
		{ "force", no_argument, NULL, 1001 },
		CLI_CHAIN_OPTION,
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *fmt = NULL, *format;
	struct vd_error err = { 0 };
	struct vd_image *img;
	struct vd_check res = { 0 };
	struct notes notes = { 0 };
	bool repair = false, force = false;
	unsigned flags = 0;
	int c, r, rc;

	while ((c = getopt_long(argc, argv, "f:rh", lo, NULL)) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'r': repair = true; break;
		case 'D': flags |= VD_OPEN_ALLOW_DEVICES; break;
		case 1001: force = true; break;
		case CLI_OPT_BACKING:
			if (cli_chain_backing("check", optarg))
				return 1;
			break;
		case 'o':
			if ((notes.json = cli_output_mode("check", optarg)) < 0)
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
	cli_chain_apply("check", force);
	r = vd_open(&img, argv[optind], fmt, flags | VD_OPEN_CHECK | (repair ? VD_OPEN_RDWR : 0), &err);
	if (r < 0) {
		/* a header that fails validation is corruption, not a failure to check */
		return cli_fail("check", &err, r == -EINVAL ? 2 : 1);
	}
	format = vd_format(img); /* the driver's name: outlives the image */
	res.note = note;
	res.ctx = &notes;
	r = vd_check(img, repair, &res, &err);
	if (r == 0 || r == -ENOTSUP)
		partition_notes(img, &notes);
	if (r == 0)
		r = vd_close(img, &err);
	else
		vd_close(img, NULL);
	if (r == -ENOTSUP) {
		/* nothing to check is not a failure */
		if (notes.json)
			print_json(argv[optind], format, false, &res, &notes);
		else
			printf("%s\n", err.msg);
		return 0;
	}
	if (r < 0)
		return cli_fail("check", &err, 1);
	rc = res.corruptions ? 2 : res.leaks ? 3 : 0;
	if (notes.json) {
		print_json(argv[optind], format, true, &res, &notes);
		return rc;
	}
	if (res.corruptions_fixed || res.leaks_fixed)
		printf("Repaired %u errors and %u leaks.\n", res.corruptions_fixed, res.leaks_fixed);
	if (res.corruptions)
		printf("%u errors were found on the image.\n", res.corruptions);
	if (res.leaks)
		printf("%u leaked blocks were found on the image (%" PRIu64 " bytes); 'vdisk check -r' reclaims them.\n",
		       res.leaks, res.leaked_bytes);
	if (!res.corruptions && !res.leaks)
		printf("No errors were found on the image.\n");
	return rc;
}
