/*
 * vdisk inspect: the fragmentation report.  Where every guest range lives in
 * the image file and on the host device, and what a sequential guest read
 * costs in host runs (seeks), as one screen of text, a full run list
 * (--verbose), JSON or an SVG picture of the guest address space.
 *
 * Everything is streamed from vd_fragmap; the SVG keeps a fixed grid of at
 * most SVG_MAX_CELLS cells, so memory does not grow with the image.
 *
 * SPDX-License-Identifier: MIT
 */
#include "cli.h"

#include <getopt.h>
#include <stdarg.h>
#include <inttypes.h>
#include <linux/fiemap.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
	"Usage: vdisk inspect [-f FMT] [--output=human|json|svg] [-v] IMAGE\n"
	"\n"
	"Report how IMAGE is laid out: for every guest range, where it lives in\n"
	"the image file (block status) and on the host device (FIEMAP of the\n"
	"image file; a block device is one extent), and what a full sequential\n"
	"read of the guest disk costs: the number of contiguous host runs it\n"
	"visits, their lengths, and the image-internal discontinuities.\n"
	"\n"
	"  -f, --format FMT   image format (default: probe)\n"
	"      --output FMT   human (default), json or svg\n"
	"  -v, --verbose      human: list every run (like xfs_bmap -v)\n"
	"      --allow-devices  allow a block device as IMAGE\n"
	"  -h, --help         show this help\n";

enum { OUT_HUMAN, OUT_JSON, OUT_SVG };

static const char *kind_name(int k)
{
	switch (k) {
	case VD_FRAG_DATA: return "data";
	case VD_FRAG_ZERO: return "zero";
	case VD_FRAG_HOLE: return "hole";
	default: return "unallocated";
	}
}

static const char *host_map_name(int m)
{
	switch (m) {
	case VD_FRAG_HOST_FIEMAP: return "fiemap";
	case VD_FRAG_HOST_DEVICE: return "device";
	default: return "none";
	}
}

static double pct(uint64_t a, uint64_t b)
{
	return b ? 100.0 * (double)a / (double)b : 0.0;
}

static uint64_t run_pos(const struct vd_frag_run *r, bool *known)
{
	*known = r->flags & (VD_FRAG_PHYS | VD_FRAG_FILE_OFF);
	return (r->flags & VD_FRAG_PHYS) ? r->host_physical : r->file_off;
}

/* ---- human ---- */

struct human {
	bool verbose;
	uint64_t n;
};

static void range_str(char *buf, size_t len, bool valid, uint64_t off, uint64_t n)
{
	if (valid)
		snprintf(buf, len, "%" PRIu64 "..%" PRIu64, off, off + n - 1);
	else
		snprintf(buf, len, "-");
}

static int human_run(void *ctx, const struct vd_frag_run *r)
{
	struct human *h = ctx;
	char g[48], f[48], p[48], fl[64] = "";

	if (!h->verbose)
		return 0;
	if (h->n == 0)
		printf("%6s  %-27s %-27s %-29s %12s %-11s %s\n", "RUN", "GUEST-RANGE", "FILE-RANGE",
		       "HOST-RANGE", "BYTES", "KIND", "FLAGS");
	range_str(g, sizeof(g), true, r->guest_off, r->len);
	range_str(f, sizeof(f), r->flags & VD_FRAG_FILE_OFF, r->file_off, r->len);
	range_str(p, sizeof(p), r->flags & VD_FRAG_PHYS, r->host_physical, r->len);
	if (r->flags & VD_FRAG_SEEK)
		strcat(fl, "seek,");
	if (r->flags & VD_FRAG_DISCONT)
		strcat(fl, "discont,");
	if (r->host_flags & FIEMAP_EXTENT_UNWRITTEN)
		strcat(fl, "unwritten,");
	if (r->host_flags & FIEMAP_EXTENT_SHARED)
		strcat(fl, "shared,");
	if (r->host_flags & (FIEMAP_EXTENT_ENCODED | FIEMAP_EXTENT_DATA_INLINE))
		strcat(fl, "encoded,");
	if (fl[0])
		fl[strlen(fl) - 1] = 0;
	printf("%5" PRIu64 ": %-27s %-27s %-29s %12" PRIu64 " %-11s %s", h->n, g, f, p, r->len,
	       kind_name(r->kind), fl);
	if (r->file)
		printf("%sfile %s", fl[0] ? " " : "", r->file);
	printf("\n");
	h->n++;
	return 0;
}

static void human_summary(const char *path, const struct vd_info *info,
			  const struct vd_frag_summary *s)
{
	char a[32], b[32], c[32], d[32];
	uint64_t seeks = s->host_runs ? s->host_runs - 1 : 0;

	printf("Image:            %s (%s%s%s", path, info->format,
	       info->subformat[0] ? ", " : "", info->subformat);
	if (s->block_size)
		printf(", block size %s", cli_human(s->block_size, a, sizeof(a)));
	printf(")\n");
	if (s->guest_start || s->guest_length != info->virtual_size)
		printf("Range:            %" PRIu64 "+%" PRIu64 " of the guest\n", s->guest_start,
		       s->guest_length);
	printf("Virtual size:     %s (%" PRIu64 " bytes)\n", cli_human(info->virtual_size, a, sizeof(a)),
	       info->virtual_size);
	printf("Allocated:        %s (%" PRIu64 " bytes, %.1f%%)", cli_human(s->data_bytes, a, sizeof(a)),
	       s->data_bytes, pct(s->data_bytes, s->guest_length));
	if (s->block_size)
		printf(" in %" PRIu64 " blocks", s->data_blocks);
	printf("\n");
	printf("Not stored:       zero %s, hole %s, unallocated %s\n",
	       cli_human(s->zero_bytes, a, sizeof(a)), cli_human(s->hole_bytes, b, sizeof(b)),
	       cli_human(s->unallocated_bytes, c, sizeof(c)));
	printf("Image order:      %" PRIu64 " discontinuit%s, %.1f%% of %s out of guest order\n",
	       s->discontinuities, s->discontinuities == 1 ? "y" : "ies",
	       pct(s->out_of_order_blocks, s->data_blocks), s->block_size ? "blocks" : "data ranges");
	printf("Image file:       %s on %s", cli_human(s->file_size, a, sizeof(a)),
	       s->host_fs[0] ? s->host_fs : "?");
	switch (s->host_map) {
	case VD_FRAG_HOST_FIEMAP:
		printf(", %" PRIu64 " host extent%s (%" PRIu64 " physically separate)\n",
		       s->host_extents, s->host_extents == 1 ? "" : "s", s->host_fragments);
		break;
	case VD_FRAG_HOST_DEVICE:
		printf(" (block device: one extent)\n");
		break;
	default:
		printf(", host extents unknown\n");
		printf("                  %s\n", s->host_note);
	}
	printf("Sequential read:  %" PRIu64 " %s run%s (%" PRIu64 " seek%s)\n", s->host_runs,
	       s->host_map == VD_FRAG_HOST_NONE ? "image-file" : "host", s->host_runs == 1 ? "" : "s",
	       seeks, seeks == 1 ? "" : "s");
	if (s->host_runs) {
		printf("Run length:       average %s, median %s%s, longest %s\n",
		       cli_human(s->host_run_bytes / s->host_runs, a, sizeof(a)),
		       s->host_run_median_exact ? "" : ">= ",
		       cli_human(s->host_run_median, b, sizeof(b)),
		       cli_human(s->host_run_max, c, sizeof(c)));
		printf("Data in runs:     %.1f%% in runs >= 1 MiB, %.1f%% in runs >= 64 MiB\n",
		       pct(s->bytes_in_runs_1m, s->host_run_bytes),
		       pct(s->bytes_in_runs_64m, s->host_run_bytes));
	}
	(void)d;
}

/* ---- JSON ---- */

struct json {
	uint64_t n;
};

static int json_run(void *ctx, const struct vd_frag_run *r)
{
	struct json *j = ctx;

	printf("%s    { \"start\": %" PRIu64 ", \"length\": %" PRIu64 ", \"kind\": \"%s\"",
	       j->n ? ",\n" : "\n", r->guest_off, r->len, kind_name(r->kind));
	if (r->flags & VD_FRAG_FILE_OFF)
		printf(", \"offset\": %" PRIu64, r->file_off);
	if (r->flags & VD_FRAG_PHYS)
		printf(", \"host-physical\": %" PRIu64, r->host_physical);
	if (r->file) {
		printf(", \"filename\": ");
		json_str(stdout, r->file);
	}
	printf(", \"host-flags\": %" PRIu32 ", \"seek\": %s, \"discontinuity\": %s }", r->host_flags,
	       (r->flags & VD_FRAG_SEEK) ? "true" : "false",
	       (r->flags & VD_FRAG_DISCONT) ? "true" : "false");
	j->n++;
	return 0;
}

static int json_extent(void *ctx, const struct vd_host_extent *e)
{
	struct json *j = ctx;

	printf("%s    { \"logical\": %" PRIu64 ", \"physical\": %" PRIu64 ", \"length\": %" PRIu64
	       ", \"flags\": %" PRIu32 " }",
	       j->n ? ",\n" : "\n", e->logical, e->physical, e->length, e->flags);
	j->n++;
	return 0;
}

static void json_summary(const struct vd_info *info, const struct vd_frag_summary *s)
{
	uint64_t seeks = s->host_runs ? s->host_runs - 1 : 0;

	printf("  \"summary\": {\n");
	printf("    \"virtual-size\": %" PRIu64 ",\n", info->virtual_size);
	printf("    \"guest-start\": %" PRIu64 ",\n", s->guest_start);
	printf("    \"guest-length\": %" PRIu64 ",\n", s->guest_length);
	printf("    \"allocated-bytes\": %" PRIu64 ",\n", s->data_bytes);
	printf("    \"zero-bytes\": %" PRIu64 ",\n", s->zero_bytes);
	printf("    \"hole-bytes\": %" PRIu64 ",\n", s->hole_bytes);
	printf("    \"unallocated-bytes\": %" PRIu64 ",\n", s->unallocated_bytes);
	printf("    \"cluster-size\": %" PRIu32 ",\n", s->block_size);
	printf("    \"data-blocks\": %" PRIu64 ",\n", s->data_blocks);
	printf("    \"discontinuities\": %" PRIu64 ",\n", s->discontinuities);
	printf("    \"out-of-order-blocks\": %" PRIu64 ",\n", s->out_of_order_blocks);
	printf("    \"out-of-order-share\": %.6f,\n",
	       s->data_blocks ? (double)s->out_of_order_blocks / (double)s->data_blocks : 0.0);
	printf("    \"file-size\": %" PRIu64 ",\n", s->file_size);
	printf("    \"host-map\": \"%s\",\n", host_map_name(s->host_map));
	printf("    \"host-fs\": ");
	json_str(stdout, s->host_fs);
	printf(",\n");
	if (s->host_note[0]) {
		printf("    \"host-note\": ");
		json_str(stdout, s->host_note);
		printf(",\n");
	}
	printf("    \"host-extents\": %" PRIu64 ",\n", s->host_extents);
	printf("    \"host-fragments\": %" PRIu64 ",\n", s->host_fragments);
	printf("    \"runs\": %" PRIu64 ",\n", s->runs);
	printf("    \"host-runs\": %" PRIu64 ",\n", s->host_runs);
	printf("    \"seeks\": %" PRIu64 ",\n", seeks);
	printf("    \"host-run-bytes\": %" PRIu64 ",\n", s->host_run_bytes);
	printf("    \"host-run-average\": %" PRIu64 ",\n", s->host_runs ? s->host_run_bytes / s->host_runs : 0);
	printf("    \"host-run-median\": %" PRIu64 ",\n", s->host_run_median);
	printf("    \"host-run-median-exact\": %s,\n", s->host_run_median_exact ? "true" : "false");
	printf("    \"host-run-max\": %" PRIu64 ",\n", s->host_run_max);
	printf("    \"bytes-in-runs-1m\": %" PRIu64 ",\n", s->bytes_in_runs_1m);
	printf("    \"bytes-in-runs-64m\": %" PRIu64 ",\n", s->bytes_in_runs_64m);
	printf("    \"share-in-runs-1m\": %.6f,\n",
	       s->host_run_bytes ? (double)s->bytes_in_runs_1m / (double)s->host_run_bytes : 0.0);
	printf("    \"share-in-runs-64m\": %.6f\n",
	       s->host_run_bytes ? (double)s->bytes_in_runs_64m / (double)s->host_run_bytes : 0.0);
	printf("  }\n");
}

/* ---- SVG ---- */

#define SVG_MAX_CELLS 2048u
#define SVG_COLS 64u
#define SVG_CELL 12u  /* pixels */
#define SVG_MARGIN 20u

struct cell {
	uint64_t data, zero, hole, unalloc;
	double pos_sum;   /* sum of bytes * host position of data */
	uint32_t seeks, disconts;
};

struct svg {
	uint64_t start, len, cell_bytes;
	unsigned ncells;
	struct cell *cells;
	bool have_pos;
	double pos_min, pos_max;
};

static int svg_run(void *ctx, const struct vd_frag_run *r)
{
	struct svg *s = ctx;
	uint64_t g = r->guest_off, end = r->guest_off + r->len;
	bool known;
	uint64_t pos = run_pos(r, &known);
	bool first = true;

	if (r->kind == VD_FRAG_DATA && known) {
		double lo = (double)pos, hi = (double)(pos + r->len);
		if (!s->have_pos || lo < s->pos_min)
			s->pos_min = lo;
		if (!s->have_pos || hi > s->pos_max)
			s->pos_max = hi;
		s->have_pos = true;
	}
	while (g < end) {
		unsigned c = (unsigned)((g - s->start) / s->cell_bytes);
		uint64_t cend = s->start + ((uint64_t)c + 1) * s->cell_bytes, n;
		struct cell *x;

		if (c >= s->ncells)
			c = s->ncells - 1;
		x = &s->cells[c];
		n = (end < cend ? end : cend) - g;
		switch (r->kind) {
		case VD_FRAG_DATA:
			x->data += n;
			if (known)
				x->pos_sum += (double)n * ((double)pos + (double)(g - r->guest_off) + (double)n / 2);
			break;
		case VD_FRAG_ZERO: x->zero += n; break;
		case VD_FRAG_HOLE: x->hole += n; break;
		default: x->unalloc += n; break;
		}
		if (first) {
			if (r->flags & VD_FRAG_SEEK)
				x->seeks++;
			if (r->flags & VD_FRAG_DISCONT)
				x->disconts++;
			first = false;
		}
		g += n;
	}
	return 0;
}

static void xml_str(const char *t)
{
	for (; *t; t++) {
		switch (*t) {
		case '&': fputs("&amp;", stdout); break;
		case '<': fputs("&lt;", stdout); break;
		case '>': fputs("&gt;", stdout); break;
		case '"': fputs("&quot;", stdout); break;
		default:
			if ((unsigned char)*t >= 0x20 || *t == '\t')
				putchar(*t);
		}
	}
}

/* Host position 0..1 -> blue (start of the device) .. red (end). */
static void pos_colour(double t, char *buf, size_t len)
{
	if (t < 0)
		t = 0;
	if (t > 1)
		t = 1;
	snprintf(buf, len, "hsl(%d,75%%,50%%)", (int)(240.0 * (1.0 - t) + 0.5));
}

static void svg_text(unsigned x, unsigned y, const char *id, const char *value, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static void svg_text(unsigned x, unsigned y, const char *id, const char *value, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	printf("  <text x=\"%u\" y=\"%u\"", x, y);
	if (id)
		printf(" id=\"%s\"", id);
	if (value)
		printf(" data-value=\"%s\"", value);
	printf(">");
	xml_str(buf);
	printf("</text>\n");
}

static void svg_output(const char *path, const struct vd_info *info, const struct svg *s,
		       const struct vd_frag_summary *sum)
{
	unsigned rows = (s->ncells + SVG_COLS - 1) / SVG_COLS;
	unsigned gw = SVG_COLS * SVG_CELL, gh = rows * SVG_CELL;
	unsigned W = gw + 2 * SVG_MARGIN, y0 = 56, ly = y0 + gh + 24, ty = ly + 70;
	unsigned H = ty + 8 * 18 + SVG_MARGIN;
	uint64_t seeks = sum->host_runs ? sum->host_runs - 1 : 0;
	char a[32], b[32], v[32], col[32];
	double span = s->pos_max - s->pos_min;

	printf("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
	printf("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%u\" height=\"%u\" viewBox=\"0 0 %u %u\" "
	       "font-family=\"sans-serif\" font-size=\"12\">\n", W, H, W, H);
	printf("  <title>vdisk inspect: ");
	xml_str(path);
	printf("</title>\n");
	printf("  <defs>\n"
	       "    <linearGradient id=\"hostpos\" x1=\"0\" x2=\"1\" y1=\"0\" y2=\"0\">\n");
	for (int i = 0; i <= 4; i++) {
		pos_colour(i / 4.0, col, sizeof(col));
		printf("      <stop offset=\"%d%%\" stop-color=\"%s\"/>\n", i * 25, col);
	}
	printf("    </linearGradient>\n"
	       "    <pattern id=\"holepat\" width=\"4\" height=\"4\" patternUnits=\"userSpaceOnUse\">\n"
	       "      <rect width=\"4\" height=\"4\" fill=\"#eeeeee\"/>\n"
	       "      <path d=\"M0,4 L4,0\" stroke=\"#999999\" stroke-width=\"1\"/>\n"
	       "    </pattern>\n"
	       "  </defs>\n");
	printf("  <rect width=\"%u\" height=\"%u\" fill=\"white\"/>\n", W, H);
	printf("  <text x=\"%u\" y=\"22\" font-size=\"15\" font-weight=\"bold\">", SVG_MARGIN);
	xml_str(path);
	printf(" (%s%s%s)</text>\n", info->format, info->subformat[0] ? ", " : "", info->subformat);
	svg_text(SVG_MARGIN, 42, NULL, NULL,
		 "Guest address space, left to right and top to bottom; each cell is %s",
		 cli_human(s->cell_bytes, a, sizeof(a)));

	printf("  <g id=\"map\" transform=\"translate(%u,%u)\" stroke=\"#ffffff\" stroke-width=\"0.5\">\n",
	       SVG_MARGIN, y0);
	for (unsigned c = 0; c < s->ncells; c++) {
		const struct cell *x = &s->cells[c];
		unsigned cx = (c % SVG_COLS) * SVG_CELL, cy = (c / SVG_COLS) * SVG_CELL;
		uint64_t g0 = s->start + (uint64_t)c * s->cell_bytes;
		uint64_t tot = x->data + x->zero + x->hole + x->unalloc;
		const char *cls;

		if (x->data) {
			cls = "data";
			if (x->data && s->have_pos && x->pos_sum > 0)
				pos_colour(span > 0 ? (x->pos_sum / (double)x->data - s->pos_min) / span : 0,
					   col, sizeof(col));
			else
				snprintf(col, sizeof(col), "#555555");
		} else if (x->zero >= x->hole && x->zero >= x->unalloc) {
			cls = "zero";
			snprintf(col, sizeof(col), "#a0a0a0");
		} else if (x->hole >= x->unalloc) {
			cls = "hole";
			snprintf(col, sizeof(col), "url(#holepat)");
		} else {
			cls = "unallocated";
			snprintf(col, sizeof(col), "#f4f4f4");
		}
		printf("    <rect class=\"%s\" x=\"%u\" y=\"%u\" width=\"%u\" height=\"%u\" fill=\"%s\"",
		       cls, cx, cy, SVG_CELL, SVG_CELL, col);
		if (x->data && tot && x->data < tot)
			printf(" fill-opacity=\"%.2f\"", 0.45 + 0.55 * (double)x->data / (double)tot);
		printf("><title>guest %" PRIu64 "..%" PRIu64 ": data %" PRIu64 ", zero %" PRIu64
		       ", hole %" PRIu64 ", unallocated %" PRIu64, g0, g0 + tot - 1, x->data, x->zero,
		       x->hole, x->unalloc);
		if (x->data && s->have_pos)
			printf("; mean host position %.0f", x->pos_sum / (double)x->data);
		if (x->seeks)
			printf("; %" PRIu32 " host run start%s", x->seeks, x->seeks == 1 ? "" : "s");
		if (x->disconts)
			printf("; %" PRIu32 " discontinuit%s", x->disconts, x->disconts == 1 ? "y" : "ies");
		printf("</title></rect>\n");
	}
	/* a dark mark where a sequential read has to seek (not at the very first run) */
	for (unsigned c = 0; c < s->ncells; c++) {
		const struct cell *x = &s->cells[c];
		if (x->seeks)
			printf("    <circle class=\"seek\" cx=\"%u\" cy=\"%u\" r=\"%.1f\" fill=\"black\" stroke=\"none\"/>\n",
			       (c % SVG_COLS) * SVG_CELL + 3, (c / SVG_COLS) * SVG_CELL + 3,
			       x->seeks > 1 ? 2.5 : 1.8);
	}
	printf("  </g>\n");

	/* legend */
	printf("  <g id=\"legend\" transform=\"translate(%u,%u)\">\n", SVG_MARGIN, ly);
	printf("    <rect x=\"0\" y=\"0\" width=\"160\" height=\"12\" fill=\"url(#hostpos)\"/>\n");
	printf("    <text x=\"168\" y=\"10\">data, coloured by host position: %s",
	       s->have_pos ? cli_human((uint64_t)s->pos_min, a, sizeof(a)) : "?");
	printf(" (blue) .. %s (red)%s</text>\n", s->have_pos ? cli_human((uint64_t)s->pos_max, b, sizeof(b)) : "?",
	       sum->host_map == VD_FRAG_HOST_NONE ? ", image-file offsets: host unknown" :
	       sum->host_map == VD_FRAG_HOST_DEVICE ? " on the device" : " on the host device");
	printf("    <rect x=\"0\" y=\"20\" width=\"12\" height=\"12\" fill=\"#a0a0a0\"/><text x=\"18\" y=\"30\">zero block</text>\n");
	printf("    <rect x=\"110\" y=\"20\" width=\"12\" height=\"12\" fill=\"url(#holepat)\"/><text x=\"128\" y=\"30\">hole in the image file</text>\n");
	printf("    <rect x=\"280\" y=\"20\" width=\"12\" height=\"12\" fill=\"#f4f4f4\" stroke=\"#cccccc\"/><text x=\"298\" y=\"30\">unallocated</text>\n");
	printf("    <circle cx=\"406\" cy=\"26\" r=\"2.5\" fill=\"black\"/><text x=\"414\" y=\"30\">a new host run starts (seek)</text>\n");
	printf("  </g>\n");

	/* summary numbers */
	printf("  <g id=\"summary\">\n");
	snprintf(v, sizeof(v), "%" PRIu64, info->virtual_size);
	svg_text(SVG_MARGIN, ty, "virtual_size", v, "Virtual size: %s (%s bytes)",
		 cli_human(info->virtual_size, a, sizeof(a)), v);
	snprintf(v, sizeof(v), "%" PRIu64, sum->data_bytes);
	svg_text(SVG_MARGIN, ty + 18, "allocated_bytes", v, "Allocated: %s (%s bytes)",
		 cli_human(sum->data_bytes, a, sizeof(a)), v);
	snprintf(v, sizeof(v), "%" PRIu64, sum->discontinuities);
	svg_text(SVG_MARGIN, ty + 36, "discontinuities", v,
		 "Image order: %s discontinuities, %.1f%% of %s out of guest order", v,
		 pct(sum->out_of_order_blocks, sum->data_blocks), sum->block_size ? "blocks" : "data ranges");
	snprintf(v, sizeof(v), "%" PRIu64, sum->host_extents);
	if (sum->host_map == VD_FRAG_HOST_NONE)
		svg_text(SVG_MARGIN, ty + 54, "host_extents", v, "Host extents: unknown (%s)", sum->host_note);
	else
		svg_text(SVG_MARGIN, ty + 54, "host_extents", v, "Host extents of the image file: %s on %s", v,
			 sum->host_fs[0] ? sum->host_fs : "?");
	snprintf(v, sizeof(v), "%" PRIu64, sum->host_runs);
	svg_text(SVG_MARGIN, ty + 72, "host_runs", v, "Sequential read: %s %s runs (%" PRIu64 " seeks)", v,
		 sum->host_map == VD_FRAG_HOST_NONE ? "image-file" : "host", seeks);
	snprintf(v, sizeof(v), "%" PRIu64, sum->host_runs ? sum->host_run_bytes / sum->host_runs : 0);
	svg_text(SVG_MARGIN, ty + 90, "host_run_average", v, "Average run: %s (%s bytes)",
		 cli_human(sum->host_runs ? sum->host_run_bytes / sum->host_runs : 0, a, sizeof(a)), v);
	snprintf(v, sizeof(v), "%" PRIu64, sum->host_run_median);
	svg_text(SVG_MARGIN, ty + 108, "host_run_median", v, "Median run: %s%s (%s bytes)",
		 sum->host_run_median_exact ? "" : ">= ", cli_human(sum->host_run_median, a, sizeof(a)), v);
	snprintf(v, sizeof(v), "%.1f", pct(sum->bytes_in_runs_1m, sum->host_run_bytes));
	snprintf(b, sizeof(b), "%.1f", pct(sum->bytes_in_runs_64m, sum->host_run_bytes));
	svg_text(SVG_MARGIN, ty + 126, "runs_share", v, "Data in runs >= 1 MiB: %s%%, >= 64 MiB: %s%%", v, b);
	printf("  </g>\n");
	printf("</svg>\n");
}

/* ---- command ---- */

int cmd_inspect(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "output", required_argument, NULL, 'o' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "allow-devices", no_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *fmt = NULL;
	struct vd_error err = { 0 };
	struct vd_image *img;
	struct vd_info *info = NULL;
	struct vd_frag_summary *sum = NULL;
	struct vd_fragmap_opts fo = { 0 };
	struct human hu = { 0 };
	struct json js = { 0 };
	struct svg sv = { 0 };
	int out = OUT_HUMAN, c, r, rc = 1;
	unsigned flags = 0;

	while ((c = getopt_long(argc, argv, "f:vh", lo, NULL)) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'v': hu.verbose = true; break;
		case 'D': flags |= VD_OPEN_ALLOW_DEVICES; break;
		case 'o':
			if (!strcmp(optarg, "svg")) {
				out = OUT_SVG;
			} else if (!strcmp(optarg, "human") || !strcmp(optarg, "json")) {
				out = optarg[0] == 'j' ? OUT_JSON : OUT_HUMAN;
			} else {
				cli_err("inspect", "--output must be 'human', 'json' or 'svg', not '%s'", optarg);
				return 1;
			}
			break;
		case 'h': cli_usage(stdout, usage); return 0;
		default: cli_usage(stderr, usage); return 1;
		}
	}
	if (optind + 1 != argc) {
		cli_usage(stderr, usage);
		return 1;
	}
	cli_catch_signals();
	fo.cancel = &cli_cancel;
	info = calloc(1, sizeof(*info));
	sum = calloc(1, sizeof(*sum));
	if (!info || !sum) {
		cli_err("inspect", "out of memory");
		goto out_free;
	}
	r = vd_open(&img, argv[optind], fmt, flags, &err);
	if (r < 0) {
		rc = cli_fail("inspect", &err, 1);
		goto out_free;
	}
	r = vd_get_info(img, info, &err);
	if (r < 0)
		goto fail;

	switch (out) {
	case OUT_HUMAN:
		r = vd_fragmap(img, &fo, human_run, &hu, sum, &err);
		if (r < 0)
			goto fail;
		if (hu.verbose && hu.n)
			printf("\n");
		human_summary(vd_path(img), info, sum);
		break;
	case OUT_JSON:
		printf("{\n  \"filename\": ");
		json_str(stdout, vd_path(img));
		printf(",\n  \"format\": \"%s\",\n  \"subformat\": ", info->format);
		json_str(stdout, info->subformat);
		printf(",\n  \"runs\": [");
		r = vd_fragmap(img, &fo, json_run, &js, sum, &err);
		if (r < 0) {
			printf("\n");
			goto fail;
		}
		printf("%s],\n  \"host-extents\": [", js.n ? "\n  " : "");
		js.n = 0;
		if (sum->host_map != VD_FRAG_HOST_NONE) {
			r = vd_host_extents(img, json_extent, &js, &err);
			if (r < 0) {
				printf("\n");
				goto fail;
			}
		}
		printf("%s],\n", js.n ? "\n  " : "");
		json_summary(info, sum);
		printf("}\n");
		break;
	case OUT_SVG: {
		uint64_t len = vd_size(img), cb = 512;

		while ((len + cb - 1) / cb > SVG_MAX_CELLS)
			cb *= 2;
		sv.len = len;
		sv.cell_bytes = cb;
		sv.ncells = len ? (unsigned)((len + cb - 1) / cb) : 1;
		sv.cells = calloc(sv.ncells, sizeof(*sv.cells));
		if (!sv.cells) {
			cli_err("inspect", "out of memory");
			vd_close(img, NULL);
			goto out_free;
		}
		r = vd_fragmap(img, &fo, svg_run, &sv, sum, &err);
		if (r < 0)
			goto fail;
		svg_output(vd_path(img), info, &sv, sum);
		break;
	}
	}
	rc = 0;
	if (fflush(stdout) != 0) {
		cli_err("inspect", "cannot write the output");
		rc = 1;
	}
	vd_close(img, NULL);
	goto out_free;
fail:
	fflush(stdout);
	vd_close(img, NULL);
	rc = cli_fail("inspect", &err, 1);
out_free:
	free(sv.cells);
	free(info);
	free(sum);
	return rc;
}
